"""`python -m fastast_pl demo`: the FastAST method end to end on built-in synthetic audio.

Stage 1 trains a CNN teacher; stage 2 distils a Token-Merging AST student from the frozen
teacher (CMKD); stage 3 tests the student without merging, with its training schedule,
and with twice that schedule applied at test time only (no retraining). Each stage is an
ordinary CLI run (its config and logs under runs/demo/), so every step can be repeated
by hand with the commands printed along the way.
"""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fastast_pl.cli import build_cli
from fastast_pl.metrics import chance_accuracy

CONFIGS = Path("experiments/demo")


@dataclass
class StageResult:
    """What one CLI run left behind."""

    metrics: dict[str, float]
    best_checkpoint: str | None
    log_dir: str | None


def run_stage(console: Console, title: str, args: list[str]) -> StageResult:
    """Run one `python -m fastast_pl ...` command in-process and collect its results."""
    console.rule(f"[bold]{title}")
    console.print("$ python -m fastast_pl " + shlex.join(args), style="dim")
    cli = build_cli(args)
    trainer = cli.trainer
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
    if ckpt is not None and ckpt.best_model_score is not None:
        metrics["best_val_acc"] = float(ckpt.best_model_score)
    return StageResult(metrics, best, trainer.log_dir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastast_pl demo",
        description="Teacher -> distilled ToMe student -> test with and without merging, "
        "on built-in synthetic audio (CPU, a few minutes).",
    )
    parser.add_argument(
        "--configs",
        type=Path,
        default=CONFIGS,
        help="folder with data.yaml, teacher.yaml, fastast.yaml",
    )
    parser.add_argument(
        "--teacher-epochs", type=int, default=None, help="override the teacher's max_epochs"
    )
    parser.add_argument(
        "--student-epochs", type=int, default=None, help="override the student's max_epochs"
    )
    parser.add_argument(
        "--root", type=Path, default=Path("runs/demo"), help="where the runs are written"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("data.yaml", "teacher.yaml", "fastast.yaml"):
        if not (args.configs / name).is_file():
            raise SystemExit(
                f"demo: config {args.configs / name} not found (run from the repository root)"
            )
    console = Console()
    data = ["--config", str(args.configs / "data.yaml")]
    student_cfg = ["--config", str(args.configs / "fastast.yaml")]

    teacher_args = ["fit", *data, "--config", str(args.configs / "teacher.yaml")]
    teacher_args += ["--trainer.default_root_dir", str(args.root / "teacher")]
    if args.teacher_epochs is not None:
        teacher_args += ["--trainer.max_epochs", str(args.teacher_epochs)]
    teacher = run_stage(console, "1/3 CNN teacher", teacher_args)
    if teacher.best_checkpoint is None:
        raise SystemExit("demo: the teacher run wrote no checkpoint")

    student_args = [
        "fit",
        *data,
        *student_cfg,
        "--model.teacher_checkpoint",
        teacher.best_checkpoint,
    ]
    student_args += ["--trainer.default_root_dir", str(args.root / "student")]
    if args.student_epochs is not None:
        student_args += ["--trainer.max_epochs", str(args.student_epochs)]
    student = run_stage(
        console, "2/3 AST student with Token Merging, distilled from the teacher", student_args
    )
    if student.best_checkpoint is None:
        raise SystemExit("demo: the student run wrote no checkpoint")

    rows = []
    hparams = _hparams(student.best_checkpoint)
    train_merge = hparams.get("merge", 0)
    schedules = [("no merging", "0"), (f"merge r={train_merge} (trained)", str(train_merge))]
    if isinstance(train_merge, int) and train_merge > 0:
        # The no-retraining use: a heavier schedule applied to the same weights at test time.
        schedules.append((f"merge r={2 * train_merge} (test only)", str(2 * train_merge)))
    for label, merge in schedules:
        test_args = [
            "test",
            *data,
            *student_cfg,
            "--model.teacher_checkpoint",
            teacher.best_checkpoint,
        ]
        test_args += ["--model.eval_merge", merge, "--ckpt_path", student.best_checkpoint]
        test_args += ["--trainer.default_root_dir", str(args.root / "test")]
        result = run_stage(console, f"3/3 test the student, {label}", test_args)
        rows.append((label, result.metrics))

    _print_summary(console, teacher, rows, hparams["num_classes"])
    return 0


def _hparams(checkpoint: str) -> dict:
    """The student's hyperparameters (merge schedule, number of classes) from its checkpoint."""
    from fastast_pl.models.checkpoints import read_lightning

    return read_lightning(checkpoint)["hyper_parameters"]


def _print_summary(
    console: Console,
    teacher: StageResult,
    rows: list[tuple[str, dict[str, float]]],
    num_classes: int,
) -> None:
    table = Table(title="FastAST demo (synthetic audio, test split)")
    table.add_column("model")
    table.add_column("test acc", justify="right")
    table.add_column("clips/s", justify="right")
    table.add_column("speed-up", justify="right")
    teacher_acc = rows[0][1].get("test/teacher_acc", float("nan"))
    table.add_row("CNN teacher", f"{teacher_acc:.3f}", "", "")
    base = rows[0][1].get("test/throughput", float("nan"))
    for label, metrics in rows:
        speed = metrics.get("test/throughput", float("nan"))
        table.add_row(
            f"AST student, {label}",
            f"{metrics.get('test/acc', float('nan')):.3f}",
            f"{speed:.0f}",
            f"{speed / base:.2f}x",
        )
    console.print(table)
    console.print(
        f"chance accuracy {chance_accuracy(num_classes):.3f}; teacher best val acc "
        f"{teacher.metrics.get('best_val_acc', float('nan')):.3f}. Runs, configs and checkpoints are under runs/demo/."
    )
