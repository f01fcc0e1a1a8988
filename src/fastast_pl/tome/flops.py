"""Analytic FLOPs of a ViT block stack under a merge schedule, and schedules for a FLOPs target.

Counts 2 FLOPs per multiply-add of the matrix products only: qkv (N x C x 3C), attention
scores (N x N x C), attention x V (N x N x C), output projection (N x C x C) and the MLP
(2 x N x C x mlp_ratio*C). Norms, softmax, GELU and residual adds are left out (a few % at
ViT sizes). In block l, attention sees ``tokens[l]`` tokens and the MLP, which runs after
the merge, ``tokens[l + 1]``. The matching cost (cosine similarity of A against B,
(N/2) x (N/2) x head_dim multiply-adds) is optional and small.

Training (``training_flops``): a matrix product Y = X W costs the same again twice in
backward (dX = dY W^T and dW = X^T dY; likewise for both operands of QK^T and of AV), so
forward + backward is 3x the forward count. The matching runs under ``no_grad`` and has no
backward; the optimiser step (elementwise over the weights, the same for every schedule)
is not counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastast_pl.tome.schedule import MergeSchedule, MergeSpec, ResolvedSchedule, resolve_schedule


def attention_flops(num_tokens: int, dim: int) -> int:
    """FLOPs of one attention layer (qkv, scores, attention x V, proj) on num_tokens."""
    n, c = num_tokens, dim
    return 2 * (n * c * 3 * c + n * n * c + n * n * c + n * c * c)


def mlp_flops(num_tokens: int, dim: int, mlp_ratio: float = 4.0) -> int:
    """FLOPs of one MLP (two linear layers) on num_tokens."""
    hidden = int(dim * mlp_ratio)
    return 2 * (2 * num_tokens * dim * hidden)


def matching_flops(num_tokens: int, head_dim: int) -> int:
    """FLOPs of one bipartite matching's similarity matrix on num_tokens."""
    return 2 * (num_tokens // 2 + num_tokens % 2) * (num_tokens // 2) * head_dim


def vit_flops(
    tokens: Sequence[int],
    dim: int,
    mlp_ratio: float = 4.0,
    include_matching: bool = False,
    head_dim: int = 64,
) -> int:
    """FLOPs of ``len(tokens) - 1`` blocks; ``tokens[l]`` enter block l (``ResolvedSchedule.tokens``)."""
    if len(tokens) < 2:
        raise ValueError(
            f"tokens={list(tokens)!r}: need the count entering each block plus the final"
        )
    total = 0
    for n_in, n_out in zip(tokens[:-1], tokens[1:]):
        total += attention_flops(n_in, dim) + mlp_flops(n_out, dim, mlp_ratio)
        if include_matching and n_out < n_in:
            total += matching_flops(n_in, head_dim)
    return total


def training_flops(
    tokens: Sequence[int],
    dim: int,
    mlp_ratio: float = 4.0,
    include_matching: bool = False,
    head_dim: int = 64,
) -> int:
    """FLOPs of forward + backward of the blocks: 3x the forward's matrix products."""
    total = 3 * vit_flops(tokens, dim, mlp_ratio)
    if include_matching:
        matching = vit_flops(tokens, dim, mlp_ratio, True, head_dim) - vit_flops(
            tokens, dim, mlp_ratio
        )
        total += matching  # forward only: the matching has no gradient
    return total


def flops_ratio(
    schedule: ResolvedSchedule,
    dim: int,
    mlp_ratio: float = 4.0,
    include_matching: bool = False,
    head_dim: int = 64,
) -> float:
    """FLOPs without merging divided by FLOPs with ``schedule`` (2.0 = half the FLOPs)."""
    base = [schedule.tokens[0]] * len(schedule.tokens)
    merged = vit_flops(schedule.tokens, dim, mlp_ratio, include_matching, head_dim)
    return vit_flops(base, dim, mlp_ratio) / merged


def schedule_for_flops_reduction(
    target_ratio: float,
    num_tokens: int,
    depth: int,
    num_prefix_tokens: int,
    dim: int,
    shape: str = "constant",
    mlp_ratio: float = 4.0,
    use_ratio: bool = False,
    include_matching: bool = False,
) -> MergeSpec:
    """The schedule whose FLOPs ratio (``flops_ratio``) is closest to ``target_ratio``.

    shape "constant" without ``use_ratio`` searches the int r of ToMe's constant schedule;
    otherwise it searches ``MergeSchedule(ratio=..., shape=shape)`` over ratios in steps of
    1e-4 (coarse 1e-3 grid, then refined). Raises ValueError if the target is below 1 or beyond what the shape can reach.
    """
    if not target_ratio >= 1.0:
        raise ValueError(f"target_ratio={target_ratio!r}: expected a FLOPs reduction >= 1.0")

    def ratio_of(spec: MergeSpec) -> float:
        resolved = resolve_schedule(spec, num_tokens, depth, num_prefix_tokens)
        return flops_ratio(resolved, dim, mlp_ratio, include_matching)

    if shape == "constant" and not use_ratio:
        scored = [(ratio_of(r), r) for r in range((num_tokens - num_prefix_tokens) // 2 + 1)]
    else:
        # Coarse grid over the valid ratios, then a fine grid around the best coarse point.
        top = 2500 if shape == "decreasing" else 5000  # ratio * 1e4 must stay below this

        def spec_at(i: int) -> MergeSchedule:
            return MergeSchedule(ratio=i / 1e4, shape=shape)

        coarse = [(ratio_of(spec_at(i)), i) for i in range(0, top, 10)]
        centre = min(coarse, key=lambda item: abs(item[0] - target_ratio))[1]
        fine = range(max(centre - 10, 0), min(centre + 11, top))
        scored = [(score, spec_at(i)) for score, i in coarse]
        scored += [(ratio_of(spec_at(i)), spec_at(i)) for i in fine]
    best_reach = max(score for score, _ in scored)
    if target_ratio > best_reach * 1.01:
        raise ValueError(
            f"target_ratio={target_ratio}: shape {shape!r} reaches at most {best_reach:.2f}x "
            f"for {num_tokens} tokens, depth {depth}, dim {dim}"
        )
    return min(scored, key=lambda item: abs(item[0] - target_ratio))[1]
