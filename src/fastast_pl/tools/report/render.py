"""Report -> runs.csv, runs.md, report.json, pareto.png (and optionally a W&B run).

The plot has two panels: accuracy against the analytic FLOP ratio (machine-independent)
and against the measured speed-up of each schedule (``fastast_pl.speed``, with its range
over the timing rounds as an error bar); points are labelled by run, each panel's Pareto
front is joined and the best run circled.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastast_pl.tools.report.analyze import Report, axis_speedup, pareto_front

UNITS = ("FLOP ratio: unmerged / merged analytic FLOPs of the transformer blocks; GMACs: "
         "billions of multiply-adds per clip (1 MAC = 2 FLOPs, the unit of fvcore and the papers)")  # fmt: skip


def fmt(value: Any) -> str:
    """A table cell: '-' for missing, '*' for a Pareto flag, 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "*" if value else ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def measured(row: dict[str, Any]) -> str:
    """'1.48x (1.45-1.50)'; 'none measurable (0.97-1.04)' when the range reaches 1.0;
    'slower, 0.80x (0.71-0.89)' when every round was slower than r=0."""
    if row["speedup"] is None:
        return "-"
    spread = f"({row['speedup_min']:.2f}-{row['speedup_max']:.2f})"
    if row["speedup_min"] > 1.0 or row["r"] is not None and not any(row["r"]):
        return f"{row['speedup']:.2f}x {spread}"
    if row["speedup_max"] < 1.0:
        return f"slower, {row['speedup']:.2f}x {spread}"
    return f"none measurable {spread}"


def markdown_table(report: Report) -> str:
    """The runs, then (where runs repeat a schedule over seeds or folds) their aggregate."""
    acc = report.acc_key
    head = ["run", "status", "schedule", acc, "FLOP ratio", "GMACs/clip", "clips/s",
            "measured speed-up (min-max)", "pareto"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report.rows:
        cells = [row["run"], row["status"], row["schedule"], row[acc], row["flop_ratio"],
                 row["gmacs"], row["clips_per_s"]]  # fmt: skip
        lines.append(
            "| " + " | ".join([*map(fmt, cells), measured(row), fmt(row["pareto"])]) + " |"
        )
    lines += ["", UNITS + "."]
    if report.timing:
        lines.append(f"Measured: each distinct schedule timed once, {report.timing}.")
    repeated = [g for g in report.groups if len(g["runs"]) > 1]
    if repeated:
        lines += ["", f"| schedule | runs | {acc} mean | std | min | max | FLOP ratio |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for g in repeated:
            cells = [g["schedule"], len(g["runs"]), g[f"{acc} mean"], g[f"{acc} std"],
                     g[f"{acc} min"], g[f"{acc} max"], g["flop_ratio"]]  # fmt: skip
            lines.append("| " + " | ".join(map(fmt, cells)) + " |")
    return "\n".join(lines)


def _panel(ax, report: Report, axis: str, xlabel: str) -> None:
    acc = report.acc_key
    rows = [r for r in report.rows if r["status"] == "finished"
            and isinstance(axis_speedup(r, axis), float)]  # fmt: skip
    if not rows:
        ax.text(0.5, 0.5, f"no {axis} speed-up", ha="center", transform=ax.transAxes)
        ax.set_xlabel(xlabel)
        return
    xs = [r["flop_ratio"] if axis == "flops" else r["speedup"] for r in rows]
    ys = [r[acc] for r in rows]
    if axis == "measured":
        err = [[x - r["speedup_min"] for x, r in zip(xs, rows)],
               [r["speedup_max"] - x for x, r in zip(xs, rows)]]  # fmt: skip
        ax.errorbar(xs, ys, xerr=err, fmt="none", ecolor="0.7", zorder=1)
    ax.scatter(xs, ys, color="0.6", zorder=2)
    front = sorted(pareto_front(list(zip(xs, ys))), key=lambda i: xs[i])
    ax.plot([xs[i] for i in front], [ys[i] for i in front], "o-", color="tab:red",
            label="Pareto front", zorder=3)  # fmt: skip
    for x, y, r in zip(xs, ys, rows):
        ax.annotate(r["run"], (x, y), fontsize=6, textcoords="offset points", xytext=(3, 3))
    best = report.best
    if best is not None and best in rows:
        i = rows.index(best)
        ax.scatter([xs[i]], [ys[i]], s=160, facecolors="none", edgecolors="tab:blue",
                   linewidths=2, zorder=4,
                   label=f"best at >= {report.min_speedup}x ({report.axis}): {best['run']}")  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel(acc)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_pareto(report: Report, path: Path) -> Path:
    """PNG: accuracy vs FLOP ratio and vs measured speed-up, fronts joined, best circled."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # headless; a no-op when a backend is already chosen
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=120)
    _panel(left, report, "flops", "analytic FLOP ratio (unmerged / merged)")
    _panel(right, report, "measured", "measured speed-up over r=0 (median, min-max of rounds)")
    fig.suptitle("accuracy vs cost per merge schedule")
    if report.timing:
        fig.text(0.5, 0.005, f"measured: {report.timing}", ha="center", fontsize=6)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


#: The files ``write_outputs`` writes into its directory.
REPORT_FILES = ("runs.csv", "runs.md", "report.json", "pareto.png")


def write_outputs(report: Report, out_dir: Path) -> dict[str, Path]:
    """runs.csv, runs.md, report.json and pareto.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out_dir / "runs.csv",
        "md": out_dir / "runs.md",
        "json": out_dir / "report.json",
        "png": out_dir / "pareto.png",
    }
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(report.rows[0]))
        writer.writeheader()
        writer.writerows(report.rows)
    paths["md"].write_text(markdown_table(report) + "\n")
    paths["json"].write_text(json.dumps(asdict(report), indent=2, default=str))
    plot_pareto(report, paths["png"])
    return paths


def log_to_wandb(report: Report, png: Path, project: str, name: str = "report") -> str:
    """Log the table and the plot as a W&B run (offline under WANDB_MODE=offline); its dir."""
    import wandb

    cols = list(report.rows[0])
    table = wandb.Table(
        columns=cols,
        data=[[fmt(r[c]) if c in ("pareto", "r") else r[c] for c in cols] for r in report.rows],
    )
    run = wandb.init(project=project, name=name, job_type="report", dir=str(png.parent),
                     config={"acc_key": report.acc_key, "axis": report.axis,
                             "timing": report.timing, "min_speedup": report.min_speedup})  # fmt: skip
    try:
        run.log({"runs": table, "pareto": wandb.Image(str(png))})
        if report.best is not None:
            run.summary["best_run"] = report.best["run"]
            run.summary["best_schedule"] = report.best["schedule"]
        return str(run.dir)
    finally:
        run.finish()
