"""`python -m fastast_pl demo`: the three claims of FastAST, measured on built-in synthetic audio.

1. Off the shelf: an AST trained on labels, evaluated with ToMe schedules of about 1.5x
   and 2x fewer analytic FLOPs and no retraining (accuracy + measured clips/s).
2. Recovery: the merged AST fine-tuned with CMKD from a frozen CNN teacher that is
   stronger than the unmerged AST on this data, next to the same fine-tuning on labels
   only (kd_lambda 0), so that the teacher's share of the recovery is its own row.
3. The trade-off as pictures: a Pareto plot and one clip's merge map, under --root.

Every training or test step is an ordinary CLI run (config + logs under --root), printed
as a command so it can be repeated by hand. The demo says plainly which target missed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from fastast_pl.cli import build_cli
from fastast_pl.demo.clip import merge_map_of_test_clip
from fastast_pl.demo.plots import ParetoPoint, plot_pareto
from fastast_pl.metrics import chance_accuracy
from fastast_pl.models.ast import ASTModel
from fastast_pl.models.checkpoints import read_record
from fastast_pl.speed.schedules import ScheduleSpeed, TimingSettings, time_schedules
from fastast_pl.tome.flops import PlannedSchedule, plan_schedules

CONFIGS = Path("experiments/demo")
CONFIG_FILES = ("data.yaml", "teacher.yaml", "ast.yaml", "fastast.yaml")
#: The targets the demo checks and prints (docs/benchmarks.md "The demo"): speed-up at 2x
#: fewer FLOPs, the teacher's margin over the AST, the distilled student's gap to it.
MIN_SPEEDUP_AT_2X = 1.4
MIN_TEACHER_MARGIN = 0.05
MAX_STUDENT_GAP = 0.01
#: The label-scarce setting: the share of training clips that keep their labels; the
#: teacher teaches every clip (data.unlabeled.labeled_fraction).
QUARTER = 0.25


@dataclass
class StageResult:
    """What one CLI run left behind, and what it cost."""

    metrics: dict[str, float]
    best_checkpoint: str | None
    log_dir: str | None
    wall_s: float = 0.0
    cpu_s: float = 0.0


@dataclass
class Row:
    """One line of the final table."""

    name: str
    meaning: str
    accuracy: float
    schedule: PlannedSchedule
    run_dir: str | None = None
    speed: ScheduleSpeed | None = None
    extra: dict = field(default_factory=dict)


def run_stage(console: Console, title: str, args: list[str], timings: dict) -> StageResult:
    """Run one `python -m fastast_pl ...` command in-process and collect its results."""
    console.rule(f"[bold]{title}")
    console.print("$ python -m fastast_pl " + shlex.join(args), style="dim")
    wall, cpu = time.perf_counter(), time.process_time()
    trainer = build_cli(args).trainer
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    ckpt = trainer.checkpoint_callback
    best = ckpt.best_model_path if ckpt is not None and ckpt.best_model_path else None
    result = StageResult(metrics, best, trainer.log_dir)
    result.wall_s, result.cpu_s = time.perf_counter() - wall, time.process_time() - cpu
    timings[title] = (result.wall_s, result.cpu_s)
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl demo",
        description="CNN teacher, AST, the AST merged off the shelf, the merged AST "
        "recovered with CMKD; table + Pareto plot + merge map (CPU, about 5 minutes).",
    )
    p.add_argument(
        "--configs", type=Path, default=CONFIGS, help="folder with " + ", ".join(CONFIG_FILES)
    )
    p.add_argument(
        "--root", type=Path, default=Path("runs/demo"), help="where the runs are written"
    )
    p.add_argument("--flop-targets", type=float, nargs="+", default=[1.5, 2.0],
                   help="analytic FLOP reductions to evaluate off the shelf; the last one is "
                   "the schedule the CMKD student is trained with")  # fmt: skip
    p.add_argument("--timing-batch", type=int, default=64, help="clips per timed batch")
    p.add_argument("--timing-rounds", type=int, default=7, help="interleaved timing rounds")
    p.add_argument("--timing-threads", type=int, default=1, help="torch threads while timing")
    p.add_argument("--timing-clock", choices=["cpu", "wall"], default="cpu",
                   help="cpu: this process's CPU time (robust to other load with one thread)")  # fmt: skip
    p.add_argument("--seed", type=int, default=None,
                   help="training seed of every stage (default: the configs' seed_everything); "
                   "the synthetic data keep their own seed (data.synthetic.seed)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in CONFIG_FILES:
        if not (args.configs / name).is_file():
            raise SystemExit(
                f"demo: config {args.configs / name} not found (run from the repository root)"
            )
    start = time.perf_counter()
    console = Console()
    if not console.is_terminal:  # logs and captured output: wide enough for the table
        console = Console(width=150)
    timings: dict[str, tuple[float, float]] = {}
    cfg = {name: ["--config", str(args.configs / name)] for name in CONFIG_FILES}
    data = cfg["data.yaml"]
    # After the config files (which set seed_everything), so that it wins in every run.
    seed = [] if args.seed is None else ["--seed_everything", str(args.seed)]
    root = args.root

    teacher = run_stage(console, "1/12 train the CNN teacher on labels",
                        ["fit", *data, *cfg["teacher.yaml"],
                         "--trainer.default_root_dir", str(root / "teacher"), *seed], timings)  # fmt: skip
    ast = run_stage(console, "2/12 train the AST on labels (no merging)",
                    ["fit", *data, *cfg["ast.yaml"],
                     "--trainer.default_root_dir", str(root / "ast"), *seed], timings)  # fmt: skip
    for stage in (teacher, ast):
        if stage.best_checkpoint is None:
            raise SystemExit(f"demo: the run in {stage.log_dir} wrote no checkpoint")

    trained = ASTModel.from_pretrained(ast.best_checkpoint).eval()
    schedules = plan_schedules(args.flop_targets, trained.num_tokens, trained.depth,
                               trained.num_prefix_tokens, trained.embed_dim, trained.arch.mlp_ratio)  # fmt: skip
    rows = []
    for schedule in schedules:
        label = "no merging" if schedule.spec == 0 else f"ToMe r={schedule.spec}"
        test = run_stage(console, f"3/12 test the AST, {label} (no retraining)",
                         ["test", *data, *cfg["ast.yaml"], "--model.init_args.eval_merge",
                          str(schedule.spec), "--ckpt_path", ast.best_checkpoint,
                          "--trainer.default_root_dir", str(root / "test_ast"), *seed], timings)  # fmt: skip
        meaning = (
            "the AST as trained: every patch is a token in every layer"
            if schedule.spec == 0
            else f"the same weights, {schedule.spec} most similar token pairs merged in every "
            "layer at test time only (no retraining)"
        )
        rows.append(Row(f"AST, {label}", meaning, test.metrics.get("test/acc", float("nan")),
                        schedule, test.log_dir))  # fmt: skip

    merged = schedules[-1]
    merged_ast = [*cfg["fastast.yaml"], "--model.init_args.merge", str(merged.spec),
                  "--model.init_args.teacher_checkpoint", teacher.best_checkpoint]  # fmt: skip

    def fine_tune(
        titles: tuple[str, str], name: str, *extra: str
    ) -> tuple[StageResult, StageResult]:
        """Fine-tune the merged AST from the trained one, then test it (two CLI runs)."""
        fit = run_stage(console, titles[0], ["fit", *data, *merged_ast, *extra,
                        "--model.init_args.init_from", ast.best_checkpoint,
                        "--trainer.default_root_dir", str(root / name), *seed], timings)  # fmt: skip
        if fit.best_checkpoint is None:
            raise SystemExit(f"demo: the run in {fit.log_dir} wrote no checkpoint")
        test = run_stage(console, titles[1], ["test", *data, *merged_ast, *extra,
                         "--ckpt_path", fit.best_checkpoint,
                         "--trainer.default_root_dir", str(root / f"test_{name}"), *seed], timings)  # fmt: skip
        return fit, test

    student, student_test = fine_tune(
        (f"4/12 fine-tune the merged AST (r={merged.spec}) with CMKD from the teacher",
         "5/12 test the CMKD student and the teacher"), "student")  # fmt: skip
    labels_only, labels_test = fine_tune(
        ("6/12 the same fine-tuning on labels only (kd_lambda 0), the control",
         "7/12 test the labels-only control"), "student_labels", "--model.init_args.kd_lambda", "0")  # fmt: skip
    quarter = ("--data.unlabeled.labeled_fraction", str(QUARTER))
    scarce, scarce_test = fine_tune(
        (f"8/12 the merged AST with CMKD, {QUARTER:.0%} of the labels, the teacher on every clip",
         "9/12 test it"), "student_quarter", *quarter)  # fmt: skip
    scarce_labels, scarce_labels_test = fine_tune(
        (f"10/12 the same on {QUARTER:.0%} of the labels alone (kd_lambda 0), its control",
         "11/12 test that control"), "student_quarter_labels", *quarter,
        "--model.init_args.kd_lambda", "0")  # fmt: skip
    scarce_rows = [
        Row(f"AST, ToMe r={merged.spec}, {QUARTER:.0%} labels only", "the control: the same "
            f"fine-tuning with the labels of {QUARTER:.0%} of the training clips, no teacher",
            scarce_labels_test.metrics.get("test/acc", float("nan")), merged,
            scarce_labels.log_dir),
        Row(f"AST, ToMe r={merged.spec}, {QUARTER:.0%} labels + CMKD", f"{QUARTER:.0%} of the "
            "labels, and the teacher's predictions on every training clip (the rest unlabeled)",
            scarce_test.metrics.get("test/acc", float("nan")), merged, scarce.log_dir),
    ]  # fmt: skip
    rows.append(Row(f"AST, ToMe r={merged.spec}, labels only", "the control: the same fine-tuning "
                    "of the merged AST (same epochs and optimiser) on labels alone, no teacher",
                    labels_test.metrics.get("test/acc", float("nan")), merged,
                    labels_only.log_dir))  # fmt: skip
    rows.append(Row(f"AST, ToMe r={merged.spec}, CMKD", "the merged AST fine-tuned for a few epochs "
                    "on labels + the teacher's predictions (CMKD), the same cost as the two rows above",
                    student_test.metrics.get("test/acc", float("nan")), merged,
                    student.log_dir))  # fmt: skip
    teacher_acc = student_test.metrics.get("test/teacher_acc", float("nan"))
    rows.extend(scarce_rows)

    # Speed depends on the schedule, not the weights: every distinct schedule is timed once
    # (interleaved, speed.engine) and rows with the same schedule share that measurement.
    console.rule("[bold]timing each distinct schedule once (batched, interleaved)")
    wall, cpu = time.perf_counter(), time.process_time()
    settings = TimingSettings(batch_size=args.timing_batch, rounds=args.timing_rounds,
                              threads=args.timing_threads, clock=args.timing_clock)  # fmt: skip
    speeds = time_schedules(trained, [row.schedule.spec for row in rows], settings)
    for row, speed in zip(rows, speeds):
        row.speed = speed
    timings["12/12 timing"] = (time.perf_counter() - wall, time.process_time() - cpu)
    note = "clips/s: each distinct schedule timed once, " + settings.describe()

    short_note = f", batch {args.timing_batch}, {args.timing_threads} thread(s), median of rounds"
    pictures = _draw(
        rows, teacher_acc, root, args.configs, student.best_checkpoint, merged.spec, short_note
    )
    num_classes = int(read_record(ast.best_checkpoint).num_classes)
    _print_table(console, teacher_acc, rows, note, num_classes, root)
    checks = _print_checks(console, teacher_acc, rows)
    total = time.perf_counter() - start
    _print_costs(console, timings, total)
    for kind, path in pictures.items():
        console.print(f"{kind}: {path}")
    summary = {"seed": args.seed, "rows": [asdict(r) for r in rows], "teacher_acc": teacher_acc, "checks": checks,
               "timing": note, "stage_seconds": timings, "total_wall_s": total,
               "pictures": {k: str(v) for k, v in pictures.items()}}  # fmt: skip
    (root / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    console.print(f"summary: {root / 'summary.json'}")
    return 0


def _draw(
    rows: list[Row],
    teacher_acc: float,
    root: Path,
    configs: Path,
    checkpoint: str,
    r: int,
    timing: str,
) -> dict[str, Path]:
    """The Pareto plot and the merge map of one test clip under the CMKD student's schedule."""
    points = [
        ParetoPoint(row.name.removeprefix("AST, "), row.accuracy, row.schedule.flop_ratio,
                    row.speed.clips_per_s, _family(row.name))
        for row in rows if row.speed is not None
    ]  # fmt: skip
    pareto = plot_pareto(points, root / "pareto.png", teacher_acc, timing)
    merge_map = merge_map_of_test_clip(configs / "data.yaml", checkpoint, r, root / "merge_map.png")
    return {"Pareto plot": pareto, "merge map": merge_map}


