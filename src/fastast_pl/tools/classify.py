"""`python -m fastast_pl classify`: label your own audio files with a checkpoint, to a CSV.

A thin front end over ``fastast_pl.inference.AudioClassifier``: every setting it uses
(feature settings, class names, label kind, merge schedule) comes from the checkpoint
unless given here.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

from fastast_pl.tools.common import USER_ERRORS, ToolError, fail
from fastast_pl.utils.io import atomic_write

PROG = "python -m fastast_pl classify"


def parse_merge(text: str | None) -> Any:
    """``8`` (every layer), ``8,8,4,0`` or ``[8,8,4,0]`` (per layer), or a MergeSchedule as JSON
    (``{"ratio": 0.1, "shape": "decreasing"}``); None keeps the checkpoint's own."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        try:
            value = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ToolError(
                f"--merge {text!r}: expected an int, a comma list of ints or a JSON schedule"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, list, dict)):
        raise ToolError(f"--merge {text!r}: expected an int, a list or a JSON object")
    return value


def read_json_option(text: str | None, option: str) -> dict[str, Any] | None:
    """Inline JSON or a JSON file (e.g. an export sidecar's ``features``) for ``option``."""
    if text is None:
        return None
    path = Path(text)
    try:
        value = json.loads(path.read_text() if path.is_file() else text)
    except (OSError, json.JSONDecodeError) as err:
        raise ToolError(f"{option} {text!r}: neither a JSON file nor inline JSON ({err})") from err
    if isinstance(value, dict) and isinstance(value.get("features"), dict):
        value = value["features"]  # an export sidecar
    if not isinstance(value, dict):
        raise ToolError(f"{option} {text!r}: expected a JSON object of feature settings")
    return value


def read_class_names(path: Path | None) -> list[str] | None:
    """One class name per line, by class index."""
    if path is None:
        return None
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise ToolError(f"--class-names {path}: {err.strerror or err}") from err
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Classify audio files (or every audio file in folders) with a checkpoint: "
        "a fastast-pl .ckpt, an HF AST directory or hub model id. Decoding, resampling, fbank "
        "and normalisation follow the checkpoint's own feature settings; clips longer than "
        "the model input are covered by sliding windows whose scores are aggregated.",
        epilog=f"example: {PROG} runs/esc50/best.ckpt my_recordings/ --top-k 3 --out preds.csv",
    )
    p.add_argument("checkpoint", help="checkpoint file or directory, or a HF hub model id")
    p.add_argument("inputs", nargs="+", help="audio files and/or folders of them")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes per file (5)")
    p.add_argument(
        "--merge",
        metavar="SCHEDULE",
        help="Token Merging schedule: 8, 8,8,4,0 or JSON (default: the checkpoint's own)",
    )
    p.add_argument(
        "--hop",
        type=float,
        metavar="SECONDS",
        help="hop between windows of long clips (default: half the model input)",
    )
    p.add_argument(
        "--aggregate",
        choices=("mean", "max"),
        help="window scores -> clip score (default: mean single-label, max multi-label)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        metavar="T",
        help="multi-label: list every class scoring at least T (0.5)",
    )
    p.add_argument("--batch-size", type=int, default=8, metavar="N", help="windows per forward")
    p.add_argument(
        "--on-bad-audio",
        choices=("skip", "raise"),
        default="skip",
        help="a bad audio file (unreadable, truncated, NaN/inf, shorter than one window): "
        "report it and leave it out (skip, the default here; the Python API's default is "
        "raise), or stop",
    )
    p.add_argument("--out", type=Path, help="CSV to write (default: print it to stdout)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument(
        "--features",
        metavar="JSON",
        help="feature settings for checkpoints without them: inline JSON or a JSON file",
    )
    p.add_argument("--class-names", type=Path, metavar="FILE", help="one class name per line")
    p.add_argument("--label-kind", choices=("single", "multi"), help="override the label kind")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument(
        "--quantize",
        choices=("int8",),
        help="int8: run the (merged) model with int8 linear layers in ONNX Runtime on the CPU "
        "(scores differ slightly from float32; see export --quantize int8 --check-audio)",
    )
    p.add_argument(
        "--short-clips",
        choices=("pad", "crop-pos", "merge-pad"),  # short_clips.SHORT_CLIPS (lazy imports)
        default="pad",
        help="a clip shorter than the model input: zero-pad it to the input as in training "
        "(pad, exact, the default), run it at its own length with the time position "
        "embeddings cut (crop-pos), or merge its padding-only patches into one token per "
        "frequency row first (merge-pad); both give fewer tokens and are approximate "
        "(docs/benchmarks.md)",
    )
    p.add_argument(
        "--cost",
        action="store_true",
        help="print windows, tokens, transformer MFLOPs and wall ms (decoding included) per "
        "file on stderr; files then run one at a time",
    )
    return p


