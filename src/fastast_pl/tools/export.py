"""`python -m fastast_pl export`: a checkpoint as an ONNX file or a torch.export program.

The exported model takes a normalised fbank ``(B, T, F)`` float32 (input ``fbank``, B free)
and returns logits ``(B, C)`` (output ``logits``); the fbank recipe, class names, label
kind and merge schedule go into a sidecar JSON beside it (``<out>.json``). Token Merging
exports: its data dependence is only through which tokens merge, with a fixed r per layer.
The tool checks the exported model against the eager one on random input before it ends;
with ``--check-audio`` also on the windows of real clips (top-1 agreement, largest logit
difference). ``--quantize int8`` writes ONNX with int8 linear layers (``models.onnx``); its
logits differ from float32 by design, so its parity is measured on real clips and reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from fastast_pl.models.onnx import (
    export_onnx,
    export_program,
    parity,
    quantize_int8,
    run_exported,
    sidecar,
    sidecar_path,
)
from fastast_pl.tools.classify import parse_merge, read_json_option
from fastast_pl.tools.common import USER_ERRORS, ToolError, fail
from fastast_pl.utils.io import atomic_write

PROG = "python -m fastast_pl export"
FORMATS = ("onnx", "torch-export")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Export a checkpoint (optionally with Token Merging and int8 linear layers) "
        "as ONNX or a torch.export program taking a normalised fbank (B, T, F) float32 and "
        "returning logits (B, C); a sidecar <out>.json holds the feature settings, class names "
        "and the measured parity.",
        epilog=f"example: {PROG} runs/esc50/best.ckpt --format onnx --merge 8 --quantize int8 "
        "--check-audio clips/ --out ast.int8.onnx",
    )
    p.add_argument("checkpoint", help="checkpoint file or directory, or a HF hub model id")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--merge", metavar="SCHEDULE", help="8, 8,8,4,0 or JSON (default: its own)")
    p.add_argument(
        "--quantize",
        choices=("int8",),
        help="int8: ONNX Runtime dynamic quantization of the linear layers (onnx only; needs "
        "--check-audio: its parity is measured, not assumed)",
    )
    p.add_argument(
        "--check-audio",
        nargs="+",
        metavar="PATH",
        help="audio files/folders whose windows the exported model is compared on with the "
        "eager float32 one (top-1 agreement, largest logit difference); the checkpoint's "
        "feature settings must be known (or given with --features)",
    )
    p.add_argument(
        "--features",
        metavar="JSON",
        help="feature settings for checkpoints without them (JSON or file): used by "
        "--check-audio and written to the sidecar; a value the checkpoint has is replaced "
        "(warned)",
    )
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.99,
        help="int8: fail below this top-1 agreement on the --check-audio windows (0.99)",
    )
    p.add_argument("--out", type=Path, required=True, help="file to write (.onnx / .pt2)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--atol", type=float, default=1e-4, help="float parity tolerance (1e-4)")
    return p


def _with_features(local: Path, args: argparse.Namespace, merge: Any) -> tuple[Any, Any]:
    """The model through ``AudioClassifier`` (the checkpoint's feature settings, replaced by
    ``--features`` where given) and the fbank windows ``(W, T, F)`` of every
    ``--check-audio`` file (None without it)."""
    from fastast_pl.data.audio import load_audio
    from fastast_pl.inference import AudioClassifier
    from fastast_pl.inference_inputs import audio_files

    classifier = AudioClassifier.from_pretrained(
        local, merge=merge, features=read_json_option(args.features, "--features"), device="cpu"
    )
    if not args.check_audio:
        return classifier, None
    cfg = classifier.features
    windows = [
        classifier.windows(load_audio(f, cfg.sample_rate, cfg.frame_length))
        for f in audio_files(args.check_audio)
    ]
    return classifier, torch.cat(windows)  # (sum W, T, F)


def _check_args(args: argparse.Namespace) -> None:
    for path in (args.out, sidecar_path(args.out)):
        if path.exists() and not args.overwrite:
            raise ToolError(f"{path} exists; pass --overwrite to replace it")
    if args.quantize and args.format != "onnx":
        raise ToolError(f"--quantize {args.quantize} is for --format onnx (ONNX Runtime)")
    if args.quantize and not args.check_audio:
        raise ToolError(
            f"--quantize {args.quantize} changes the logits; pass --check-audio with a few "
            "real clips so that its agreement with float32 is measured"
        )
    if not 0.0 <= args.min_agreement <= 1.0:
        raise ToolError(f"--min-agreement {args.min_agreement}: expected a fraction in [0, 1]")


def main(argv: list[str] | None = None) -> int:
    """`python -m fastast_pl export CHECKPOINT --format onnx|torch-export --out FILE`."""
    args = _parser().parse_args(argv)
    try:
        from fastast_pl.models.ast import ASTModel
        from fastast_pl.models.checkpoints import read_inference_info, resolve_source

        _check_args(args)
        local = resolve_source(args.checkpoint)
        info = read_inference_info(local)
        merge = parse_merge(args.merge)
        merge = merge if merge is not None else (info.merge if info.merge is not None else 0)
        windows, features = None, info.features
        if args.check_audio or args.features:
            classifier, windows = _with_features(local, args, merge)
            model = classifier.model
            features = {**(info.features or {}), **dataclasses.asdict(classifier.features)}
        else:
            model = ASTModel.from_pretrained(local, merge=merge)
        model = model.eval()
        generator = torch.Generator().manual_seed(0)
        example = torch.randn(2, model.input_tdim, model.input_fdim, generator=generator)
        with torch.no_grad():
            if args.quantize:
                with tempfile.TemporaryDirectory(prefix="fastast-export-") as tmp:
                    export_onnx(model, example, Path(tmp) / "fp32.onnx")
                    quantize_int8(Path(tmp) / "fp32.onnx", args.out)
            else:
                (export_onnx if args.format == "onnx" else export_program)(model, example, args.out)
            check = torch.randn(3, model.input_tdim, model.input_fdim, generator=generator)
            diff = float((run_exported(args.format, args.out, check) - model(check)).abs().max())
            real = None
            if windows is not None:
                real = parity(model(windows), run_exported(args.format, args.out, windows))
    except USER_ERRORS as err:
        return fail(PROG, err)
    if not args.quantize and not diff <= args.atol:
        print(f"{PROG}: error: exported model differs from eager by {diff:.3g}", flush=True)
        return 1
    report = {"random_inputs": {"windows": 3, "max_abs_diff": diff}, "audio": real}
    with atomic_write(sidecar_path(args.out), "w") as fh:
        json.dump(
            sidecar(
                model, info, features, args.format, str(args.checkpoint), args.quantize, report
            ),
            fh,
            indent=2,
        )
    kind = f"{args.format} ({args.quantize or 'float32'})"
    print(
        f"{kind} -> {args.out} (+ {sidecar_path(args.out).name}); merge r per layer "
        f"{model.merge_schedule().r}; max |exported - eager| = {diff:.2e} on 3 random inputs"
    )
    if real is not None:
        print(
            f"real clips vs eager float32: {real['windows']} windows, top-1 agreement "
            f"{real['top1_agreement']:.2%}, largest logit difference {real['max_abs_diff']:.3g}"
        )
    if args.quantize and real is not None and real["top1_agreement"] < args.min_agreement:
        print(
            f"{PROG}: error: top-1 agreement {real['top1_agreement']:.2%} is below "
            f"--min-agreement {args.min_agreement:.2%} ({args.out} kept for inspection)",
            flush=True,
        )
        return 1
    return 0