def _family(name: str) -> str:
    """Which group of points a row belongs to in the Pareto plot."""
    if "CMKD" in name:
        return "CMKD"
    return "labels only" if "labels only" in name else "off the shelf"


def _print_table(
    console: Console, teacher_acc: float, rows: list[Row], note: str, num_classes: int, root: Path
) -> None:
    table = Table(title="FastAST demo (synthetic audio, test split)", show_lines=True)
    for column in ("model", "what it means", "test acc"):
        table.add_column(column, justify="right" if column == "test acc" else "left")
    for column in (
        "FLOPs",
        "MMACs/clip",
        "tokens in->out",
        "clips/s (min-max)",
        "speed-up (min-max)",
    ):
        table.add_column(column, justify="right")
    table.add_row("CNN teacher", "a small CNN trained on labels; frozen, it teaches the "
                  "merged AST in the last row", f"{teacher_acc:.3f}", "", "", "", "", "")  # fmt: skip
    for row in rows:
        s, v = row.schedule, row.speed
        table.add_row(row.name, row.meaning, f"{row.accuracy:.3f}", f"1/{s.flop_ratio:.2f}",
                      f"{1e3 * v.gmacs:.1f}", f"{s.tokens[0]}->{s.tokens[-1]}",
                      f"{v.clips_per_s:.0f} ({v.clips_per_s_min:.0f}-{v.clips_per_s_max:.0f})",
                      f"{v.speedup:.2f}x ({v.speedup_min:.2f}-{v.speedup_max:.2f})")  # fmt: skip
    console.print(table)
    console.print(
        f"FLOPs: analytic count of the transformer blocks relative to no merging "
        f"(fastast_pl.tome.flops); MMACs: millions of multiply-adds per clip (1 MAC = 2 FLOPs, "
        f"the unit of fvcore and the papers). Rows with the same schedule share one "
        f"measurement. {note}. Chance accuracy {chance_accuracy(num_classes):.3f}. "
        f"Runs (configs, logs, checkpoints) are under {root}/: teacher/, ast/, test_ast/, student/, "
        "test_student/, student_labels/, test_student_labels/, student_quarter/, "
        "test_student_quarter/, student_quarter_labels/, test_student_quarter_labels/."
    )


