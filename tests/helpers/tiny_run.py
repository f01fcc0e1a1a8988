"""Tiny CLI runs shared by the CLI, run/checkpoint and inference tests: the quickstart
shrunk to seconds.

Paths are absolute, so the runs do not depend on the working directory.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import torch

from fastast_pl.cli import build_cli

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = str(ROOT / "experiments" / "quickstart.yaml")
TINY_TEACHER = {
    "class_path": "fastast_pl.modules.teacher.TeacherModule",
    "init_args": {"teacher": {"backbone": "mobilenetv3_small_050", "num_heads": 2}},
}


TINY_AST_ARGS = [
    "--model.init_args.ast.embed_dim=32",
    "--model.init_args.ast.depth=2",
    "--model.init_args.ast.num_heads=2",
]


def tiny_args(data_root: Path, run_root: Path, *, classes: int = 3) -> list[str]:
    """The quickstart shrunk to seconds: 3 classes x 6 clips of 0.5 s, a 2-layer 32-wide AST,
    no feature cache, no progress bar; every batch of every stage (callers set the length)."""
    return [
        "--config",
        QUICKSTART,
        "--data.source.init_args.root",
        str(data_root),
        "--data.cache_dir",
        "null",
        "--data.loader.num_workers",
        "0",
        "--data.features.target_length",
        "64",
        "--data.features.num_mel_bins",
        "32",
        "--data.loader.batch_size",
        "4",
        "--data.source.init_args.generator.num_classes",
        str(classes),
        "--data.source.init_args.generator.clips_per_class",
        "6",
        "--data.source.init_args.generator.clip_seconds",
        "0.5",
        *TINY_AST_ARGS,
        "--trainer.default_root_dir",
        str(run_root),
        "--trainer.enable_progress_bar",
        "false",
    ]


def tiny(data_root: Path, run_root: Path, *, classes: int = 3) -> list[str]:
    """``tiny_args`` with one batch per stage and one epoch."""
    return [
        *tiny_args(data_root, run_root, classes=classes),
        "--trainer.limit_train_batches",
        "1",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.limit_test_batches",
        "1",
        "--trainer.limit_predict_batches",
        "1",
        "--trainer.max_epochs",
        "1",
    ]


def teacher_model() -> list[str]:
    """Arguments that make the tiny run train a CNN teacher (timm, no download) instead."""
    return ["--model", json.dumps(TINY_TEACHER)]


def csv_logger(save_dir: Path, name: str = "logs", version: int | str | None = 0) -> str:
    logger = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(save_dir), "name": name, "version": version},
    }
    return "--trainer.logger=" + json.dumps(logger)


def run(argv: list[str]):
    """``python -m fastast_pl ARGV`` in this process, quietly; the LightningCLI object."""
    with contextlib.redirect_stdout(io.StringIO()):
        return build_cli(argv)


def snapshot(root: Path) -> dict[Path, bytes]:
    """Every file under ``root`` and its bytes."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def weights_equal(module: torch.nn.Module, checkpoint: str | Path) -> bool:
    """Whether ``module`` holds exactly the weights stored in a Lightning ``checkpoint``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    mine = module.state_dict()
    return state.keys() <= mine.keys() and all(torch.equal(mine[k], v) for k, v in state.items())
