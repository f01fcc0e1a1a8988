"""Plain torch models: the AST student and the CNN teacher."""

from fastast_pl.models.arch import ASTArch
from fastast_pl.models.ast import ASTModel
from fastast_pl.models.teacher import CNNTeacher, FrozenTeacher, TeacherArch

__all__ = ["ASTArch", "ASTModel", "CNNTeacher", "FrozenTeacher", "TeacherArch"]
