"""Analytic FLOPs of a ViT block stack under a merge schedule, and the one planner of schedules
for a FLOP target (``schedule_for_flops_reduction``, ``plan_schedules``).

Units: ``vit_flops`` counts 2 FLOPs per multiply-add (MAC), as ``torch.utils.flop_counter``
does; ``vit_macs`` counts 1 per multiply-add, the "GFLOPs" of fvcore and of the ToMe and AST
papers. ViT-B/16 at 224 x 224: 17.4 GMACs = 34.9 GFLOPs in the blocks (fvcore's 17.6 G adds
the patch embedding and the head). The FLOP ratio is the same in both units.

Counts the matrix products only: qkv (N x C x 3C), attention
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
from dataclasses import dataclass

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


def vit_macs(tokens: Sequence[int], dim: int, mlp_ratio: float = 4.0) -> int:
    """Multiply-adds of the blocks (fvcore's and the papers' "FLOPs"): half of ``vit_flops``."""
    return vit_flops(tokens, dim, mlp_ratio) // 2


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
    weights: Sequence[float] | None = None,
) -> MergeSpec:
    """The schedule whose FLOPs ratio (``flops_ratio``) is closest to ``target_ratio``.

    shape "constant" without ``use_ratio`` searches the int r of ToMe's constant schedule;
    otherwise it searches ``MergeSchedule(ratio=..., shape=shape)`` over ratios in steps of
    1e-4 (coarse 1e-3 grid, then refined). With per-layer ``weights`` (``w_l >= 0``, one per
    layer; ``shape`` ignored) layer l merges the ratio ``s * w_l / max(w)`` of its mergeable
    tokens, ``s`` the smallest scale (bisection on [0, 0.5)) whose schedule reaches the
    target, and the r per layer (a list) is returned. Raises ValueError if the target is below
    1 or beyond what the shape can reach.
    """
    if not target_ratio >= 1.0:
        raise ValueError(f"target_ratio={target_ratio!r}: expected a FLOPs reduction >= 1.0")

    def ratio_of(spec: MergeSpec) -> float:  # a candidate: capped or not, it only gets a score
        resolved = resolve_schedule(spec, num_tokens, depth, num_prefix_tokens, warn=False)
        return flops_ratio(resolved, dim, mlp_ratio, include_matching)

    if weights is not None:
        return _weighted_schedule(list(weights), target_ratio, ratio_of, num_tokens, depth,
                                  num_prefix_tokens)  # fmt: skip
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


_MAX_MERGE_RATIO = 0.4999  # MergeSchedule ratios live in [0, 0.5)


def _weighted_schedule(
    weights: list[float], target: float, ratio_of, num_tokens: int, depth: int,
    num_prefix_tokens: int,
) -> list[int]:  # fmt: skip
    """r per layer in the shape of ``weights`` whose FLOP ratio first reaches ``target``."""
    if len(weights) != depth or any(not w >= 0 for w in weights):
        raise ValueError(f"weights={weights}: expected {depth} numbers >= 0, one per layer")
    top = max(weights)

    def spec(scale: float) -> MergeSchedule:
        return MergeSchedule(ratio=[scale * w / top if top > 0 else 0.0 for w in weights])

    if target == 1.0:
        return [0] * depth
    reach = ratio_of(spec(_MAX_MERGE_RATIO))
    if reach < target:
        raise ValueError(
            f"target_ratio={target} is out of reach with weights {weights}: this shape gives "
            f"at most {reach:.3f}x on {num_tokens} tokens, depth {depth}"
        )
    lo, hi = 0.0, _MAX_MERGE_RATIO  # ratio(lo) < target <= ratio(hi); r grows with the scale
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if ratio_of(spec(mid)) >= target else (mid, hi)
    return list(resolve_schedule(spec(hi), num_tokens, depth, num_prefix_tokens).r)


@dataclass(frozen=True)
class PlannedSchedule:
    """A schedule planned for a FLOP target: its name, the target, the spec, what it gives."""

    name: str  # "r=0", "1.5x", ...
    target: float  # requested FLOP reduction factor (1.0 for none)
    spec: MergeSpec
    r: tuple[int, ...]  # per layer
    tokens: tuple[int, ...]  # entering each block, then leaving the last
    flop_ratio: float  # unmerged FLOPs / these FLOPs (``flops_ratio``)


def plan_schedules(
    targets: Sequence[float],
    num_tokens: int,
    depth: int,
    num_prefix_tokens: int,
    dim: int,
    mlp_ratio: float = 4.0,
    shape: str = "constant",
) -> list[PlannedSchedule]:
    """No merging, then per FLOP target the ``shape`` schedule closest to it
    (``schedule_for_flops_reduction``): what the benchmark and the demo measure."""
    planned = []
    for target in (1.0, *targets):
        spec: MergeSpec = 0
        if target > 1.0:
            spec = schedule_for_flops_reduction(target, num_tokens, depth, num_prefix_tokens,
                                                dim, shape, mlp_ratio)  # fmt: skip
        resolved = resolve_schedule(spec, num_tokens, depth, num_prefix_tokens)
        name = "r=0" if target == 1.0 else f"{target:g}x"
        ratio = flops_ratio(resolved, dim, mlp_ratio)
        planned.append(PlannedSchedule(name, target, spec, tuple(resolved.r),
                                       tuple(resolved.tokens), ratio))  # fmt: skip
    return planned
