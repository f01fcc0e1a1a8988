"""Plain torch models: the AST student (and, later, the CNN teacher)."""

from fastast_pl.models.ast import ASTArch, ASTModel

__all__ = ["ASTArch", "ASTModel"]
