"""``python -m fastast_pl benchmark``: arguments, checks, which benchmark runs, files written.

``--kind inference`` (default): forwards per schedule vs HF AST, with ``--modes`` columns
(eager, bf16 autocast, torch.compile, int8) and ``--short-clips`` rows (crop-pos and
merge-pad per clip length, against the padded window); ``--kind train``: training steps (student, and
distillation with the teacher's forward); ``--kind epoch``: a test epoch from the feature
cache. Each writes ``<stem>.json`` and ``<stem>.md`` (+ ``<stem>.png``) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fastast_pl.speed.engine import torch_threads
from fastast_pl.speed.inference import MODES
from fastast_pl.speed.measure import RunSettings
from fastast_pl.speed.models import BASE, TINY, ModelSize, load_checkpoint
from fastast_pl.tome.attention import BACKENDS
from fastast_pl.tools.benchmark.render import FILE_STEM, plot, print_table, to_markdown

DEFAULT_TARGETS = (1.25, 1.5, 2.0, 3.0)


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m fastast_pl benchmark``."""
    p = argparse.ArgumentParser(
        prog="fastast_pl benchmark",
        description="Speed per ToMe merge schedule against the FLOP ratio: inference (vs HF "
        "transformers' AST), training steps, or end-to-end test epochs.",
    )
    p.add_argument("--kind", choices=sorted(FILE_STEM), default="inference")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--iters", type=int, default=5, help="timed calls per variant and batch size")
    p.add_argument(
        "--warmup", type=int, default=1, help="untimed calls per variant first (at least one)"
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 uses autocast")
    p.add_argument("--targets", type=float, nargs="*", default=None,
                   help="FLOP reduction factors (> 1) to find merge schedules for (default: "
                   f"{' '.join(map(str, DEFAULT_TARGETS))}; none with --checkpoint)")  # fmt: skip
    p.add_argument("--checkpoint", metavar="PATH|HUB_ID",
                   help="inference: your model (our checkpoint, HF AST dir or hub id) with its "
                   "own schedules and input size, against its r=0 and HF's AST of its size")  # fmt: skip
    p.add_argument("--shape", choices=["constant", "decreasing", "late"], default="constant",
                   help="merge schedule shape searched for each target (constant: one r)")  # fmt: skip
    p.add_argument("--modes", nargs="+", choices=MODES, default=["eager"],
                   help="inference: also time bf16 autocast, torch.compile and/or int8 (CPU, "
                   "ONNX Runtime)")  # fmt: skip
    p.add_argument("--short-clips", type=float, nargs="+", default=[], metavar="SECONDS",
                   help="inference: per clip length, our model at r=0 under the short-clip "
                   "options crop-pos and merge-pad, against r=0 eager (the clip padded to the "
                   "window); frames from the checkpoint's feature settings (else 16 kHz, "
                   "25/10 ms)")  # fmt: skip
    p.add_argument("--attn-backend", choices=BACKENDS, default="auto",
                   help="proportional attention: auto (compiled FlexAttention on CUDA, SDPA "
                   "elsewhere), sdpa or flex (see fastast_pl.tome.attention)")  # fmt: skip
    p.add_argument("--no-distill", action="store_true", help="train: leave out the teacher step")
    p.add_argument("--clips", type=int, default=16, help="epoch: clips in the test split")
    p.add_argument("--out", type=Path, default=Path("bench"), help="folder for JSON, MD, PNG")
    p.add_argument("--tiny", action="store_true", help="a small model (smoke tests)")
    p.add_argument("--no-hf", action="store_true", help="inference: leave out the HF baseline")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory call")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall: elapsed time; cpu: this process's CPU time (CPU device only; "
                   "with --threads 1 it is robust to other load on a shared machine)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _check_args(args: argparse.Namespace) -> None:
    """Reject bad values before any model is built."""
    if not args.batch_sizes or any(b < 1 for b in args.batch_sizes):
        raise ValueError(f"--batch-sizes {args.batch_sizes}: expected integers >= 1")
    if args.iters < 1:
        raise ValueError(f"--iters {args.iters}: expected >= 1")
    if args.warmup < 0:
        raise ValueError(f"--warmup {args.warmup}: expected >= 0")
    if args.targets is None:
        args.targets = [] if args.checkpoint else list(DEFAULT_TARGETS)
    if args.checkpoint and (args.kind != "inference" or args.tiny):
        raise ValueError("--checkpoint: only --kind inference, without --tiny")
    if args.clips < 1:
        raise ValueError(f"--clips {args.clips}: expected >= 1")
    bad = [t for t in args.targets if not t > 1.0]
    if bad:
        raise ValueError(f"--targets {bad}: FLOP reduction factors must be > 1")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads}: expected >= 1")
    if args.clock == "cpu" and args.device == "cuda":
        raise ValueError("--clock cpu measures CPU time; it means nothing with --device cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device; use --device cpu or auto")
    if args.kind != "inference" and args.modes != ["eager"]:
        raise ValueError(f"--modes {args.modes}: only --kind inference has mode columns")
    if args.kind != "inference" and args.short_clips:
        raise ValueError(f"--short-clips {args.short_clips}: only --kind inference")
    bad = [s for s in args.short_clips if not s > 0]
    if bad:
        raise ValueError(f"--short-clips {bad}: clip lengths in seconds must be > 0")


