"""`python -m fastast_pl check-data`: decode every file of a config's data once, before training.

It reads the splits as `fit` would (the same source, so the same description errors), and
the unlabeled training audio (``data.unlabeled`` folder/manifest) with the training split,
then runs `fastast_pl.data.checks.inspect_audio` on each file: the checks that decide bad audio
for `on_bad_audio` (unreadable, truncated against its WAV header, NaN/inf, shorter than one
window) plus warnings (silent, a sample rate below the feature rate or unlike the rest of
its split). It prints a summary, writes a CSV report and exits 1 when anything was flagged.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from rich.progress import track

from fastast_pl.data.checks import (
    AudioReport,
    flag_rate_outliers,
    inspect_audio,
    leaks_across_splits,
)
from fastast_pl.data.clips import SPLITS
from fastast_pl.tools.common import USER_ERRORS, ToolError, build_datamodule, fail
from fastast_pl.utils.io import atomic_write

REPORT_COLUMNS = (
    "split", "path", "status", "problems", "file_rate", "channels",
    "header_frames", "decoded_frames", "seconds", "peak",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """`python -m fastast_pl check-data`: scan a config's audio; exit 1 if anything is flagged."""
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl check-data",
        description="Decode every audio file of a config's data once and report unreadable, "
        "truncated (header vs decoded length), too short (< one window), NaN/inf, silent "
        "and sample-rate surprises. Exit code 1 when a file is flagged, 2 on a bad argument.",
        epilog="example: python -m fastast_pl check-data --config experiments/esc50/data.yaml",
    )
    p.add_argument(
        "--config", action="append", required=True, metavar="FILE",
        help="LightningCLI config file; repeat to layer files. Only data: is read.",
    )  # fmt: skip
    p.add_argument("--split", choices=(*SPLITS, "all"), default="all", help="default: all")
    p.add_argument("--out", default="runs/check-data.csv", help="CSV report (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out report")
    args = p.parse_args(argv)
    if Path(args.out).exists() and not args.overwrite:
        return fail(p.prog, ToolError(f"{args.out} exists (an earlier report); pass --overwrite "
                                      "to replace it, or give another --out"))  # fmt: skip
    try:
        dm = build_datamodule(args.config)
        dm.prepare_data()
        splits = dm.clip_splits
        for note in splits.notes:
            print(note)
        files = {s: [c.path for c in splits.splits[s]] for s in SPLITS}
        for leak in leaks_across_splits(files):
            print(f"leak: {leak}")
        names = SPLITS if args.split == "all" else (args.split,)
        paths = {s: files[s] for s in names}
        if dm.unlabeled is not None and "train" in names:  # training audio too
            paths["unlabeled"] = dm.unlabeled.audio_files()
            for leak in leaks_across_splits({**files, "train": paths["unlabeled"]}, "unlabeled"):
                print(f"leak: {leak}")
        reports = scan(paths, dm.features, args.out)
    except USER_ERRORS as err:
        return fail(p.prog, err)
    return summarize(reports, args.out)


def scan(paths: dict[str, list[Path]], features, out: str | Path) -> list[tuple[str, AudioReport]]:
    """Inspect each file once (a file in several splits is reported under the first) and
    write the CSV report to ``out``."""
    seen: set[Path] = set()
    todo = []
    for split, files in paths.items():
        for path in files:
            if path not in seen:
                seen.add(path)
                todo.append((split, path))
    reports = [
        (split, inspect_audio(path, features))
        for split, path in track(todo, description="checking audio", transient=True)
    ]
    for split in paths:
        flag_rate_outliers([r for s, r in reports if s == split])
    with atomic_write(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(REPORT_COLUMNS)
        for split, r in reports:
            seconds = (
                f"{r.decoded_frames / r.file_rate:.3f}"
                if r.decoded_frames is not None and r.file_rate
                else ""
            )
            writer.writerow(
                [split, r.path, r.status, "; ".join(r.problems), _cell(r.file_rate),
                 _cell(r.channels), _cell(r.header_frames), _cell(r.decoded_frames), seconds,
                 "" if r.peak is None else f"{r.peak:.6g}"]
            )  # fmt: skip
    return reports


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def summarize(reports: list[tuple[str, AudioReport]], out: str | Path, limit: int = 20) -> int:
    """Print the counts and the first flagged files; the exit code (1 if any flagged)."""
    bad = [(s, r) for s, r in reports if r.status == "bad"]
    warn = [(s, r) for s, r in reports if r.status == "warn"]
    print(
        f"{len(reports)} files checked: {len(reports) - len(bad) - len(warn)} ok, "
        f"{len(bad)} bad, {len(warn)} with warnings; report: {out}"
    )
    if not bad and not warn:
        print("no problems found")
        return 0
    flagged = bad + warn
    for split, r in flagged[:limit]:
        print(f"  {r.status:4} {split:5} {r.path}: {'; '.join(r.problems)}")
    if len(flagged) > limit:
        print(f"  ... {len(flagged) - limit} more in {out}")
    if bad:
        print(
            "bad files stop training with on_bad_audio: raise; with skip they are replaced "
            "(training) or left out (validation, test, predict) and reported"
        )
    return 1
