"""End-to-end benchmark: a test epoch (features from the cache -> batches -> model) per schedule.

What a user of a recipe sees on a whole evaluation, not only on forwards: the ESC-50
recipe's features (5 s clips at 44.1 kHz resampled to 16 kHz, 128 mel bins x 512 frames;
experiments/esc50/data.yaml) read from a filled ``FeatureCache`` through a DataLoader, and
AST-Base (or the tiny model) under ``inference_mode`` at each merge schedule. Before the
timed epochs, one untimed pass fills the cache (decode, resample, fbank) so every timed
epoch reads cached features, as every epoch after the first does in training. Loading runs
in this process (``num_workers=0``), so ``--clock cpu`` counts it too; each row says how
much of the epoch was spent waiting for batches.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fastast_pl.speed.engine import CLOCKS, Variant, interleaved_times, progress
from fastast_pl.speed.measure import (
    RunSettings,
    finish_meta,
    flop_ratio_checks,
    start_meta,
    summarise,
)
from fastast_pl.speed.models import (
    ModelSize,
    build_student,
    plan_schedules,
    set_schedule,
)
from fastast_pl.tome import MergeSpec
from fastast_pl.tome.flops import vit_flops

# experiments/esc50/data.yaml: 50 classes, audio_length 512 (5 s at a 10 ms hop), 128 bins.
ESC50_BASE = ModelSize(768, 12, 12, 4.0, 512, 128, 50)
ESC50_TINY = ModelSize(64, 4, 4, 4.0, 128, 128, 50)
ESC50_SECONDS, ESC50_FILE_RATE = 5.0, 44100  # ESC-50 clips: 5 s, 44.1 kHz mono WAV


def build_test_loader(
    folder: Path, clips: int, size: ModelSize, seconds: float, batch_size: int
) -> DataLoader:
    """WAV clips written to ``folder``, their features cached, and a test-split loader."""
    from fastast_pl.data.cache import FeatureCache
    from fastast_pl.data.clips import Clip
    from fastast_pl.data.dataset import AudioDataset
    from fastast_pl.data.features import FeatureConfig
    from fastast_pl.speed.data_loading import write_clips

    features = FeatureConfig(num_mel_bins=size.input_fdim, target_length=size.input_tdim)
    paths = write_clips(folder / "audio", clips, seconds, ESC50_FILE_RATE)
    cache = FeatureCache(folder / "cache", features)
    dataset = AudioDataset(
        [Clip(p, (i % size.num_classes,)) for i, p in enumerate(paths)],
        num_classes=size.num_classes,
        features=features,
        cache=cache,
    )
    for i in range(len(dataset)):  # fill the cache: every timed epoch reads from it
        dataset[i]
    if cache.misses != clips:
        raise RuntimeError(f"feature cache at {folder / 'cache'}: expected {clips} misses "
                           f"filling it, got {cache.misses}")  # fmt: skip
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


def run_epoch_benchmark(
    size: ModelSize,
    clips: int,
    batch_size: int,
    settings: RunSettings,
    seconds: float = ESC50_SECONDS,
) -> dict:
    """Time ``iters`` test epochs per schedule (interleaved); ``{"meta", "rows", "checks"}``."""
    meta = start_meta(settings)
    s = settings
    device, clock, attn_backend = s.device, s.clock, s.attn_backend
    model = build_student(size).to(device).eval()
    now = CLOCKS[clock]
    waiting: dict[str, list[float]] = {}

    with tempfile.TemporaryDirectory(prefix="fastast-bench-epoch-") as tmp:
        loader = build_test_loader(Path(tmp), clips, size, seconds, batch_size)

        def epoch(name: str) -> Callable[[torch.Tensor], None]:
            def run(_: torch.Tensor) -> None:
                waited, t = 0.0, now()
                for batch in loader:
                    waited += now() - t
                    model(batch["fbank"].to(device, non_blocking=True))  # (B, T, F) -> (B, C)
                    t = now()
                waiting.setdefault(name, []).append(waited)

            return run

        def set_merge(spec: MergeSpec) -> Callable[[], None]:
            return lambda: set_schedule(model, spec, attn_backend)

        variants = []
        for plan in plan_schedules(model, s.targets, s.shape):
            sched = model.merge_schedule(plan.spec)
            gflops = vit_flops(sched.tokens, size.embed_dim, size.mlp_ratio) / 1e9
            variants.append(Variant("ours", plan.name, plan.target, sched.r, sched.tokens,
                                    gflops, epoch(plan.name), set_merge(plan.spec),
                                    dtype=s.dtype))  # fmt: skip
        dummy = torch.empty(0)
        with torch.inference_mode(), progress() as bar:
            task = bar.add_task("test epochs", total=(max(s.warmup, 1) + s.iters) * len(variants))
            timings = interleaved_times(
                variants, dummy, device, s.warmup, s.iters, clock, lambda: bar.advance(task)
            )
    rows = summarise(variants, clips, timings, {id(v): None for v in variants})
    for row in rows:
        timed = waiting[row["schedule"]][-s.iters :]
        row["data_wait_ms_median"] = statistics.median(timed) * 1e3
        row["data_share"] = row["data_wait_ms_median"] / row["latency_ms_median"]
    finish_meta(meta, "epoch", size, clips=clips, clip_seconds=seconds,
                loader_batch_size=batch_size,
                flops_method="tome.flops.vit_flops of the forward (per clip)",
                throughput_method="clips / median epoch time; epochs alternate between "
                "schedules")  # fmt: skip
    return {"meta": meta, "rows": rows, "checks": flop_ratio_checks(rows, "test-epoch", "clips")}