def _print_checks(console: Console, teacher_acc: float, rows: list[Row]) -> dict[str, bool]:
    """The done-when targets, each said plainly as met or NOT met, with the numbers."""
    base, merged, labels, student = rows[0], rows[-5], rows[-4], rows[-3]
    scarce_labels, scarce = rows[-2], rows[-1]
    speedup = merged.speed.speedup
    checks = {
        f"measured speed-up at ~{merged.schedule.flop_ratio:.1f}x fewer FLOPs is "
        f"{speedup:.2f}x, {merged.speed.speedup_min:.2f}-{merged.speed.speedup_max:.2f} over "
        f"rounds (target >= {MIN_SPEEDUP_AT_2X}x)": speedup >= MIN_SPEEDUP_AT_2X,
        f"teacher is {100 * (teacher_acc - base.accuracy):+.1f} points vs the unmerged AST "
        f"(target >= +{100 * MIN_TEACHER_MARGIN:.0f})": teacher_acc - base.accuracy >= MIN_TEACHER_MARGIN - 1e-9,
        f"CMKD merged AST is {100 * (student.accuracy - base.accuracy):+.1f} points vs the "
        f"unmerged AST (target >= -{100 * MAX_STUDENT_GAP:.0f})": student.accuracy - base.accuracy >= -MAX_STUDENT_GAP - 1e-9,
    }  # fmt: skip
    for text, ok in checks.items():
        console.print(("[green]target met:[/] " if ok else "[bold red]target NOT met:[/] ") + text)
    console.print(
        f"note: merging off the shelf at ~{merged.schedule.flop_ratio:.1f}x changed accuracy by "
        f"{100 * (merged.accuracy - base.accuracy):+.1f} points; fine-tuning on labels only "
        f"gave {100 * (labels.accuracy - merged.accuracy):+.1f} points back, CMKD "
        f"{100 * (student.accuracy - merged.accuracy):+.1f} (the teacher's share: "
        f"{100 * (student.accuracy - labels.accuracy):+.1f} points)"
    )
    if student.accuracy < labels.accuracy:
        console.print(
            "[bold yellow]note:[/] on this data the teacher did not add to what the same "
            "fine-tuning on labels alone recovers: CMKD's gain here is the extra training"
        )
    share = scarce.accuracy - scarce_labels.accuracy
    console.print(
        f"note: with {QUARTER:.0%} of the labels, labels only gave {scarce_labels.accuracy:.3f}, "
        f"labels + the teacher on every clip {scarce.accuracy:.3f} (the teacher's share: "
        f"{100 * share:+.1f} points)"
        + ("" if share > 0 else "; the teacher added nothing here either")
    )
    return checks


def _print_costs(console: Console, timings: dict[str, tuple[float, float]], total: float) -> None:
    parts = ", ".join(
        f"{name.split(' ', 1)[1]}: {wall:.0f} s" for name, (wall, _) in timings.items()
    )
    cpu = sum(c for _, c in timings.values())
    console.print(f"demo wall time {total:.0f} s (stages: {parts}); process CPU time {cpu:.0f} s")
