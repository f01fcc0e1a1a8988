"""`python -m fastast_pl report RUNS...`: finished runs -> table + accuracy/cost Pareto plot.

RUNS are local directories (a sweep's output, a `runs/` tree, single run directories, the
``wandb/`` directory of runs under ``wandb agent``; every directory below them holding
Lightning's ``metrics.csv`` or a sweep's ``trial.json`` is one run) or ``wandb:ENTITY/PROJECT[/SWEEP_ID]`` (the W&B API;
needs a login and a network). ``read`` gathers runs, ``analyze`` times each distinct
schedule once (``fastast_pl.speed``: speed depends on the schedule, not the weights) and
finds the Pareto front and the best run, ``render`` writes the table and the plot.
With ``--esc50-folds`` RUNS are the five ESC-50 fold runs and ``esc50`` prints AST's
five-fold summary instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fastast_pl.speed.schedules import TimingSettings
from fastast_pl.tools.report.analyze import (
    ACC_KEYS,
    AXES,
    build_report,
    measure_runs,
    speed_against_flops,
)
from fastast_pl.tools.report.esc50 import esc50_result, format_result
from fastast_pl.tools.report.read import gather
from fastast_pl.tools.report.render import (
    REPORT_FILES,
    log_to_wandb,
    markdown_table,
    write_outputs,
)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m fastast_pl report`."""
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl report",
        description="Gather finished runs into a table and Pareto plots of accuracy against "
        "the analytic FLOP ratio and the measured speed-up of each distinct schedule.",
    )
    p.add_argument(
        "runs",
        nargs="+",
        help="run directories / sweep outputs, or wandb:ENTITY/PROJECT[/SWEEP_ID]",
    )
    p.add_argument("--metric", help=f"accuracy metric (default: first found of {list(ACC_KEYS)})")
    p.add_argument("--min-speedup", type=float,
                   help="name the most accurate schedule at least this much faster")  # fmt: skip
    p.add_argument("--speedup-by", choices=AXES, default=None,
                   help="speed-up for the front and --min-speedup: flops (analytic FLOP ratio; "
                   "default when every run logged it) or measured (timed here)")  # fmt: skip
    p.add_argument("--no-timing", action="store_true",
                   help="do not time the schedules (FLOP ratios only)")  # fmt: skip
    p.add_argument("--timing-batch", type=int, default=8, help="clips per timed batch")
    p.add_argument("--timing-rounds", type=int, default=5, help="timed rounds per schedule")
    p.add_argument("--timing-threads", type=int, default=1, help="torch threads while timing")
    p.add_argument("--timing-clock", choices=["cpu", "wall"], default="cpu",
                   help="cpu: this process's CPU time (robust to other load with one thread)")  # fmt: skip
    p.add_argument("--out", default="report", help="output directory (default: report/)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the report files already in --out (else refused)")  # fmt: skip
    p.add_argument("--wandb-project", help="also log the table and plot to this W&B project")
    p.add_argument("--esc50-folds", action="store_true",
                   help="RUNS are the 5 ESC-50 fold runs: print the best epoch of the mean "
                   "val/acc curve (AST get_esc_result.py) and the last-epoch mean")  # fmt: skip
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.esc50_folds:
        try:
            result = esc50_result([Path(r) for r in args.runs], args.metric or "val/acc")
        except (ValueError, FileNotFoundError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(format_result(result))
        return 0
    earlier = sorted(n for n in REPORT_FILES if (Path(args.out) / n).exists())
    if earlier and not args.overwrite:
        print(f"error: {args.out} already holds a report ({', '.join(earlier)}); pass "
              "--overwrite to replace it, or give another --out", file=sys.stderr)  # fmt: skip
        return 2
    settings = TimingSettings(args.timing_batch, args.timing_rounds, threads=args.timing_threads,
                              clock=args.timing_clock)  # fmt: skip
    try:
        runs = gather(args.runs)
        usable = [r for r in runs if r.status == "finished"]
        speeds = {} if args.no_timing else measure_runs(usable, settings)
        timing = settings.describe() if speeds else None
        report = build_report(runs, args.metric, args.min_speedup, args.speedup_by, speeds, timing)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    paths = write_outputs(report, Path(args.out))
    print(markdown_table(report))
    agreement = speed_against_flops(report)
    if agreement:
        print(f"\n{agreement}")
    untimed = [r["run"] for r in report.rows if r["status"] == "finished" and r["speedup"] is None]
    if untimed and not args.no_timing:
        print(f"\nnot timed (no merge/model and merge/eval/r logged): {', '.join(untimed)}")
    if args.min_speedup is not None:
        if report.best is None:
            print(f"no finished run reaches {args.min_speedup}x ({report.axis})")
        else:
            b = report.best
            x = b["flop_ratio"] if report.axis == "flops" else b["speedup"]
            print(
                f"best at >= {args.min_speedup}x: {b['run']} [{b['schedule']}] "
                f"{report.acc_key}={b[report.acc_key]:.4g} at {x:.2f}x ({report.axis})"
            )
    print("wrote " + ", ".join(str(v) for v in paths.values()))
    if args.wandb_project:
        print(f"W&B run: {log_to_wandb(report, paths['png'], args.wandb_project)}")
    return 0
