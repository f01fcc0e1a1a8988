"""`python -m fastast_pl stats`: the fbank mean/std to put in a config's data section."""

from __future__ import annotations

import argparse
import contextlib
import sys

from fastast_pl.data.features import compute_stats
from fastast_pl.tools.common import USER_ERRORS, build_datamodule, fail


def main(argv: list[str] | None = None) -> int:
    """`python -m fastast_pl stats`: fbank mean/std of a config's training split."""
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl stats",
        description="Compute the mean and standard deviation of the raw log-mel fbank over "
        "the training split of a config's data (padding frames excluded) and print the "
        "data.features.mean / data.features.std lines to paste into that config.",
        epilog="example: python -m fastast_pl stats --config experiments/esc50/data.yaml",
    )
    p.add_argument(
        "--config",
        action="append",
        required=True,
        metavar="FILE",
        help="LightningCLI config file; repeat to layer files (later ones win, key by key). "
        "Only the data: section is read.",
    )
    p.add_argument(
        "--max-clips",
        type=int,
        metavar="N",
        help="use at most N clips, spread evenly over the split (default: all)",
    )
    args = p.parse_args(argv)
    if args.max_clips is not None and args.max_clips <= 0:
        return fail(p.prog, ValueError(f"--max-clips must be > 0, got {args.max_clips}"))
    try:
        dm = build_datamodule(args.config)
        dm.prepare_data()
        # The progress bar goes to stderr so that stdout holds only the YAML to paste.
        with contextlib.redirect_stdout(sys.stderr):
            mean, std = compute_stats(dm, max_clips=args.max_clips, progress=True)
    except USER_ERRORS as err:
        return fail(p.prog, err)
    clips = len(dm.datasets["train"])
    used = clips if args.max_clips is None else min(args.max_clips, clips)
    print(f"# fbank statistics over {used} of {clips} training clips ({', '.join(args.config)})")
    print(f"data:\n  features:\n    mean: {round(mean, 6)}\n    std: {round(std, 6)}")
    return 0
