"""`python -m fastast_pl prepare`: a dataset archive -> the layout AudioDataModule reads."""

from __future__ import annotations

import argparse
import urllib.error
from pathlib import Path

import yaml

from fastast_pl.data.prepare import URLS, prepare_dataset
from fastast_pl.tools.common import USER_ERRORS, fail


def main(argv: list[str] | None = None) -> int:
    """`python -m fastast_pl prepare`: extract a dataset archive into the layout we read."""
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl prepare",
        description="Prepare ESC-50 or Speech Commands (v0.02) into the layout AudioDataModule "
        "reads, then print the data: settings to put in a config. Without --archive the "
        "archive is downloaded (needs internet).",
        epilog="example: python -m fastast_pl prepare esc50 --out data/ESC-50 "
        "--archive ~/Downloads/ESC-50-master.zip",
    )
    p.add_argument("dataset", choices=sorted(URLS), help="which dataset")
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="new or empty output directory"
    )
    p.add_argument(
        "--archive",
        type=Path,
        metavar="PATH",
        help="the archive you already have (ESC-50-master.zip, speech_commands_v0.02.tar.gz)",
    )
    args = p.parse_args(argv)
    try:
        settings = prepare_dataset(args.dataset, args.out, args.archive)
    except urllib.error.URLError as err:  # an OSError: before USER_ERRORS
        url = URLS[args.dataset]
        return fail(p.prog, f"could not download {url} ({err.reason}); without internet, fetch "
                    "that file on another machine and pass it with --archive PATH")  # fmt: skip
    except USER_ERRORS as err:
        return fail(p.prog, err)
    print(f"# {args.dataset} is ready in {args.out}; put these settings in your config")
    print(yaml.safe_dump({"data": {"source": settings}}, sort_keys=False), end="")
    return 0
