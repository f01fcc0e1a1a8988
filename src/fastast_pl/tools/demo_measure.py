"""The demo's measurements: merge schedules for a FLOP target, and batched, interleaved timing.

Lightning's per-batch test throughput is too noisy on a shared CPU for the demo's claim
(a few small batches, other processes running), so the demo times the trained AST
itself: the same fixed batch under every schedule, the schedules interleaved round by
round so that a burst of load hits all of them alike, the best round kept (as
``timeit`` recommends: slower rounds are interference, not the model).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fastast_pl.models.ast import ASTModel
from fastast_pl.tome import flops_ratio, schedule_for_flops_reduction


@dataclass
class TimedSchedule:
    """A constant ToMe schedule (r tokens merged in every block) and what it costs."""

    r: int
    flops_ratio: float  # analytic FLOPs without merging / with (fastast_pl.tome.flops)
    tokens: list[int]  # tokens entering each block, then leaving the last
    clips_per_s: float = float("nan")


def load_ast(checkpoint: str) -> ASTModel:
    """The trained AST of a demo checkpoint, in eval mode (the one place models are built)."""
    return ASTModel.from_pretrained(checkpoint).eval()


def schedules_for(model: ASTModel, targets: Sequence[float]) -> list[TimedSchedule]:
    """No merging, then the constant-r schedule closest to each analytic FLOP target."""
    out = []
    for target in (1.0, *targets):
        r = 0
        if target > 1.0:
            r = int(
                schedule_for_flops_reduction(
                    target,
                    model.num_tokens,
                    model.depth,
                    model.num_prefix_tokens,
                    model.embed_dim,
                    mlp_ratio=model.arch.mlp_ratio,
                )  # fmt: skip
            )
        resolved = model.merge_schedule(r)
        ratio = flops_ratio(resolved, model.embed_dim, model.arch.mlp_ratio)
        out.append(TimedSchedule(r, ratio, list(resolved.tokens)))
    return out


def time_schedules(
    model: ASTModel,
    schedules: Sequence[TimedSchedule],
    batch_size: int = 64,
    rounds: int = 7,
    batches_per_round: int = 2,
    threads: int = 1,
    seed: int = 0,
) -> None:
    """Fill in ``clips_per_s`` of each schedule: best round of ``batches_per_round`` forwards.

    Runs on ``threads`` torch threads (restored afterwards): one thread is what the FLOP
    count describes and is far steadier than two when other processes share the cores.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(seed)
    batch = torch.randn(batch_size, model.input_tdim, model.input_fdim, generator=generator)
    best = [float("inf")] * len(schedules)
    try:
        with torch.inference_mode():
            for _ in range(rounds):
                for i, schedule in enumerate(schedules):
                    model.set_merge(schedule.r)
                    model(batch)  # warm-up for this schedule's shapes
                    start = time.perf_counter()
                    for _ in range(batches_per_round):
                        model(batch)
                    seconds = (time.perf_counter() - start) / batches_per_round
                    best[i] = min(best[i], seconds)
    finally:
        torch.set_num_threads(previous_threads)
        model.set_merge(0)
    for schedule, seconds in zip(schedules, best):
        schedule.clips_per_s = batch_size / seconds


def timing_note(batch_size: int, rounds: int, batches_per_round: int, threads: int) -> str:
    """How the clips/s column was measured, in one line for the table's caption."""
    return (
        f"clips/s: batches of {batch_size} clips, {threads} torch thread(s), inference mode, "
        f"schedules interleaved, best of {rounds} rounds x {batches_per_round} batches"
    )
