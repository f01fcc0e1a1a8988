"""Plain torch models: the AST student and the CNN teacher."""

from fastast_pl.models.ast import ASTArch, ASTModel
from fastast_pl.models.teacher import CNNTeacher, TeacherArch

__all__ = ["ASTArch", "ASTModel", "CNNTeacher", "TeacherArch"]