def csv_rows(predictions: list, top_k: int, multi_label: bool) -> tuple[list[str], list[list]]:
    """Header and one row per file: path, top-k names and scores, classes above threshold."""
    header = ["path"]
    for k in range(1, top_k + 1):
        header += [f"label_{k}", f"score_{k}"]
    if multi_label:
        header.append("above_threshold")
    rows = []
    for pred in predictions:
        row: list = [pred.source]
        for k in range(top_k):
            hit = pred.top_k[k] if k < len(pred.top_k) else None
            row += ["", ""] if hit is None else [hit.label, f"{hit.score:.6f}"]
        if multi_label:
            row.append(";".join(c.label for c in pred.above_threshold or []))
        rows.append(row)
    return header, rows


def predict_with_cost(classifier: Any, files: list[Path], options: dict[str, Any]) -> list:
    """Predict one file at a time, printing its windows, tokens, transformer FLOPs
    (``tome.flops.vit_flops``) and wall time on stderr."""
    predictions = []
    for path in files:
        start = time.perf_counter()
        found = classifier.predict([str(path)], **options)
        ms = (time.perf_counter() - start) * 1e3
        for pred in found:
            print(
                f"cost {pred.source}: {pred.windows} window(s), {pred.tokens} tokens, "
                f"{pred.flops / 1e6:.3f} MFLOPs, {ms:.1f} ms",
                file=sys.stderr,
            )
        predictions += found
    return predictions


def main(argv: list[str] | None = None) -> int:
    """`python -m fastast_pl classify CHECKPOINT FILE_OR_FOLDER...`."""
    args = _parser().parse_args(argv)
    try:
        from fastast_pl.inference import AudioClassifier
        from fastast_pl.inference_inputs import audio_files

        if args.top_k < 1 or args.batch_size < 1:
            raise ToolError("--top-k and --batch-size must be >= 1")
        if args.out is not None and args.out.exists() and not args.overwrite:
            raise ToolError(f"--out {args.out} exists; pass --overwrite to replace it")
        missing = [item for item in args.inputs if not Path(item).expanduser().exists()]
        if missing:
            raise ToolError(f"no such file or folder: {', '.join(missing)}")
        files = audio_files(args.inputs)
        classifier = AudioClassifier.from_pretrained(
            args.checkpoint,
            merge=parse_merge(args.merge),
            features=read_json_option(args.features, "--features"),
            class_names=read_class_names(args.class_names),
            multi_label=None if args.label_kind is None else args.label_kind == "multi",
            batch_size=args.batch_size,
            device=args.device,
            quantize=args.quantize,
            short_clips=args.short_clips,
        )
        options = dict(top_k=args.top_k, hop=args.hop, aggregate=args.aggregate,
                       threshold=args.threshold, on_bad_audio=args.on_bad_audio)  # fmt: skip
        if args.cost:
            predictions = predict_with_cost(classifier, files, options)
        else:
            paths = [str(f) for f in files]
            predictions = classifier.predict(paths, progress=sys.stderr.isatty(), **options)
    except USER_ERRORS as err:
        return fail(PROG, err)
    left_out = sorted({str(f) for f in files} - {p.source for p in predictions})
    if not predictions:
        return fail(
            PROG,
            ToolError(
                f"none of the {len(files)} file(s) could be classified (all bad audio, see "
                f"the warnings above): {', '.join(left_out[:10])}; no CSV written"
            ),
        )
    if left_out:
        print(
            f"{PROG}: {len(left_out)} of {len(files)} file(s) were bad audio (unreadable, "
            f"truncated, NaN/inf or shorter than one window) and were left out: "
            f"{', '.join(left_out[:10])}",
            file=sys.stderr,
        )
    header, rows = csv_rows(predictions, args.top_k, classifier.multi_label)
    if args.out is None:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerows([header, *rows])
    else:
        with atomic_write(args.out, "w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows([header, *rows])
        print(f"{len(rows)} file(s) classified -> {args.out}", file=sys.stderr)
    return 0
