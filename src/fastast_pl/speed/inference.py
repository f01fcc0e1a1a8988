"""Inference benchmark: forwards per merge schedule, our AST next to HF transformers' AST.

Variants: HF ``ASTForAudioClassification`` (the outside baseline, r=0), our ``ASTModel``
at r=0 and at one schedule per FLOP target, each in the requested ``modes``: "eager"
(the run's dtype), "bf16" (eager under bf16 autocast) and "compile" (``torch.compile`` of
a merged copy per schedule; the wall time of its first call, compile + one forward, is
reported apart as ``compile_s``) and "int8" (CPU: the merged model exported to ONNX with
int8 linear layers and run by ONNX Runtime with torch's thread count, ``models.onnx``;
its peak memory is not seen by the torch profiler and is left out). Short clips
(``short_clip_variants``): per clip length, our model at r=0 under the ``short_clips``
options that spend less than the padded window, "crop-pos" and "merge-pad" as modes, timed
against our eager r=0 (the clip zero-padded to the window: "pad"). All forwards run under
``torch.inference_mode()``.
FLOPs: ``tome.flops.vit_flops`` of the tokens each block sees.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence

import torch

from fastast_pl.models.ast import ASTModel
from fastast_pl.short_clips import clip_tokens, kept_frames
from fastast_pl.speed.engine import Variant
from fastast_pl.speed.measure import (
    RunSettings,
    finish_meta,
    flop_ratio_checks,
    measure_batches,
    start_meta,
)
from fastast_pl.speed.models import (
    ModelSize,
    build_hf,
    build_student,
    plan_schedules,
    set_schedule,
)
from fastast_pl.tome import MergeSpec, apply_tome, resolve_schedule
from fastast_pl.tome.flops import PlannedSchedule, vit_flops

MODES = ("eager", "bf16", "compile", "int8")
SHORT_CLIP_MODES = ("crop-pos", "merge-pad")


def compiled(module: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile`` with static shapes (one graph per batch size and schedule)."""
    return torch.compile(module, dynamic=False)


def make_variants(
    size: ModelSize,
    settings: RunSettings,
    with_hf: bool,
    modes: Sequence[str] = ("eager",),
    ours: ASTModel | None = None,
    plans: Sequence[PlannedSchedule] | None = None,
    short_clips: Sequence[tuple[str, int]] = (),
) -> list[Variant]:
    """One variant per model/schedule/mode: ``ours`` (default: built at ``size``, random
    weights) under ``plans`` (default: r=0 and the targets' schedules), HF's AST, and per
    short clip (a name and its fbank frames) ``short_clip_variants``."""
    device, dtype, attn_backend = settings.device, settings.dtype, settings.attn_backend
    ours = (ours or build_student(size)).to(device).eval()
    if plans is None:
        plans = plan_schedules(ours, settings.targets, settings.shape)

    def gflops(tokens: Sequence[int]) -> float:
        return vit_flops(tokens, size.embed_dim, size.mlp_ratio) / 1e9

    def set_merge(spec: MergeSpec) -> Callable[[], None]:
        return lambda: set_schedule(ours, spec, attn_backend)

    variants = []
    for mode in modes:
        for plan in plans:
            sched = ours.merge_schedule(plan.spec)
            v = Variant("ours", plan.name, plan.target, sched.r, sched.tokens,
                        gflops(sched.tokens), ours, set_merge(plan.spec), mode,
                        "bf16" if mode == "bf16" else dtype)  # fmt: skip
            if mode == "compile":
                # Its own copy per schedule: the schedule is fixed in the compiled graph.
                own = copy.deepcopy(ours)
                set_schedule(own, plan.spec, attn_backend)
                v.run, v.prepare = compiled(own), lambda: None
            if mode == "int8":
                own = copy.deepcopy(ours)
                set_schedule(own, plan.spec, attn_backend)
                v.run, v.prepare, v.dtype = int8_model(own), lambda: None, "int8"
            variants.append(v)
    variants += short_clip_variants(ours, short_clips, dtype, attn_backend)
    if with_hf:
        hf = build_hf(size).to(device).eval()

        def hf_forward(x: torch.Tensor) -> torch.Tensor:
            return hf(input_values=x).logits

        plain = ours.merge_schedule(0)
        variants.insert(0, Variant("hf", "r=0", 1.0, plain.r, plain.tokens,
                                   gflops(plain.tokens), hf_forward, dtype=dtype))  # fmt: skip
    return variants


