"""Run a sweep locally: ask the planner, check, run each trial as a subprocess, tell the result.

Each trial is the file's ``command:`` with the W&B macros expanded the way the W&B agent
expands them, run as a subprocess, so a trial that crashes is recorded as failed and the
sweep goes on. Grid and random trials do not depend on results: all are planned and
checked before the first starts. Bayes trials are proposed one at a time from the results
so far; every value a parameter can take (categorical values, distribution bounds) is
checked before the first starts, and each proposed trial is checked again just before it
runs (a rejected one is recorded as failed and told to the sampler as failed).

Results: ``OUT/sweep.json`` (one record per trial: parameters, status, final metrics) and
one run directory per trial (``OUT/trial-000/``: CSV metrics, hparams.yaml with the merge
statistics, the CLI's config.yaml, ``trial.json``, and the W&B offline run with
``--logger wandb``), which ``python -m fastast_pl report OUT`` turns into a table and plots.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastast_pl.tools.report.read import last_metrics_csv
from fastast_pl.tools.sweep.check import TrialChecker, validate_sweep
from fastast_pl.tools.sweep.plan import PlannedTrial, SweepPlanner
from fastast_pl.tools.sweep.spec import SweepError, SweepFile, cli_args, expand_command, load_sweep


@dataclass
class TrialResult:
    """What the sweep records about one trial."""

    index: int
    params: dict[str, Any]
    status: str  # "finished" | "failed"
    returncode: int
    run_dir: str
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)


def logger_args(
    kind: str, run_dir: Path, sweep_name: str, trial_name: str, online: bool
) -> list[str]:
    """CLI overrides that send a trial's logs, config and checkpoints to its run directory.

    A CSVLogger always writes ``metrics.csv`` (the report reads it); ``wandb`` adds a
    WandbLogger (offline unless `online`) in the same directory.
    """
    loggers: list[dict[str, Any]] = []
    if kind in ("csv", "wandb"):
        loggers.append({
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(run_dir), "name": "", "version": ""},
        })  # fmt: skip
    if kind == "wandb":
        loggers.append({
            "class_path": "lightning.pytorch.loggers.WandbLogger",
            "init_args": {
                "save_dir": str(run_dir), "project": sweep_name, "name": trial_name,
                "group": sweep_name, "offline": not online,
            },
        })  # fmt: skip
    args = [f"--trainer.default_root_dir={run_dir}"]
    if loggers:
        args.append("--trainer.logger=" + json.dumps(loggers))
    return args


def read_final_metrics(run_dir: Path) -> dict[str, float]:
    """Last value of every metric in the trial's ``metrics.csv`` (empty if none)."""
    path = run_dir / "metrics.csv"
    return last_metrics_csv(path) if path.is_file() else {}


def run_trial(
    sweep: SweepFile,
    index: int,
    params: dict[str, Any],
    out_dir: Path,
    logger: str = "csv",
    online: bool = False,
    extra_args: Sequence[str] = (),
    timeout: float | None = None,
) -> TrialResult:
    """Run one trial in ``out_dir/trial-NNN``; a failure is recorded, never raised."""
    name = sweep.name or sweep.path.stem
    trial_name = f"trial-{index:03d}"
    run_dir = out_dir / trial_name
    run_dir.mkdir(parents=True, exist_ok=True)
    command = expand_command(sweep, params, json_file=run_dir / "params.json")
    command += list(extra_args) + logger_args(logger, run_dir, name, trial_name, online)
    start = time.perf_counter()
    with (run_dir / "stdout.log").open("w") as log:
        try:
            code = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            log.write(f"\n[sweep] trial killed after the {timeout} s timeout\n")
            code = -9
    return _record(
        TrialResult(
            index=index,
            params=params,
            status="finished" if code == 0 else "failed",
            returncode=code,
            run_dir=str(run_dir),
            seconds=round(time.perf_counter() - start, 2),
            metrics=read_final_metrics(run_dir),
            command=command,
        )  # fmt: skip
    )


def rejected_trial(index: int, params: dict[str, Any], out_dir: Path, why: str) -> TrialResult:
    """A bayes trial the pre-flight check rejected: recorded as failed, never started."""
    run_dir = out_dir / f"trial-{index:03d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "stdout.log").write_text(f"[sweep] rejected before the start:\n{why}\n")
    return _record(TrialResult(index, params, "failed", 2, str(run_dir), 0.0))


