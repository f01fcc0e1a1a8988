"""Inference benchmark: forwards per merge schedule, our AST next to HF transformers' AST.

Variants: HF ``ASTForAudioClassification`` (the outside baseline, r=0), our ``ASTModel``
at r=0 and at one schedule per FLOP target, each in the requested ``modes``: "eager"
(the run's dtype), "bf16" (eager under bf16 autocast) and "compile" (``torch.compile`` of
a merged copy per schedule; the wall time of its first call, compile + one forward, is
reported apart as ``compile_s``). All forwards run under ``torch.inference_mode()``.
FLOPs: ``tome.flops.vit_flops`` of the tokens each block sees.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import torch

from fastast_pl.tome import MergeSpec
from fastast_pl.tome.flops import vit_flops
from fastast_pl.tools.benchmark.measure import (
    Variant,
    flop_ratio_checks,
    interleaved_times,
    loadavg,
    peak_memory_mb,
    progress,
    run_meta,
    summarise,
)
from fastast_pl.tools.benchmark.models import (
    ModelSize,
    build_hf,
    build_student,
    plan_schedules,
)

MODES = ("eager", "bf16", "compile")


def compiled(module: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile`` with static shapes (one graph per batch size and schedule)."""
    return torch.compile(module, dynamic=False)


def make_variants(
    size: ModelSize,
    targets: Sequence[float],
    device: torch.device,
    with_hf: bool,
    shape: str = "constant",
    modes: Sequence[str] = ("eager",),
    dtype: str = "fp32",
) -> list[Variant]:
    """Build the models (random weights) and one variant per model/schedule/mode."""
    ours = build_student(size).to(device).eval()

    def gflops(tokens: Sequence[int]) -> float:
        return vit_flops(tokens, size.embed_dim, size.mlp_ratio) / 1e9

    def set_merge(spec: MergeSpec) -> Callable[[], None]:
        return lambda: ours.set_merge(spec)

    variants = []
    for mode in modes:
        for plan in plan_schedules(ours, targets, shape):
            sched = ours.merge_schedule(plan.spec)
            v = Variant("ours", plan.name, plan.target, sched.r, sched.tokens,
                        gflops(sched.tokens), ours, set_merge(plan.spec), mode,
                        "bf16" if mode == "bf16" else dtype)  # fmt: skip
            if mode == "compile":
                # Its own copy per schedule: the schedule is fixed in the compiled graph.
                own = copy.deepcopy(ours)
                own.set_merge(plan.spec)
                v.run, v.prepare = compiled(own), lambda: None
            variants.append(v)
    if with_hf:
        hf = build_hf(size).to(device).eval()

        def hf_forward(x: torch.Tensor) -> torch.Tensor:
            return hf(input_values=x).logits

        plain = ours.merge_schedule(0)
        variants.insert(0, Variant("hf", "r=0", 1.0, plain.r, plain.tokens,
                                   gflops(plain.tokens), hf_forward, dtype=dtype))  # fmt: skip
    return variants


def _recompile_limit(n: int):
    """Allow n graphs per compiled code object (every schedule x batch size is one)."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    return config.patch(**{name: max(getattr(config, name), n)})


def run_benchmark(
    size: ModelSize,
    batch_sizes: Sequence[int],
    iters: int,
    warmup: int,
    device: torch.device,
    dtype: str,
    targets: Sequence[float],
    shape: str = "constant",
    with_hf: bool = True,
    with_memory: bool = True,
    seed: int = 0,
    clock: str = "wall",
    modes: Sequence[str] = ("eager",),
) -> dict:
    """Measure every variant at every batch size; returns ``{"meta", "rows", "checks"}``."""
    torch.manual_seed(seed)
    meta = run_meta(device, dtype, iters, warmup, clock)
    t_start = time.perf_counter()
    variants = make_variants(size, targets, device, with_hf, shape, modes, dtype)
    rows: list[dict] = []
    calls = len(batch_sizes) * (max(warmup, 1) + iters) * len(variants)
    with torch.inference_mode(), _recompile_limit(8 * len(variants) * len(batch_sizes)):
        with progress() as bar:
            task = bar.add_task("forward passes", total=calls)
            for bs in batch_sizes:
                x = torch.randn(bs, size.input_tdim, size.input_fdim, device=device)  # (B, T, F)
                timings = interleaved_times(
                    variants, x, device, warmup, iters, clock, lambda: bar.advance(task)
                )
                mem = {
                    id(v): peak_memory_mb(v, x, device)
                    if with_memory and v.mode != "compile"
                    else None
                    for v in variants
                }
                rows += summarise(variants, bs, timings, mem)
    meta.update(
        kind="inference",
        shape=shape,
        modes=list(modes),
        targets=list(targets),
        model_size=size.__dict__,
        load_average_after=loadavg(),
        wall_s=round(time.perf_counter() - t_start, 1),
        flops_method="tome.flops.vit_flops: matmuls of the transformer blocks (2 FLOPs per "
        "multiply-add), patch embedding, head and the merge matching left out",
    )
    return {"meta": meta, "rows": rows, "checks": _checks(rows)}


def _checks(rows: Sequence[dict]) -> list[dict]:
    """The issue's targets, evaluated honestly on the measured rows."""
    out = [
        {
            "check": f"ours r=0 at least as fast as HF (bs={r['batch_size']})",
            "value": round(r["speedup_vs_hf"], 3),
            "passed": r["speedup_vs_hf"] >= 1.0,
        }
        for r in rows
        if r["model"] == "ours" and r["target"] == 1.0 and r["speedup_vs_hf"] is not None
    ]
    return out + flop_ratio_checks([r for r in rows if r["model"] == "ours"], "forward")
