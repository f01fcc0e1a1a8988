"""Report -> runs.csv, runs.md, report.json, pareto.png (and optionally a W&B run).

The plot has two panels: accuracy against the analytic FLOP ratio (machine-independent)
and against the measured throughput; each point is labelled by its schedule and each
panel's Pareto front is joined.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastast_pl.tools.report.analyze import Report, pareto_front


def fmt(value: Any) -> str:
    """A table cell: '-' for missing, '*' for a Pareto flag, 4 significant digits."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "*" if value else ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _speed_col(report: Report) -> str:
    return report.speed_key or "throughput"


def markdown_table(report: Report) -> str:
    cols = ["run", "status", "schedule", report.acc_key, "flop_ratio", _speed_col(report)]
    cols += ["speedup", "pareto"]
    # "speedup" is measured throughput over the baseline's (noisy on a shared machine);
    # flop_ratio is the analytic, machine-independent one: say which is which.
    headers = [{"speedup": "measured speed-up", "flop_ratio": "FLOP ratio"}.get(c, c) for c in cols]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(cols)]
    for row in report.rows:
        lines.append("| " + " | ".join(fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def _label(schedule: str, width: int = 28) -> str:
    return schedule if len(schedule) <= width else schedule[: width - 1] + "…"


def _panel(ax, report: Report, x_key: str, xlabel: str) -> None:
    rows = [
        r for r in report.rows
        if isinstance(r[x_key], float) and isinstance(r[report.acc_key], float)
        and r["status"] == "finished"
    ]  # fmt: skip
    if not rows:
        ax.text(0.5, 0.5, f"no run logged {x_key}", ha="center", transform=ax.transAxes)
        ax.set_xlabel(xlabel)
        return
    xs, ys = [r[x_key] for r in rows], [r[report.acc_key] for r in rows]
    ax.scatter(xs, ys, color="0.6", zorder=2)
    front = sorted((rows[i] for i in pareto_front(list(zip(xs, ys)))), key=lambda r: r[x_key])
    ax.plot([r[x_key] for r in front], [r[report.acc_key] for r in front], "o-",
            color="tab:red", label="Pareto front", zorder=3)  # fmt: skip
    for r in rows:
        ax.annotate(_label(r["schedule"] or r["run"]), (r[x_key], r[report.acc_key]),
                    fontsize=6, textcoords="offset points", xytext=(3, 3))  # fmt: skip
    best = report.best
    if best is not None and isinstance(best[x_key], float):
        ax.scatter([best[x_key]], [best[report.acc_key]], s=160, facecolors="none",
                   edgecolors="tab:blue", linewidths=2, zorder=4,
                   label=f"best at >= {report.min_speedup}x ({report.axis})")  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel(report.acc_key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_pareto(report: Report, path: Path) -> Path:
    """PNG: accuracy vs FLOP ratio and vs measured throughput, fronts joined, best circled."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # headless; a no-op when a backend is already chosen
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=120)
    _panel(left, report, "flop_ratio", "analytic FLOP ratio (unmerged / merged)")
    _panel(right, report, _speed_col(report), f"{_speed_col(report)} (clips/s, measured)")
    fig.suptitle(f"accuracy vs cost per merge schedule (baseline: {report.baseline or 'none'})")
    fig.tight_layout()
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
        data=[[fmt(r[c]) if c == "pareto" else r[c] for c in cols] for r in report.rows],
    )
    run = wandb.init(project=project, name=name, job_type="report", dir=str(png.parent),
                     config={"acc_key": report.acc_key, "speed_key": report.speed_key,
                             "axis": report.axis, "baseline": report.baseline,
                             "min_speedup": report.min_speedup})  # fmt: skip
    try:
        run.log({"runs": table, "pareto": wandb.Image(str(png))})
        if report.best is not None:
            run.summary["best_run"] = report.best["run"]
            run.summary["best_schedule"] = report.best["schedule"]
        return str(run.dir)
    finally:
        run.finish()