def _record(result: TrialResult) -> TrialResult:
    path = Path(result.run_dir) / "trial.json"
    path.write_text(json.dumps(asdict(result), indent=2, default=str))
    return result


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl sweep",
        description="Run a W&B sweep file locally with Optuna (grid, random, bayes = TPE), "
        "trial after trial (no W&B server needed). Arguments after `--` are appended to "
        "every trial's command.",
    )
    p.add_argument("file", help="W&B sweep YAML (experiments/sweeps/*.yaml)")
    p.add_argument("--method", choices=["grid", "random", "bayes"],
                   help="override the file's method")  # fmt: skip
    p.add_argument("--count", type=int,
                   help="number of trials (random/bayes: required unless run_cap; grid: the first N)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    p.add_argument("--startup-trials", type=int, default=10,
                   help="bayes: random trials before TPE models the results (default 10, Optuna's)")  # fmt: skip
    p.add_argument("--out", default=None, help="output directory (default runs/sweeps/<name>)")
    p.add_argument("--logger", choices=["csv", "wandb", "none"], default="csv",
                   help="csv: metrics.csv per trial; wandb: also a W&B run (offline unless --online)")  # fmt: skip
    p.add_argument("--online", action="store_true",
                   help="with --logger wandb: sync to the W&B server")  # fmt: skip
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds after which a trial is killed (failed)")  # fmt: skip
    p.add_argument("--dry-run", action="store_true",
                   help="validate and print the trial commands, run nothing (grid/random)")  # fmt: skip
    p.add_argument("--no-validate", action="store_true",
                   help="skip the checks before the first trial")  # fmt: skip
    cut = argv.index("--") if "--" in argv else len(argv)
    ns = p.parse_args(argv[:cut])
    ns.extra = argv[cut + 1 :]
    return ns


def _write_summary(out_dir: Path, sweep: SweepFile, results: list[TrialResult]) -> None:
    doc = {"file": str(sweep.path), "method": sweep.method, "metric": sweep.metric,
           "engine": "optuna", "trials": [asdict(r) for r in results]}  # fmt: skip
    (out_dir / "sweep.json").write_text(json.dumps(doc, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m fastast_pl sweep`; exit code 0 when every trial finished."""
    args = _parse_args(list(sys.argv[1:] if argv is None else argv))
    checker = TrialChecker()
    try:
        sweep = load_sweep(args.file)
        sweep.method = args.method or sweep.method
        planner = SweepPlanner(sweep, args.seed, args.startup_trials)
        count = planner.count(args.count)
        planned: list[PlannedTrial] = []
        if sweep.method != "bayes":
            planned = [planner.ask() for _ in range(count)]
        if not args.no_validate:
            first = [t.params for t in planned] or [planner.ask().params]
            validate_sweep(sweep, first, checker, extra_args=args.extra)
            if sweep.method == "bayes":  # that probe trial is not run: start the study afresh
                planner = SweepPlanner(sweep, args.seed, args.startup_trials)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = sweep.name or sweep.path.stem
    out_dir = Path(args.out or Path("runs") / "sweeps" / name)
    print(f"[sweep] {name}: {count} {sweep.method} trials (Optuna) -> {out_dir}")
    if args.dry_run:
        for i, t in enumerate(planned):
            print(f"trial-{i:03d}: {shlex.join(expand_command(sweep, t.params) + args.extra)}")
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[TrialResult] = []
    for index in range(count):
        trial = planned[index] if planned else planner.ask()
        why = None
        if sweep.method == "bayes" and not args.no_validate:
            why = _check_one(sweep, trial.params, checker, args.extra)
        if why is None:
            result = run_trial(sweep, index, trial.params, out_dir, args.logger, args.online,
                               args.extra, args.timeout)  # fmt: skip
        else:
            result = rejected_trial(index, trial.params, out_dir, why)
        planner.tell(trial, result.metrics if result.status == "finished" else None)
        results.append(result)
        shown = {k: round(v, 4) for k, v in result.metrics.items() if re.match(r"(val|test)/", k)}
        print(f"[sweep] trial-{index:03d} {result.status} ({result.seconds} s) "
              f"{result.params} {shown}")  # fmt: skip
        _write_summary(out_dir, sweep, results)
    failed = [r.index for r in results if r.status != "finished"]
    print(
        f"[sweep] done: {len(results) - len(failed)} finished, {len(failed)} failed {failed or ''}"
    )
    return 1 if failed else 0


def _check_one(
    sweep: SweepFile, params: dict[str, Any], checker: TrialChecker, extra: Sequence[str]
) -> str | None:
    """None if the CLI accepts this trial, else its message."""
    try:
        checker.check(cli_args(expand_command(sweep, params) + list(extra), str(sweep.path)))
    except SweepError as err:
        return str(err)
    return None
