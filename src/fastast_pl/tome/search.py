"""Learn r per layer for a FLOP budget, the network frozen (``tome.relax``; DiffRate's idea).

Loss per step: the relaxed model's distillation loss against the unmerged model's own
outputs on the same inputs (self-distillation: no labels needed), plus
``flops_weight * (E[FLOPs] / target - 1)^2``, plus the same term for the FLOPs of the
mode schedule that the network runs (straight-through: its gradient is the expectation's). Only the rate logits learn (Adam). The
temperature falls geometrically from 1 to ``final_temperature`` over the soft phase; in the
last ``hard_fraction`` of the steps the rates are one-hot in the forward pass
(straight-through), so the expected FLOPs there are exactly the analytic FLOPs
(``tome.flops.vit_flops``) of the schedule that is returned. The search starts from the
constant-r schedule nearest the target.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from fastast_pl.tome.flops import schedule_for_flops_reduction, vit_flops
from fastast_pl.tome.relax import RateRelaxation, relax, unrelax


@dataclass
class SearchStep:
    """One logged step: expected FLOPs as a fraction of the unmerged model's, the losses."""

    step: int
    flops_fraction: float
    distill_loss: float
    loss: float
    temperature: float
    schedule: list[int]


@dataclass
class SearchResult:
    """The schedule found and how the search got there."""

    schedule: list[int]  # r per layer, as ``merge:`` takes it
    flops_fraction: float  # analytic FLOPs of ``schedule`` / the unmerged model's
    expected_flops_fraction: float  # the relaxation's own count at the last step
    target: float
    start_schedule: list[int]
    num_tokens: int
    history: list[SearchStep] = field(default_factory=list)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """KL(teacher || student): of the softmax (single-label) or of each sigmoid (multi-label)."""
    if multi_label:
        bce = F.binary_cross_entropy_with_logits
        target = teacher.sigmoid()
        return bce(student, target) - bce(teacher, target)  # minus the entropy: 0 at a match
    return F.kl_div(
        F.log_softmax(student, -1),
        F.log_softmax(teacher, -1),
        log_target=True,
        reduction="batchmean",
    )


def block_sizes(model: nn.Module) -> tuple[int, float]:
    """Width and MLP ratio of the model's first timm ``Block`` (what the FLOP count needs)."""
    block = model.blocks[0]
    dim = int(block.attn.qkv.in_features)
    return dim, block.mlp.fc1.out_features / dim


