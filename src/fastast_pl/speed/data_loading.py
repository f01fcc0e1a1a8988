"""Data-loading benchmark: clips/s of one loader worker, uncached and from the feature cache.

Writes ``--clips`` WAV files of ``--seconds`` s at ``--sample-rate`` Hz (a tone in noise)
into a temporary folder, then, in this one process (as one DataLoader worker sees it):

1. the stages of the uncached path, timed separately with the data package's public
   functions: decode (``load_audio`` at the file's rate), decode + resample to 16 kHz
   (``load_audio``), fbank (``compute_fbank``);
2. epoch 1 of ``AudioDataset`` with an empty ``FeatureCache`` (decode, resample, fbank,
   cache write, normalize);
3. epoch 2 of the same dataset, served from the cache.

The cache pays when epoch 2 is much faster than epoch 1 (target: at least 5x). Torch
threads default to 1, as in a DataLoader worker process. The files were just written, so
they sit in the OS page cache: this measures CPU cost, not disk reads.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from fastast_pl.data.audio import load_audio
from fastast_pl.data.cache import FeatureCache
from fastast_pl.data.clips import Clip
from fastast_pl.data.dataset import AudioDataset
from fastast_pl.data.features import FeatureConfig, compute_fbank
from fastast_pl.speed.engine import torch_threads

CACHE_SPEEDUP_TARGET = 5.0


def write_clips(folder: Path, n: int, seconds: float, sample_rate: int) -> list[Path]:
    """n mono 16-bit WAVs, each a different tone in noise; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    paths = []
    for i in range(n):
        wave = 0.3 * np.sin(2 * np.pi * (220.0 + 40.0 * i) * t) + 0.05 * rng.standard_normal(
            t.shape
        )
        path = folder / f"clip_{i:04d}.wav"
        sf.write(path, wave.astype(np.float32), sample_rate, subtype="PCM_16")
        paths.append(path)
    return paths


def _clips_per_s(fn: Callable[[int], object], n: int) -> dict:
    """Run fn(i) for i < n; clips/s overall plus the median ms per clip."""
    per_clip = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        per_clip.append(time.perf_counter() - t)
    total = time.perf_counter() - t0
    return {
        "clips_per_s": n / total,
        "ms_per_clip_median": statistics.median(per_clip) * 1e3,
        "total_s": total,
    }


def run_data_benchmark(
    paths: Sequence[Path], features: FeatureConfig, cache_root: Path, file_rate: int
) -> dict:
    """Time each loading stage and two dataset epochs (the first fills the cache)."""
    n = len(paths)
    compute_fbank(load_audio(paths[0], features.sample_rate), features)  # warm-up
    stages = {
        "decode": _clips_per_s(lambda i: load_audio(paths[i], file_rate), n),
        "decode+resample": _clips_per_s(lambda i: load_audio(paths[i], features.sample_rate), n),
    }
    resampled = [load_audio(p, features.sample_rate) for p in paths]  # (1, N) each
    stages["fbank"] = _clips_per_s(lambda i: compute_fbank(resampled[i], features), n)

    clips = [Clip(p, (0,)) for p in paths]
    cache = FeatureCache(cache_root, features)
    dataset = AudioDataset(clips, num_classes=1, features=features, cache=cache)
    epochs = {
        "epoch1_uncached": _clips_per_s(lambda i: dataset[i], n),
        "epoch2_cached": _clips_per_s(lambda i: dataset[i], n),
    }
    if cache.misses != n or cache.hits != n:
        raise RuntimeError(
            f"feature cache at {cache_root}: expected {n} misses (epoch 1) and {n} hits "
            f"(epoch 2), got {cache.misses} misses and {cache.hits} hits"
        )
    ratio = epochs["epoch2_cached"]["clips_per_s"] / epochs["epoch1_uncached"]["clips_per_s"]
    return {
        "stages": stages,
        "epochs": epochs,
        "cache_speedup": ratio,
        "checks": [
            {
                "check": f"cached epoch at least {CACHE_SPEEDUP_TARGET:g}x faster than the first",
                "value": round(ratio, 2),
                "passed": ratio >= CACHE_SPEEDUP_TARGET,
            }
        ],
    }


def loading_benchmark(
    clips: int, seconds: float, sample_rate: int, features: FeatureConfig, threads: int = 1
) -> dict:
    """``run_data_benchmark`` on ``clips`` WAVs written to a temporary folder, ``threads``
    torch threads (1: as a DataLoader worker sees it)."""
    with torch_threads(threads), tempfile.TemporaryDirectory(prefix="fastast-bench-data-") as tmp:
        paths = write_clips(Path(tmp) / "audio", clips, seconds, sample_rate)
        return run_data_benchmark(paths, features, Path(tmp) / "cache", sample_rate)
