"""`python -m fastast_pl visualize`: which patches ToMe merged in one clip (``merge_map``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fastast_pl.merge_map import merge_view, plot_merge_map
from fastast_pl.tools.common import USER_ERRORS, fail, read_features


def main(argv: list[str] | None = None) -> int:
    """`python -m fastast_pl visualize`: draw the patches ToMe merged in one clip."""
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl visualize",
        description="Run one audio clip through an AST with Token Merging (r tokens per layer, "
        "in the first L layers only) and draw which time-frequency patches ended up merged "
        "into the same token, over the clip's spectrogram. Feature settings come from "
        "--config's data section, else from the checkpoint's saved datamodule settings, else "
        "the AST defaults.",
        epilog="example: python -m fastast_pl visualize dog.wav --checkpoint "
        "runs/esc50/last.ckpt --merge 8 --layer 6 --out merged.png",
    )
    p.add_argument("audio", type=Path, help="audio file (wav, flac, ogg, mp3)")
    p.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        metavar="PATH",
        help="fastast-pl .ckpt, HF AST directory or official AST .pth",
    )
    p.add_argument("--merge", required=True, type=int, metavar="R", help="tokens merged per layer")
    p.add_argument(
        "--layer",
        type=int,
        metavar="L",
        help="show the merges after L layers (1..depth; default: all layers)",
    )
    p.add_argument(
        "--start", type=float, default=0.0, metavar="S", help="where in the clip to begin (s)"
    )
    p.add_argument(
        "--seconds",
        type=float,
        metavar="S",
        help="how much of the clip to show (default and at most: the model's input window)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("merged.png"), help="PNG to write (default: merged.png)"
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="config file(s) whose data: section gives the feature settings",
    )
    args = p.parse_args(argv)
    try:
        features = read_features(args.config) if args.config else None
        view = merge_view(args.audio, args.checkpoint, args.merge, args.layer, features,
                          args.start, args.seconds)  # fmt: skip
    except USER_ERRORS as err:
        return fail(p.prog, err)
    begin, end = view.window
    audio_end = min(end, view.clip_seconds)
    shown = f"{begin:.2f}-{audio_end:.2f} s of {view.clip_seconds:.2f} s"
    if begin > 0 or audio_end < view.clip_seconds - 1e-6:
        print(f"{args.audio.name}: showing {shown} (the model's input window is "
              f"{end - begin:.2f} s; --start/--seconds choose the part)", file=sys.stderr)  # fmt: skip
    title = (
        f"{args.audio.name}, {shown}: ToMe r={args.merge} in layers 1-{view.layer} of "
        f"{view.depth}, {view.source.shape[1]} -> {view.tokens_left} tokens"
    )
    print(plot_merge_map(view, args.out, title))
    return 0
