"""The benchmark's rows: per-variant figures and checks from the one timing engine.

Timing, clocks and memory live in ``fastast_pl.speed.engine`` (shared with the demo and
``report``); this module turns the engine's timings into the benchmark's table rows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from fastast_pl.speed.engine import (
    Timings,
    Variant,
    interleaved_times,
    peak_memory_mb,
    progress,
    quantile,
)
from fastast_pl.speed.machine import loadavg, run_meta


def summarise(
    variants: Sequence[Variant],
    batch_size: int,
    timings: Timings,
    memory: dict[int, float | None],
) -> list[dict]:
    """One row per variant: latency, throughput, and its speed-up and FLOP ratio against
    the r=0 variant of the same model and mode (a mode without one, such as a short-clip
    option: against eager r=0), plus vs eager and vs HF where present. The speed-up's
    spread: the smallest and largest ratio of one round's calls (interleaved, so a load
    change hits both)."""
    median = {k: statistics.median(v) for k, v in timings.times.items()}

    def find(model: str, mode: str, schedule: str) -> Variant | None:
        match = (v for v in variants if (v.model, v.mode, v.schedule) == (model, mode, schedule))
        return next(match, None)

    hf = find("hf", "eager", "r=0")
    rows = []
    for v in variants:
        base = find(v.model, v.mode, "r=0") or find(v.model, "eager", "r=0") or v
        eager = find(v.model, "eager", v.schedule)
        lat = [t * 1e3 for t in timings.times[id(v)]]
        speedup = median[id(base)] / median[id(v)]
        per_round = [b / t for b, t in zip(timings.times[id(base)], timings.times[id(v)])]
        rows.append(
            {
                "model": v.model,
                "schedule": v.schedule,
                "mode": v.mode,
                "dtype": v.dtype,
                "target": v.target,
                "batch_size": batch_size,
                "r": list(v.r),
                "tokens": list(v.tokens),
                "gflops_per_clip": v.gflops,
                "gmacs_per_clip": v.gflops / 2,  # 1 per multiply-add (fvcore, the papers)
                "flop_ratio": base.gflops / v.gflops,
                "latency_ms_median": median[id(v)] * 1e3,
                "latency_ms_p90": quantile(lat, 0.9),
                "latency_ms_range": f"{min(lat):.1f}-{max(lat):.1f}",
                # Median-based: robust to the odd disturbed call on a shared machine.
                "throughput": batch_size / median[id(v)],
                "speedup": speedup,
                "speedup_range": f"{min(per_round):.2f}-{max(per_round):.2f}",
                "speedup_per_flop_ratio": speedup / (base.gflops / v.gflops),
                "speedup_vs_eager": (
                    median[id(eager)] / median[id(v)] if eager and v.mode != "eager" else None
                ),
                "speedup_vs_hf": (
                    median[id(hf)] / median[id(v)] if hf and v.mode == "eager" else None
                ),
                "compile_s": timings.first_call_s[id(v)] if v.mode == "compile" else None,
                "peak_mem_mb": memory[id(v)],
                "latencies_ms": lat,
            }
        )
    return rows


def measure_batches(
    variants: Sequence[Variant],
    input_shape: tuple[int, int],
    batch_sizes: Sequence[int],
    settings: RunSettings,
    what: str,
    with_memory: bool,
) -> list[dict]:
    """Rows of every variant at every batch size, on random (B, T, F) inputs."""
    s, rows = settings, []
    with progress() as bar:
        task = bar.add_task(what, total=len(batch_sizes) * (max(s.warmup, 1) + s.iters)
                            * len(variants))  # fmt: skip
        for bs in batch_sizes:
            x = torch.randn(bs, *input_shape, device=s.device)  # (B, T, F)
            timings = interleaved_times(variants, x, s.device, s.warmup, s.iters, s.clock,
                                        lambda: bar.advance(task))  # fmt: skip
            # Memory of a compiled variant would count the compiler's own work, and the torch
            # profiler does not see ONNX Runtime's (int8): both left out.
            mem = {id(v): peak_memory_mb(v, x, s.device)
                   if with_memory and v.mode not in ("compile", "int8") else None
                   for v in variants}  # fmt: skip
            rows += summarise(variants, bs, timings, mem)
    return rows


def flop_ratio_checks(rows: Sequence[dict], what: str, count: str = "bs") -> list[dict]:
    """The issue's target: speed-up >= 0.9 x the FLOP ratio for every schedule whose FLOP
    target is up to 2x (``count`` names what a row's ``batch_size`` counts)."""
    return [
        {
            "check": f"{what} speed-up >= 0.9 x FLOP ratio ({r['model']} {r['schedule']} "
            f"{r['mode']}, {count}={r['batch_size']})",
            "value": round(r["speedup_per_flop_ratio"], 3),
            "passed": r["speedup_per_flop_ratio"] >= 0.9,
        }
        for r in rows
        if 1.0 < r["target"] <= 2.0
    ]


@dataclass(frozen=True)
class RunSettings:
    """How a benchmark runs, whatever its kind (the CLI's common options)."""

    iters: int
    warmup: int
    device: torch.device
    dtype: str = "fp32"
    targets: tuple[float, ...] = ()
    shape: str = "constant"
    seed: int = 0
    clock: str = "wall"
    attn_backend: str = "auto"


def start_meta(settings: RunSettings) -> dict:
    """Seed torch; record the machine, versions, settings, start time and load."""
    torch.manual_seed(settings.seed)
    meta = run_meta(settings.device, settings.dtype, settings.iters, settings.warmup,
                    settings.clock)  # fmt: skip
    meta.update(shape=settings.shape, targets=list(settings.targets),
                attn_backend=settings.attn_backend, started=time.perf_counter())  # fmt: skip
    return meta


def finish_meta(meta: dict, kind: str, size: object, **extra: object) -> dict:
    """Add what ran, the load after it and the wall time since ``start_meta``."""
    started = meta.pop("started")
    meta.update(kind=kind, model_size=dict(size.__dict__), load_average_after=loadavg(),
                wall_s=round(time.perf_counter() - started, 1), **extra)  # fmt: skip
    return meta
