"""Bipartite soft matching and size-weighted token merging (ToMe, Bolya et al., ICLR 2023).

Pure tensor functions: no nn.Module, no timm. The matching step decides *which* tokens
merge (from a similarity metric, usually the attention keys); it returns a function that
applies that decision to any per-token tensor (features, sizes, source maps), so one
matching drives every tensor of the block consistently.

Token order after a merge (fixed so that prefix tokens keep their positions):
``[prefix tokens in their original order, unmerged A tokens in order, B tokens in order]``
where A holds the even positions and B the odd positions of the whole sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

MergeFn = Callable[..., torch.Tensor]


class MatchInfo(NamedTuple):
    """What one bipartite matching decided (indices are within the A / B halves)."""

    r: int  # tokens removed (after capping)
    unm_idx: torch.Tensor | None  # (B, Na - r, 1) A tokens kept, ascending
    src_idx: torch.Tensor | None  # (B, r, 1) A tokens merged away
    dst_idx: torch.Tensor | None  # (B, r, 1) B token each source merges into


def max_merge(num_tokens: int, num_prefix_tokens: int) -> int:
    """Largest r one matching can remove: half of the mergeable (non-prefix) tokens."""
    return max((num_tokens - num_prefix_tokens) // 2, 0)


def _identity(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    return x


def bipartite_soft_matching(
    metric: torch.Tensor, r: int, num_prefix_tokens: int = 1
) -> tuple[MergeFn, MatchInfo]:
    """Match r A tokens (even positions) to their most similar B tokens (odd positions).

    metric: (B, N, C) per-token features; similarity is their cosine. r is capped at
    ``(N - num_prefix_tokens) // 2``. The first ``num_prefix_tokens`` positions (class and
    distillation tokens) are never merged away nor merged into. Returns ``merge_fn(x,
    mode)`` mapping (B, N, D) -> (B, N - r, D) with ``scatter_reduce`` ``mode`` ("sum",
    "mean", "amax", ...) and the matching indices.
    """
    n_tok = metric.shape[1]
    r = min(int(r), max_merge(n_tok, num_prefix_tokens))
    if r <= 0:
        return _identity, MatchInfo(0, None, None, None)
    # Protected rows of A are the even prefix positions, protected columns of B the odd ones.
    protect_a = (num_prefix_tokens + 1) // 2
    protect_b = num_prefix_tokens // 2

    with torch.no_grad():
        # Matching in float32: cheap next to attention, and bf16 would create many ties.
        metric = metric.float()
        metric = metric / metric.norm(dim=-1, keepdim=True).clamp_min(1e-6)  # (B, N, C)
        a, b = metric[:, ::2, :], metric[:, 1::2, :]  # (B, Na, C), (B, Nb, C)
        scores = a @ b.transpose(-1, -2)  # (B, Na, Nb)
        if protect_a:
            scores[:, :protect_a, :] = -torch.inf
        if protect_b:
            scores[:, :, :protect_b] = -torch.inf
        node_max, node_idx = scores.max(dim=-1)  # (B, Na) best B partner of each A token
        order = node_max.argsort(dim=-1, descending=True, stable=True)[..., None]  # (B, Na, 1)
        src_idx = order[:, :r, :]  # (B, r, 1)
        unm_idx = order[:, r:, :].sort(dim=1).values  # (B, Na - r, 1) original order
        dst_idx = node_idx[..., None].gather(dim=1, index=src_idx)  # (B, r, 1)

    def merge(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        src, dst = x[:, ::2, :], x[:, 1::2, :]  # (B, Na, D), (B, Nb, D)
        bsz, n_a, dim = src.shape
        unm = src.gather(dim=1, index=unm_idx.expand(bsz, n_a - r, dim))  # (B, Na - r, D)
        moved = src.gather(dim=1, index=src_idx.expand(bsz, r, dim))  # (B, r, D)
        dst = dst.scatter_reduce(1, dst_idx.expand(bsz, r, dim), moved, reduce=mode)
        if num_prefix_tokens == 0:
            return torch.cat([unm, dst], dim=1)  # (B, N - r, D)
        # Interleave the protected tokens back into their original positions 0..p-1.
        prefix = [
            unm[:, i // 2 : i // 2 + 1] if i % 2 == 0 else dst[:, i // 2 : i // 2 + 1]
            for i in range(num_prefix_tokens)
        ]
        return torch.cat([*prefix, unm[:, protect_a:], dst[:, protect_b:]], dim=1)  # (B, N - r, D)

    return merge, MatchInfo(r, unm_idx, src_idx, dst_idx)


def group_merge(groups: torch.Tensor, num_groups: int) -> MergeFn:
    """A merge decided in advance: token n of every sequence goes into output ``groups[n]``.

    groups: (N,) int64 in ``[0, num_groups)``, every group used. Returns ``merge_fn(x, mode)``
    mapping (B, N, D) -> (B, num_groups, D) with ``scatter_reduce`` ``mode``, the same
    contract as ``bipartite_soft_matching``'s, so ``merge_wavg`` and ``merge_source`` keep
    the sizes and sources of a merge that no similarity decided (e.g. padding known to
    carry nothing).
    """
    if groups.ndim != 1 or groups.numel() == 0:
        raise ValueError(
            f"groups: expected a non-empty (N,) index tensor, got {tuple(groups.shape)}"
        )
    used = torch.unique(groups)
    if used.numel() != num_groups or used[0] != 0 or used[-1] != num_groups - 1:
        raise ValueError(f"groups must use every output 0..{num_groups - 1}, found {used.tolist()}")

    def merge(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        bsz, n_tok, dim = x.shape
        if n_tok != groups.numel():
            raise ValueError(f"group_merge built for {groups.numel()} tokens, got {n_tok}")
        index = groups.to(x.device).view(1, n_tok, 1).expand(bsz, n_tok, dim)  # (B, N, D)
        out = x.new_zeros(bsz, num_groups, dim)  # (B, G, D)
        return out.scatter_reduce(1, index, x, reduce=mode, include_self=False)  # (B, G, D)

    return merge


def merge_wavg(
    merge_fn: MergeFn, x: torch.Tensor, size: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge x (B, N, D) as a size-weighted average; size (B, N, 1) counts input patches.

    Returns the merged tokens (in x's dtype) and their sizes (sizes add up). A missing size
    means 1 each. Sizes and the weighted sum are kept in float32: bf16 cannot count past 256.
    """
    if size is None:
        size = torch.ones_like(x[..., :1], dtype=torch.float32)  # (B, N, 1)
    merged = merge_fn(x * size, mode="sum")  # (B, N - r, D), float32 by type promotion
    size = merge_fn(size, mode="sum")  # (B, N - r, 1)
    return (merged / size).to(x.dtype), size


def merge_source(
    merge_fn: MergeFn, x: torch.Tensor, source: torch.Tensor | None = None
) -> torch.Tensor:
    """Carry the source map (B, N, N0): which input tokens each current token contains.

    A missing source starts as the identity over x's tokens. Sources of merged tokens are
    disjoint, so summing keeps it 0/1 and each row sums to the token's size.
    """
    if source is None:
        bsz, n_tok = x.shape[:2]
        source = torch.eye(n_tok, device=x.device, dtype=x.dtype).expand(bsz, n_tok, n_tok)
    return merge_fn(source, mode="sum")  # (B, N - r, N0)
