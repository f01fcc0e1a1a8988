"""Speed per merge schedule of an AST: each distinct schedule timed once, next to its r=0.

Speed depends on the architecture, the input size and the schedule, not on the weights, so
one randomly initialised model per architecture is timed under every distinct schedule
(interleaved, by ``speed.engine``) and runs or models that share a schedule share its
measurement. ``model_spec`` is what a run logs (``trainer.merge_stats``) so that ``report``
can rebuild that model later; ``time_schedules`` is what the demo, ``report`` and
``benchmark --checkpoint`` call.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fastast_pl.models.arch import ASTArch
from fastast_pl.models.ast import ASTModel
from fastast_pl.speed.engine import Variant, interleaved_times, progress, torch_threads
from fastast_pl.tome.flops import vit_flops
from fastast_pl.tome.schedule import MergeSpec


def model_spec(model: ASTModel) -> dict[str, Any]:
    """Everything the speed of ``model`` depends on besides its schedule (JSON-able)."""
    arch = dataclasses.asdict(model.arch)
    arch.pop("drop_path_rate", None)  # identity at inference
    return {"num_classes": model.num_classes, "input_tdim": model.input_tdim,
            "input_fdim": model.input_fdim, "prop_attn": bool(model.prop_attn), "arch": arch}  # fmt: skip


def build_model(spec: dict[str, Any]) -> ASTModel:
    """A randomly initialised ``ASTModel`` of a ``model_spec`` in eval mode (weights do not
    change speed). Raises ValueError naming the spec when it is not one."""
    try:
        arch = ASTArch(**spec["arch"])
        model = ASTModel(spec["num_classes"], spec["input_tdim"], spec["input_fdim"], arch,
                         prop_attn=spec["prop_attn"])  # fmt: skip
    except (KeyError, TypeError) as err:
        raise ValueError(
            f"model spec {spec!r}: expected the keys of speed.model_spec ({err})"
        ) from None
    return model.eval()


@dataclass(frozen=True)
class TimingSettings:
    """How schedules are timed. Default: one torch thread on the process CPU clock, which
    other processes on a shared machine do not add to (wall clock on CUDA)."""

    batch_size: int = 8
    rounds: int = 5
    warmup: int = 1
    threads: int | None = 1
    clock: str = "cpu"
    device: str = "cpu"
    seed: int = 0

    def describe(self) -> str:
        """What was timed, in one line for a caption."""
        threads = "torch's default" if self.threads is None else str(self.threads)
        return (f"{self.batch_size} random clips per batch, {threads} torch thread(s), "
                f"{self.clock} clock, {self.device}, inference mode; schedules interleaved, "
                f"median of {self.rounds} rounds after {self.warmup} warm-up (min-max)")  # fmt: skip


@dataclass(frozen=True)
class ScheduleSpeed:
    """One schedule's measured speed, and its speed-up over r=0 of the same model.

    The speed-up is paired: r=0 and the schedule run in the same round, so each round gives
    one ratio; the median and the range of those ratios are reported.
    """

    r: tuple[int, ...]
    tokens: tuple[int, ...]
    gmacs: float  # multiply-adds per clip of the blocks (tome.flops.vit_macs), / 1e9
    flop_ratio: float
    clips_per_s: float  # at the median round
    clips_per_s_min: float
    clips_per_s_max: float
    speedup: float  # median over rounds of (r=0 time / this schedule's time)
    speedup_min: float
    speedup_max: float

    @property
    def measurably_faster(self) -> bool:
        """True only when every round showed a speed-up (the range lies above 1)."""
        return self.speedup_min > 1.0


def time_schedules(
    model: ASTModel, schedules: Sequence[MergeSpec], settings: TimingSettings = TimingSettings()
) -> list[ScheduleSpeed]:
    """The speed of every schedule of ``model``, one entry per input (equal schedules share
    one measurement); r=0 is always timed too, as the reference. The model's own schedule is
    restored afterwards."""
    device = torch.device(settings.device)
    if settings.clock == "cpu" and device.type != "cpu":
        raise ValueError(f"clock 'cpu' measures CPU time; it means nothing on {device.type}")
    resolved = [tuple(model.merge_schedule(s).r) for s in schedules]
    distinct = list(dict.fromkeys([(0,) * model.depth, *resolved]))
    own = (model.merge, model.eval_merge)
    dim, mlp = model.embed_dim, model.arch.mlp_ratio
    variants = []
    for r in distinct:
        tokens = model.merge_schedule(list(r)).tokens
        variants.append(Variant("ours", f"r={list(r)}", 1.0, list(r), list(tokens),
                                vit_flops(tokens, dim, mlp) / 1e9, model,
                                (lambda r=r: model.set_merge(list(r)))))  # fmt: skip
    generator = torch.Generator().manual_seed(settings.seed)
    x = torch.randn(settings.batch_size, model.input_tdim, model.input_fdim, generator=generator)
    model = model.to(device).eval()
    try:
        with torch_threads(settings.threads), torch.inference_mode(), progress() as bar:
            task = bar.add_task(f"timing {len(distinct)} schedules",
                                total=len(distinct) * (max(settings.warmup, 1) + settings.rounds))  # fmt: skip
            timings = interleaved_times(variants, x.to(device), device, settings.warmup,
                                        settings.rounds, settings.clock,
                                        lambda: bar.advance(task))  # fmt: skip
    finally:
        model.set_merge(*own)
    base_times = timings.times[id(variants[0])]
    speeds = {}
    for r, v in zip(distinct, variants):
        times = timings.times[id(v)]
        ratios = [b / t for b, t in zip(base_times, times)]  # paired: same round
        bs = settings.batch_size
        speeds[r] = ScheduleSpeed(
            r, tuple(v.tokens), v.gflops / 2, variants[0].gflops / v.gflops,
            bs / statistics.median(times), bs / max(times), bs / min(times),
            statistics.median(ratios), min(ratios), max(ratios),
        )  # fmt: skip
    return [speeds[r] for r in resolved]
