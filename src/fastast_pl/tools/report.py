"""`python -m fastast_pl report RUNS...`: finished runs -> table + accuracy/throughput Pareto plot.

RUNS are local directories (a sweep's output, a `runs/` tree, single run directories; every
directory below them holding a ``metrics.csv`` or a W&B offline run is one run) or
``wandb:ENTITY/PROJECT[/SWEEP_ID]`` (the W&B API; needs a login and a network).

For each run it reads the final value of every logged metric, the merge schedule (the
swept parameters from the sweep runner's ``trial.json``, else ``merge``/``eval_merge`` from
the run's saved config) and the status; it writes ``runs.csv``, ``runs.md``,
``report.json`` and ``pareto.png`` (accuracy against measured throughput, Pareto front
marked) and names the most accurate run at or above ``--min-speedup``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

ACC_KEYS = ("test/acc", "test/mAP", "val/acc", "val/mAP")
SPEED_KEYS = ("test/throughput", "val/throughput")
_STRIP = ("model.init_args.", "model.", "data.init_args.")


@dataclass
class Run:
    """One finished (or failed) run as the report sees it."""

    name: str
    source: str
    status: str = "finished"
    schedule: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------- readers
def last_metrics_csv(path: Path) -> dict[str, float]:
    """Last value of every metric in a Lightning CSVLogger ``metrics.csv``."""
    out: dict[str, float] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key in ("epoch", "step") or value in ("", None):
                    continue
                try:
                    out[key] = float(value)
                except ValueError:
                    continue
    return out


def _short(name: str) -> str:
    for prefix in _STRIP:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def describe_params(params: dict[str, Any]) -> str:
    """``merge.ratio=0.2 merge.shape=late`` from swept parameters (prefixes dropped)."""
    return " ".join(f"{_short(k)}={v}" for k, v in params.items())


def _schedule_from_config(config: dict[str, Any]) -> str:
    """The merge schedules of a saved LightningCLI config or hparams dict."""
    model = config.get("model", config)
    if isinstance(model, dict) and "init_args" in model:
        model = model["init_args"]
    if not isinstance(model, dict):
        return ""
    merge, eval_merge = model.get("merge"), model.get("eval_merge")
    if merge is None and eval_merge is None:
        return ""
    text = f"merge={json.dumps(merge)}"
    if eval_merge is not None and eval_merge != merge:
        text += f" eval_merge={json.dumps(eval_merge)}"
    return text


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return doc if isinstance(doc, dict) else {}


def read_local_run(run_dir: Path) -> Run:
    """A run directory written by the CLI (CSVLogger) or the sweep runner (+ trial.json)."""
    run = Run(name=run_dir.name, source=str(run_dir))
    metrics_csv = run_dir / "metrics.csv"
    if metrics_csv.is_file():
        run.metrics = last_metrics_csv(metrics_csv)
    summary = run_dir / "files" / "wandb-summary.json"  # a W&B offline run directory
    if summary.is_file():
        data = json.loads(summary.read_text() or "{}")
        run.metrics.update({k: float(v) for k, v in data.items() if isinstance(v, (int, float))})
    trial = run_dir / "trial.json"
    if trial.is_file():
        info = json.loads(trial.read_text())
        run.status = str(info.get("status", "finished"))
        run.params = dict(info.get("params") or {})
        run.schedule = describe_params(run.params)
    if not run.schedule:
        for name in ("config.yaml", "hparams.yaml", "files/config.yaml"):
            run.schedule = _schedule_from_config(_read_yaml(run_dir / name))
            if run.schedule:
                break
    return run


def _is_run_dir(path: Path) -> bool:
    return (
        (path / "metrics.csv").is_file()
        or (path / "trial.json").is_file()
        or (path / "files" / "wandb-summary.json").is_file()
    )


def find_local_runs(root: Path) -> list[Run]:
    """Every run directory at or below `root` (a run's own subdirectories are not searched)."""
    if not root.exists():
        raise FileNotFoundError(f"report: run directory {root} does not exist")
    if _is_run_dir(root):
        return [read_local_run(root)]
    runs: list[Run] = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        if here != root and _is_run_dir(here):
            runs.append(read_local_run(here))
            dirnames.clear()
    return runs


def runs_from_wandb(path: str, api: Any = None) -> list[Run]:
    """Runs of ``ENTITY/PROJECT`` or of one sweep ``ENTITY/PROJECT/SWEEP_ID`` via the W&B API."""
    if api is None:
        import wandb

        api = wandb.Api()
    parts = path.strip("/").split("/")
    if len(parts) == 3:
        runs = api.sweep("/".join(parts)).runs
    elif len(parts) == 2:
        runs = api.runs("/".join(parts))
    else:
        raise ValueError(f"report: expected wandb:ENTITY/PROJECT[/SWEEP_ID], got wandb:{path}")
    out = []
    for r in runs:
        summary = {k: float(v) for k, v in dict(r.summary).items() if isinstance(v, (int, float))}
        config = dict(r.config)
        swept = {k: v for k, v in config.items() if "merge" in k or k.startswith("kd_")}
        state = {"finished": "finished", "running": "running"}.get(r.state, "failed")
        out.append(
            Run(
                name=r.name,
                source=f"wandb:{'/'.join(parts[:2])}/{r.id}",
                status=state,
                schedule=describe_params(swept) or _schedule_from_config(config),
                params=swept,
                metrics=summary,
            )
        )
    return out


def gather(sources: Sequence[str], api: Any = None) -> list[Run]:
    """Runs from every source, in the order given."""
    runs: list[Run] = []
    for source in sources:
        if source.startswith("wandb:"):
            runs += runs_from_wandb(source[len("wandb:") :], api=api)
        else:
            runs += find_local_runs(Path(source))
    return runs


# ---------------------------------------------------------------------- analysis
def pick_key(runs: Iterable[Run], wanted: str | None, candidates: Sequence[str], what: str) -> str:
    """The metric to use: `wanted`, else the first candidate some run has."""
    present = {k for r in runs for k in r.metrics}
    if wanted:
        if wanted not in present:
            raise ValueError(
                f"report: no run logged the {what} metric {wanted!r}; found {sorted(present)}"
            )
        return wanted
    for key in candidates:
        if key in present:
            return key
    raise ValueError(
        f"report: no run logged any {what} metric of {list(candidates)}; found {sorted(present)}"
    )


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points (throughput, accuracy) no other point beats on both axes."""
    front = []
    for i, (s_i, a_i) in enumerate(points):
        dominated = any(
            s_j >= s_i and a_j >= a_i and (s_j > s_i or a_j > a_i)
            for j, (s_j, a_j) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


@dataclass
class Report:
    """The table rows and the summary the CLI prints and writes."""

    acc_key: str
    speed_key: str
    baseline: str | None
    baseline_speed: float | None
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    min_speedup: float | None


def build_report(
    runs: Sequence[Run],
    acc_key: str | None = None,
    speed_key: str | None = None,
    baseline: str | None = None,
    min_speedup: float | None = None,
) -> Report:
    """Table rows (one per run), speed-ups against the baseline, Pareto flags and the best run.

    The baseline is the run named `baseline`, else the slowest finished run (in a merge
    sweep that includes r = 0, the unmerged model).
    """
    if not runs:
        raise ValueError("report: no runs found")
    acc_key = pick_key(runs, acc_key, ACC_KEYS, "accuracy")
    speed_key = pick_key(runs, speed_key, SPEED_KEYS, "throughput")
    ok = [
        r for r in runs
        if r.status == "finished" and acc_key in r.metrics and speed_key in r.metrics
        and math.isfinite(r.metrics[acc_key]) and math.isfinite(r.metrics[speed_key])
    ]  # fmt: skip
    base_speed = None
    if baseline is not None:
        named = [r for r in ok if r.name == baseline]
        if not named:
            raise ValueError(
                f"report: baseline run {baseline!r} not among the finished runs {[r.name for r in ok]}"
            )
        base_speed = named[0].metrics[speed_key]
    elif ok:
        slowest = min(ok, key=lambda r: r.metrics[speed_key])
        baseline, base_speed = slowest.name, slowest.metrics[speed_key]
    front = {
        id(ok[i]) for i in pareto_front([(r.metrics[speed_key], r.metrics[acc_key]) for r in ok])
    }
    ok_ids = {id(r) for r in ok}
    rows = []
    for r in runs:
        usable = id(r) in ok_ids
        speed = r.metrics.get(speed_key)
        rows.append(
            {
                "run": r.name,
                "status": r.status if usable or r.status != "finished" else "no metrics",
                "schedule": r.schedule,
                acc_key: r.metrics.get(acc_key),
                speed_key: speed,
                "speedup": speed / base_speed if usable and base_speed else None,
                "pareto": usable and id(r) in front,
                "source": r.source,
            }
        )
    best = None
    if min_speedup is not None:
        eligible = [
            row for row in rows if row["speedup"] is not None and row["speedup"] >= min_speedup
        ]
        if eligible:
            best = max(eligible, key=lambda row: row[acc_key])
    return Report(acc_key, speed_key, baseline, base_speed, rows, best, min_speedup)


# ----------------------------------------------------------------------- outputs
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "*" if value else ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(report: Report) -> str:
    cols = ["run", "status", "schedule", report.acc_key, report.speed_key, "speedup", "pareto"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in report.rows:
        lines.append("| " + " | ".join(_fmt(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def plot_pareto(report: Report, path: Path) -> Path:
    """PNG of accuracy against throughput; the Pareto front joined and marked, the best circled."""
    import matplotlib

    matplotlib.use("Agg", force=False)  # headless; a no-op when a backend is already chosen
    import matplotlib.pyplot as plt

    rows = [r for r in report.rows if r["speedup"] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    xs = [r[report.speed_key] for r in rows]
    ys = [r[report.acc_key] for r in rows]
    ax.scatter(xs, ys, color="0.6", label="runs", zorder=2)
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: r[report.speed_key])
    ax.plot(
        [r[report.speed_key] for r in front], [r[report.acc_key] for r in front],
        "o-", color="tab:red", label="Pareto front", zorder=3,
    )  # fmt: skip
    for r in front:
        ax.annotate(r["run"], (r[report.speed_key], r[report.acc_key]), fontsize=7,
                    textcoords="offset points", xytext=(4, 4))  # fmt: skip
    if report.best is not None:
        b = report.best
        ax.scatter([b[report.speed_key]], [b[report.acc_key]], s=160, facecolors="none",
                   edgecolors="tab:blue", linewidths=2, zorder=4,
                   label=f"best at >= {report.min_speedup}x")  # fmt: skip
    if report.min_speedup is not None and report.baseline_speed:
        ax.axvline(report.min_speedup * report.baseline_speed, color="tab:blue", ls=":", lw=1)
    ax.set_xlabel(f"{report.speed_key} (clips/s, measured)")
    ax.set_ylabel(report.acc_key)
    ax.set_title("accuracy vs throughput per merge schedule")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


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
        data=[[_fmt(r[c]) if c == "pareto" else r[c] for c in cols] for r in report.rows],
    )
    run = wandb.init(project=project, name=name, job_type="report", dir=str(png.parent),
                     config={"acc_key": report.acc_key, "speed_key": report.speed_key,
                             "baseline": report.baseline, "min_speedup": report.min_speedup})  # fmt: skip
    try:
        run.log({"runs": table, "pareto": wandb.Image(str(png))})
        if report.best is not None:
            run.summary["best_run"] = report.best["run"]
            run.summary["best_schedule"] = report.best["schedule"]
        return str(run.dir)
    finally:
        run.finish()


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m fastast_pl report`."""
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl report",
        description="Gather finished runs into a table and a Pareto plot of accuracy vs throughput.",
    )
    p.add_argument(
        "runs",
        nargs="+",
        help="run directories / sweep outputs, or wandb:ENTITY/PROJECT[/SWEEP_ID]",
    )
    p.add_argument("--metric", help=f"accuracy metric (default: first found of {list(ACC_KEYS)})")
    p.add_argument(
        "--speed", help=f"throughput metric (default: first found of {list(SPEED_KEYS)})"
    )
    p.add_argument(
        "--baseline", help="run name whose throughput is 1.0x (default: the slowest run)"
    )
    p.add_argument(
        "--min-speedup", type=float, help="name the most accurate run at least this much faster"
    )
    p.add_argument("--out", default="report", help="output directory (default: report/)")
    p.add_argument("--wandb-project", help="also log the table and plot to this W&B project")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        runs = gather(args.runs)
        report = build_report(runs, args.metric, args.speed, args.baseline, args.min_speedup)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    paths = write_outputs(report, Path(args.out))
    print(markdown_table(report))
    print(f"\nbaseline: {report.baseline} ({_fmt(report.baseline_speed)} clips/s)")
    if args.min_speedup is not None:
        if report.best is None:
            print(f"no finished run reaches {args.min_speedup}x")
        else:
            b = report.best
            print(
                f"best at >= {args.min_speedup}x: {b['run']} [{b['schedule']}] "
                f"{report.acc_key}={_fmt(b[report.acc_key])} at {b['speedup']:.2f}x"
            )
    print("wrote " + ", ".join(str(v) for v in paths.values()))
    if args.wandb_project:
        print(f"W&B run: {log_to_wandb(report, paths['png'], args.wandb_project)}")
    return 0
