"""The AST's architecture as one typed value: named sizes, ``ASTArch`` and the patch grid.

A leaf module (imports nothing of ours), so the model, the checkpoint readers and the
LightningModules can all depend on it without depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# name -> (embed_dim, depth, num_heads); the timm DeiT names give the same sizes (the
# ImageNet resolution only matters for the weights, which are never downloaded here).
_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}
ARCHS: dict[str, tuple[int, int, int]] = dict(_SIZES)
for _size, _dims in _SIZES.items():
    for _res in (224, 384):
        ARCHS[f"deit_{_size}_distilled_patch16_{_res}"] = _dims


def arch_dims(
    size: str, embed_dim: int | None, depth: int | None, num_heads: int | None
) -> tuple[int, int, int]:
    """(embed_dim, depth, num_heads) for a named size, with explicit values taking precedence."""
    if size not in ARCHS:
        raise ValueError(f"unknown AST arch {size!r}; known: {sorted(ARCHS)}")
    d, n, h = ARCHS[size]
    return (
        d if embed_dim is None else embed_dim,
        n if depth is None else depth,
        h if num_heads is None else num_heads,
    )


def size_name(embed_dim: int, depth: int, num_heads: int) -> str | None:
    """The short name ("tiny", "small", "base") of these dimensions, None for any other."""
    for name in _SIZES:
        if ARCHS[name] == (embed_dim, depth, num_heads):
            return name
    return None


def patch_grid(length: int, patch_size: int, stride: int) -> int:
    """Number of patch positions along one axis of length ``length`` (no padding)."""
    return (length - patch_size) // stride + 1


@dataclass
class ASTArch:
    """The architecture of an ``ASTModel`` (everything but the data-linked sizes and merging).

    Args:
        size: Size by name: "tiny", "small", "base" (192/384/768 wide, 12 layers, 3/6/12
            heads) or a timm name such as "deit_base_distilled_patch16_384" (the size only;
            weights come from ``init_from``).
        embed_dim: Token width; overrides the named size (tiny test models).
        depth: Number of transformer blocks; overrides the named size.
        num_heads: Attention heads; overrides the named size.
        mlp_ratio: MLP hidden width as a multiple of ``embed_dim``.
        patch_size: Side of the square spectrogram patches (AST: 16).
        fstride: Patch stride along frequency (AST: 10, i.e. overlapping patches).
        tstride: Patch stride along time (AST: 10).
        drop_path_rate: Stochastic depth rate of the last block (linear from 0).
        norm_eps: LayerNorm epsilon (timm/AST: 1e-6; HF AST checkpoints: 1e-12).
        qkv_bias: Bias in the attention's query/key/value projection.
    """

    size: str = "deit_base_distilled_patch16_384"
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float = 4.0
    patch_size: int = 16
    fstride: int = 10
    tstride: int = 10
    drop_path_rate: float = 0.0
    norm_eps: float = 1e-6
    qkv_bias: bool = True

    def __post_init__(self) -> None:
        # Written as not (inside): comparisons with NaN are false, so NaN is refused too.
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(
                f"ASTArch.drop_path_rate is a probability in [0, 1), got {self.drop_path_rate}"
            )
        if not (0 < self.norm_eps < 1):
            raise ValueError(f"ASTArch.norm_eps must be in (0, 1), got {self.norm_eps}")
        if not (0 < self.mlp_ratio < float("inf")):
            raise ValueError(f"ASTArch.mlp_ratio must be a finite number > 0, got {self.mlp_ratio}")
        for name in ("fstride", "tstride"):
            stride = getattr(self, name)
            if not 1 <= stride <= self.patch_size:  # a larger stride leaves input unseen
                raise ValueError(
                    f"ASTArch.{name}={stride}: expected 1..patch_size ({self.patch_size}); a "
                    "stride above the patch size skips part of the spectrogram"
                )

    def resolved(self) -> ASTArch:
        """The same architecture with ``embed_dim``/``depth``/``num_heads`` spelt out."""
        embed_dim, depth, num_heads = arch_dims(
            self.size, self.embed_dim, self.depth, self.num_heads
        )
        return replace(self, embed_dim=embed_dim, depth=depth, num_heads=num_heads)