def _run(args: argparse.Namespace, device: torch.device) -> dict:
    """The benchmark ``--kind`` names (imported here: each pulls in only what it needs)."""
    settings = RunSettings(args.iters, args.warmup, device, args.dtype, tuple(sorted(args.targets)),
                           args.shape, args.seed, args.clock, args.attn_backend)  # fmt: skip
    size = TINY if args.tiny else BASE
    if args.kind == "train":
        from fastast_pl.speed.training import run_training_benchmark

        return run_training_benchmark(size, args.batch_sizes, distill=not args.no_distill,
                                      with_memory=not args.no_memory, tiny=args.tiny,
                                      settings=settings)  # fmt: skip
    if args.kind == "epoch":
        from fastast_pl.speed.epoch import ESC50_BASE, ESC50_TINY, run_epoch_benchmark

        return run_epoch_benchmark(ESC50_TINY if args.tiny else ESC50_BASE, args.clips,
                                   args.batch_sizes[0], seconds=1.0 if args.tiny else 5.0,
                                   settings=settings)  # fmt: skip
    from fastast_pl.speed.inference import run_benchmark

    ours = plans = None
    if args.checkpoint:
        ours, plans = load_checkpoint(args.checkpoint, settings.targets, settings.shape)
        size = ModelSize.of(ours)
    result = run_benchmark(size, args.batch_sizes, with_hf=not args.no_hf,
                           with_memory=not args.no_memory, modes=args.modes, settings=settings,
                           ours=ours, plans=plans,
                           short_clips=_clip_frames(args.short_clips, args.checkpoint))  # fmt: skip
    result["meta"]["checkpoint"] = args.checkpoint
    return result


def _clip_frames(seconds: list[float], checkpoint: str | None) -> list[tuple[str, int]]:
    """``(name, fbank frames)`` per short clip, framed as the checkpoint's features say.

    The data package is imported only when short clips are asked for: ``make bench-gpu``
    runs without soundfile and torchaudio's data stack."""
    if not seconds:
        return []
    from fastast_pl.data.features import FeatureConfig, fbank_frames
    from fastast_pl.models.checkpoints import read_inference_info

    stored = (read_inference_info(checkpoint).features or {}) if checkpoint else {}
    framing = {k: stored[k] for k in ("sample_rate", "frame_shift", "frame_length") if k in stored}
    config = FeatureConfig(**framing)
    return [(f"{s:g} s", fbank_frames(s, config)) for s in seconds]


def main(argv: list[str] | None = None) -> int:
    """``python -m fastast_pl benchmark [options]``: measure, print, write JSON, MD, PNG."""
    args = build_parser().parse_args(argv)
    _check_args(args)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    if args.clock == "cpu" and device.type != "cpu":
        raise ValueError(f"--clock cpu needs the CPU device, got {device.type}")
    if "int8" in args.modes and device.type != "cpu":
        raise ValueError("--modes int8 runs ONNX Runtime on the CPU; pass --device cpu")
    with torch_threads(args.threads):
        result = _run(args, device)
    result["meta"]["command"] = "python -m fastast_pl benchmark " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / FILE_STEM[args.kind]
    json_path = stem.with_suffix(".json")
    json_path.write_text(json.dumps(result, indent=2, allow_nan=False))
    stem.with_suffix(".md").write_text(to_markdown(result))
    wrote = [json_path.name, stem.with_suffix(".md").name]
    if plot(result, stem.with_suffix(".png")):
        wrote.append(stem.with_suffix(".png").name)
    print_table(result)
    print(f"wrote {', '.join(wrote)} to {args.out}")
    return 0