def short_clip_variants(
    ours: ASTModel, clips: Sequence[tuple[str, int]], dtype: str = "fp32", attn_backend="auto"
) -> list[Variant]:
    """Per clip (its name, its fbank frames, fewer than the window's): ``ours`` at r=0
    under "crop-pos" (the clip's own patch columns) and "merge-pad" (the padded window, its
    padding-only columns merged per frequency row first), modes whose speed-up is taken
    against our eager r=0 of the padded window (``measure.summarise``)."""
    variants = []
    for name, frames in clips:
        if not 1 <= frames < ours.input_tdim:
            raise ValueError(
                f"short clip {name}: {frames} fbank frames; expected 1 to {ours.input_tdim - 1} "
                "(shorter than the model's window)"
            )
        for mode in SHORT_CLIP_MODES:
            tokens = clip_tokens(ours, frames, mode)
            plain = resolve_schedule(0, tokens, ours.depth, ours.num_prefix_tokens)
            gflops = vit_flops(plain.tokens, ours.embed_dim, ours.arch.mlp_ratio) / 1e9
            if mode == "crop-pos":
                run = functools.partial(_cropped, ours, kept_frames(ours, frames))
                prepare = functools.partial(set_schedule, ours, 0, attn_backend)
            else:
                run = functools.partial(ours, clip_frames=frames)
                prepare = functools.partial(_merge_pad_blocks, ours, attn_backend)
            variants.append(Variant("ours", name, 1.0, plain.r, plain.tokens, gflops, run,
                                    prepare, mode, dtype))  # fmt: skip
    return variants


def _cropped(model: ASTModel, frames: int, x: torch.Tensor) -> torch.Tensor:
    return model(x[:, :frames], crop_time=True)  # the clip's kept frames, (B, T', F)


def _merge_pad_blocks(model: ASTModel, attn_backend: str) -> None:
    """r=0 in ToMe blocks with proportional attention (what merge-pad needs)."""
    set_schedule(model, 0, attn_backend)
    apply_tome(model, r=0, prop_attn=True, attn_backend=attn_backend)


def int8_model(module: ASTModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """``module`` (its schedule set) as int8 ONNX run by ONNX Runtime (``models.onnx``)."""
    from fastast_pl.models.onnx import int8_onnx_model

    return int8_onnx_model(module.eval(), module.input_tdim, module.input_fdim)


def _recompile_limit(n: int):
    """Allow n graphs per compiled code object (every schedule x batch size is one)."""
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    return config.patch(**{name: max(getattr(config, name), n)})


def run_benchmark(
    size: ModelSize,
    batch_sizes: Sequence[int],
    settings: RunSettings,
    with_hf: bool = True,
    with_memory: bool = True,
    modes: Sequence[str] = ("eager",),
    ours: ASTModel | None = None,
    plans: Sequence[PlannedSchedule] | None = None,
    short_clips: Sequence[tuple[str, int]] = (),
) -> dict:
    """Measure every variant at every batch size; returns ``{"meta", "rows", "checks"}``."""
    meta = start_meta(settings)
    variants = make_variants(size, settings, with_hf, modes, ours, plans, short_clips)
    with torch.inference_mode(), _recompile_limit(8 * len(variants) * len(batch_sizes)):
        rows = measure_batches(variants, (size.input_tdim, size.input_fdim), batch_sizes,
                               settings, "forward passes", with_memory)  # fmt: skip
    finish_meta(meta, "inference", size, modes=list(modes),
                short_clips=[{"clip": n, "frames": f} for n, f in short_clips],
                flops_method="tome.flops.vit_flops: matmuls of the transformer blocks (2 FLOPs "
                "per multiply-add), patch embedding, head and the merge matching left out")  # fmt: skip
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
