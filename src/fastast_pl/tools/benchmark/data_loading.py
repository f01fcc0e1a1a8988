"""``python -m fastast_pl bench-data``: arguments, table and JSON of ``speed.data_loading``."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from pathlib import Path

import torch

from fastast_pl.data.features import FeatureConfig
from fastast_pl.speed.data_loading import loading_benchmark


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


def main(argv: list[str] | None = None) -> int:
    """``python -m fastast_pl bench-data [options]``: measure, print, write JSON."""
    args = build_parser().parse_args(argv)
    _check_args(args)
    from fastast_pl.speed.machine import cpu_model

    features = FeatureConfig(num_mel_bins=args.num_mel_bins, target_length=args.target_length)
    result = loading_benchmark(args.clips, args.seconds, args.sample_rate, features, args.threads)
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