def count_tokens(model: nn.Module, example: torch.Tensor) -> int:
    """Tokens entering the first block for ``example`` (one unmerged forward)."""
    seen: list[int] = []
    hook = model.blocks[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        hook.remove()
    return int(seen[0])


def constant_start(
    reduction: float, num_tokens: int, depth: int, prefix: int, dim: int, mlp_ratio: float
) -> int:
    """The constant r nearest the FLOPs ``reduction`` (``schedule_for_flops_reduction``); its
    scan resolves every r, so the capping warnings of the ones not taken are kept quiet."""
    schedule_log = logging.getLogger("fastast_pl.tome.schedule")
    level = schedule_log.level
    schedule_log.setLevel(logging.ERROR)
    try:
        spec = schedule_for_flops_reduction(
            reduction, num_tokens, depth, prefix, dim, mlp_ratio=mlp_ratio
        )
    finally:
        schedule_log.setLevel(level)
    return int(spec)


def temperature_at(step: int, soft_steps: int, final: float) -> float:
    """Geometric from 1 at step 0 to ``final`` at the last soft step."""
    if soft_steps <= 1:
        return final
    return math.exp(math.log(final) * step / (soft_steps - 1))


def search_schedule(
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
    flops: float,
    steps: int = 200,
    *,
    multi_label: bool = False,
    lr: float = 0.1,
    flops_weight: float = 20.0,
    hard_fraction: float = 0.25,
    final_temperature: float = 0.05,
    prop_attn: bool = True,
    seed: int = 0,
    on_step: Callable[[SearchStep], None] | None = None,
) -> SearchResult:
    """Learn r per layer so that the blocks cost ``flops`` x the unmerged FLOPs.

    ``model``: unpatched (no ``apply_tome``) module with timm ``.blocks`` and int
    ``.num_prefix_tokens``; its weights are frozen for the search and given back as they
    were (``requires_grad`` and train/eval mode restored). ``inputs``: batches for
    ``model(batch)``, cycled over ``steps``. ``seed`` fixes the order of the batches.
    """
    if not 0.0 < flops <= 1.0:
        raise ValueError(f"flops={flops}: expected a fraction of the unmerged FLOPs in (0, 1]")
    if steps < 1 or not inputs:
        raise ValueError(
            f"search needs steps >= 1 and some inputs (steps={steps}, {len(inputs)} batches)"
        )
    if not 0.0 <= hard_fraction <= 1.0 or not 0.0 < final_temperature <= 1.0:
        raise ValueError(
            f"hard_fraction={hard_fraction} must be in [0, 1], final_temperature={final_temperature} in (0, 1]"
        )
    prefix, depth = int(model.num_prefix_tokens), len(model.blocks)
    dim, mlp_ratio = block_sizes(model)
    was_training = model.training
    grad_flags = [p.requires_grad for p in model.parameters()]
    model.eval().requires_grad_(False)
    try:
        num_tokens = count_tokens(model, inputs[0])
        start = constant_start(1.0 / flops, num_tokens, depth, prefix, dim, mlp_ratio)
        full = vit_flops([num_tokens] * (depth + 1), dim, mlp_ratio)
        with torch.no_grad():
            targets = [model(x) for x in inputs]  # the unmerged model's own outputs
        relaxation = RateRelaxation(depth, num_tokens, prefix, start).to(inputs[0].device)
        history, expected = _optimise(
            model,
            relaxation,
            inputs,
            targets,
            flops * full,
            steps,
            multi_label,
            lr,
            flops_weight,
            hard_fraction,
            final_temperature,
            prop_attn,
            seed,
            on_step,
        )
    finally:
        unrelax(model)
        for p, flag in zip(model.parameters(), grad_flags):
            p.requires_grad_(flag)
        model.train(was_training)
    schedule = relaxation.schedule()
    tokens = [num_tokens]
    for r in schedule:
        tokens.append(tokens[-1] - r)
    return SearchResult(
        schedule=schedule,
        flops_fraction=vit_flops(tokens, dim, mlp_ratio) / full,
        expected_flops_fraction=expected,
        target=flops,
        start_schedule=[start] * depth,
        num_tokens=num_tokens,
        history=history,
    )


def _optimise(
    model: nn.Module,
    relaxation: RateRelaxation,
    inputs: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    target_flops: float,
    steps: int,
    multi_label: bool,
    lr: float,
    flops_weight: float,
    hard_fraction: float,
    final_temperature: float,
    prop_attn: bool,
    seed: int,
    on_step: Callable[[SearchStep], None] | None,
) -> tuple[list[SearchStep], float]:
    """The gradient loop over the rate logits: the logged steps, the final expected FLOPs."""
    dim, mlp_ratio = block_sizes(model)
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed)).tolist()
    optimizer = torch.optim.Adam(relaxation.parameters(), lr=lr)
    soft_steps = steps - round(steps * hard_fraction)
    state = relax(model, relaxation, prop_attn)
    history = []
    for step in range(steps):
        relaxation.hard = step >= soft_steps
        relaxation.temperature = temperature_at(
            min(step, soft_steps - 1), soft_steps, final_temperature
        )
        batch = order[step % len(order)]
        state.enabled = True
        student = model(inputs[batch])  # probs drawn once per forward (block 0)
        kd = distill_loss(student, targets[batch], multi_label)
        expected = relaxation.expected_flops(dim, mlp_ratio, state.probs)
        # The mode schedule's own FLOPs (straight-through) too: the soft expectation alone can
        # sit on the target while the schedule that runs does not.
        hard = relaxation.expected_flops(dim, mlp_ratio, relaxation.straight_through(state.probs))
        penalty = (expected / target_flops - 1.0) ** 2 + (hard / target_flops - 1.0) ** 2
        loss = kd + flops_weight * penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        full = vit_flops([relaxation.num_tokens] * (relaxation.depth + 1), dim, mlp_ratio)
        record = SearchStep(
            step,
            expected.item() / full,
            kd.item(),
            loss.item(),
            relaxation.temperature if not relaxation.hard else 0.0,
            list(state.schedule),
        )
        history.append(record)
        if on_step is not None:
            on_step(record)
    with torch.no_grad():  # the count of the final rates (one-hot after a hard phase)
        final = relaxation.expected_flops(dim, mlp_ratio) / full
    return history, float(final)
