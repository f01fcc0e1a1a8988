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

import argparse
import datetime as _dt
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from fastast_pl.data.audio import load_audio
from fastast_pl.data.cache import FeatureCache
from fastast_pl.data.clips import Clip
from fastast_pl.data.dataset import AudioDataset
from fastast_pl.data.features import FeatureConfig, compute_fbank

CACHE_SPEEDUP_TARGET = 5.0


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m fastast_pl bench-data``."""
    p = argparse.ArgumentParser(
        prog="fastast_pl bench-data",
        description="Clips/s of the audio loading path per worker, uncached and cached.",
    )
    p.add_argument("--clips", type=int, default=32, help="WAV files to write and load")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    p.add_argument("--sample-rate", type=int, default=44100, help="rate the WAVs are written at")
    p.add_argument("--target-length", type=int, default=1024, help="fbank frames per clip")
    p.add_argument("--num-mel-bins", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 = a loader worker)")
    p.add_argument("--out", type=Path, default=Path("bench"), help="folder for the JSON")
    return p


def _check_args(args: argparse.Namespace) -> None:
    for name in ("clips", "sample_rate", "target_length", "num_mel_bins", "threads"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(args, name)}: expected >= 1")
    if not args.seconds > 0:
        raise ValueError(f"--seconds {args.seconds}: expected > 0")


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


def main(argv: list[str] | None = None) -> int:
    """``python -m fastast_pl bench-data [options]``: measure, print, write JSON."""
    args = build_parser().parse_args(argv)
    _check_args(args)
    from fastast_pl.speed.machine import cpu_model

    features = FeatureConfig(num_mel_bins=args.num_mel_bins, target_length=args.target_length)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with tempfile.TemporaryDirectory(prefix="fastast-bench-data-") as tmp:
            folder = Path(tmp)
            paths = write_clips(folder / "audio", args.clips, args.seconds, args.sample_rate)
            result = run_data_benchmark(paths, features, folder / "cache", args.sample_rate)
    finally:
        torch.set_num_threads(threads_before)
    result["meta"] = {
        "command": "python -m fastast_pl bench-data "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "clips": args.clips,
        "seconds": args.seconds,
        "file_sample_rate": args.sample_rate,
        "features": features.to_dict(),
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "data_benchmark.json"
    path.write_text(json.dumps(result, indent=2))
    _print(result)
    print(f"wrote {path}")
    return 0


def _print(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    meta = result["meta"]
    table = Table(
        title=f"Data loading, one worker ({meta['torch_threads']} thread), {meta['clips']} clips "
        f"of {meta['seconds']:g} s at {meta['file_sample_rate']} Hz"
    )
    for col in ("stage", "clips/s", "median ms/clip"):
        table.add_column(col, justify="right")
    for name, row in {**result["stages"], **result["epochs"]}.items():
        table.add_row(name, f"{row['clips_per_s']:.1f}", f"{row['ms_per_clip_median']:.2f}")
    console = Console(width=max(Console().width, 100))
    console.print(table)
    for c in result["checks"]:
        mark = "[green]pass[/green]" if c["passed"] else "[red]MISS[/red]"
        console.print(f"{mark}  {c['check']}: {c['value']}x")


if __name__ == "__main__":
    main()
