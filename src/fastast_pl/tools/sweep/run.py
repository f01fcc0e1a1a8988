"""Run a sweep file locally: an Optuna study asks for trials, each runs as a subprocess, its
final metric is told back.

The W&B methods are Optuna's samplers: ``grid`` -> ``GridSampler``, ``random`` ->
``RandomSampler``, ``bayes`` -> ``TPESampler`` (model-based like W&B's Bayesian search:
after ``--startup-trials`` random trials each proposal comes from the results so far). The
study lives in ``OUT/optuna.journal`` (Optuna's ``JournalStorage``). A trial that crashes, is
rejected by the check before its start, or lacks the file's ``metric.name`` returns NaN
(Optuna records it as failed; the samplers learn nothing from it); the sweep goes on.
W&B's ``early_terminate`` is not applied locally.

Results: one run directory per trial (``OUT/trial-000/``: CSV metrics, hparams.yaml with the
merge statistics, the CLI's config.yaml, stdout.log, ``trial.json``; the W&B offline run
with ``--logger wandb``) and ``OUT/sweep.json`` (every trial.json), which
``python -m fastast_pl report OUT`` turns into a table and plots. A second run into an OUT
that holds a sweep changes nothing and stops, unless ``--resume`` (continue its study up to
``--count`` trials in all; earlier trials stay as they are) or ``--overwrite`` (delete it).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from fastast_pl.tools.report.read import last_metrics_csv
from fastast_pl.tools.sweep.check import TrialChecker, validate_sweep
from fastast_pl.tools.sweep.spec import SweepError, SweepFile, expand_command, load_sweep

optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial's line is printed here
STORAGE = "optuna.journal"


def make_study(
    sweep: SweepFile, seed: int = 0, startup_trials: int = 10, storage: Any = None
) -> optuna.Study:
    """The Optuna study of `sweep` (in memory, or loaded from / created in `storage`)."""
    if sweep.method == "grid":
        space = {p.name: list(range(len(p.values))) for p in sweep.params}  # type: ignore[arg-type]
        sampler: optuna.samplers.BaseSampler = optuna.samplers.GridSampler(space, seed=seed)
    elif sweep.method == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)
    goal, metric_name = sweep.metric.get("goal", "maximize"), sweep.metric.get("name")
    if goal not in ("maximize", "minimize") or (sweep.method == "bayes" and not metric_name):
        raise SweepError(
            f"{sweep.path}: metric={sweep.metric!r}; expected a name (what to "
            "optimise; bayes needs it) and goal 'maximize' or 'minimize'"
        )
    return optuna.create_study(
        storage=storage,
        sampler=sampler,
        direction=goal,
        study_name=sweep.name or sweep.path.stem,
        load_if_exists=True,
    )


def trial_count(sweep: SweepFile, count: int | None) -> int:
    """Trials in all: the grid (cut at `count`), else `count` or the file's ``run_cap``."""
    if sweep.method == "grid":
        size = math.prod(len(p.values) for p in sweep.params)  # type: ignore[arg-type]
        return min(count, size) if count else size
    if not (count or sweep.run_cap):
        raise SweepError(
            f"{sweep.path}: method {sweep.method!r} needs --count (or run_cap in the file)"
        )
    return int(count or sweep.run_cap)  # type: ignore[arg-type]


def plan_trials(sweep: SweepFile, count: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """The first `count` parameter sets the sampler proposes before any result is told (all
    of a grid or random sweep; the random start of a bayes one): for --dry-run and tests."""
    study = make_study(sweep, seed)
    return [sweep.suggest(study.ask()) for _ in range(trial_count(sweep, count))]


def logger_args(kind: str, run_dir: Path, sweep_name: str, online: bool) -> list[str]:
    """CLI overrides that send a trial's logs, config and checkpoints to its run directory:
    a CSVLogger's ``metrics.csv`` (read back here and by the report), with ``wandb`` also a
    WandbLogger (offline unless `online`) in the same directory."""
    csv_args = dict(save_dir=str(run_dir), name="", version="")
    wandb_args = dict(
        save_dir=str(run_dir),
        project=sweep_name,
        name=run_dir.name,
        group=sweep_name,
        offline=not online,
    )
    csv = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": csv_args}
    wandb = {"class_path": "lightning.pytorch.loggers.WandbLogger", "init_args": wandb_args}
    loggers = {"csv": [csv], "wandb": [csv, wandb], "none": []}[kind]
    logger = ["--trainer.logger=" + json.dumps(loggers)] if loggers else []
    return [f"--trainer.default_root_dir={run_dir}", *logger]


def run_trial(
    sweep: SweepFile,
    number: int,
    params: dict[str, Any],
    out_dir: Path,
    args: argparse.Namespace,
    rejected: str | None = None,
) -> dict[str, Any]:
    """Run trial `number` in ``out_dir/trial-NNN`` (or record why the check rejected it);
    a failure is recorded, never raised; an existing directory is never written into."""
    run_dir = out_dir / f"trial-{number:03d}"
    run_dir.mkdir(parents=True)
    command = expand_command(sweep, params, json_file=run_dir / "params.json")
    command += list(args.extra) + logger_args(
        args.logger, run_dir, sweep.name or sweep.path.stem, args.online
    )
    start, code = time.perf_counter(), 2
    with (run_dir / "stdout.log").open("w") as log:
        if rejected is not None:
            log.write(f"[sweep] rejected before the start:\n{rejected}\n")
        else:
            try:
                code = subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, timeout=args.timeout
                ).returncode
            except subprocess.TimeoutExpired:
                log.write(f"\n[sweep] trial killed after the {args.timeout} s timeout\n")
                code = -9
    csv = run_dir / "metrics.csv"
    result = {
        "index": number,
        "params": params,
        "status": "finished" if code == 0 else "failed",
        "returncode": code,
        "run_dir": str(run_dir),
        "seconds": round(time.perf_counter() - start, 2),
        "metrics": last_metrics_csv(csv) if csv.is_file() else {},
        "command": command,
    }
    (run_dir / "trial.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl sweep",
        description="Run a W&B sweep file locally on Optuna (grid, random, bayes = TPE), trial "
        "after trial. Arguments after `--` are appended to every trial's command.",
    )
    add, flag = p.add_argument, {"action": "store_true"}
    add("file", help="W&B sweep YAML (experiments/sweeps/*.yaml)")
    add("--method", choices=["grid", "random", "bayes"], help="instead of the file's method")
    add("--count", type=int, help="trials in all (random/bayes: else run_cap; grid: the first N)")
    add("--seed", type=int, default=0, help="seed of the sampler (default 0)")
    add("--startup-trials", type=int, default=10, help="bayes: random trials before TPE (10)")
    add("--out", help="output directory (default runs/sweeps/<name>)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", **flag, help="continue the sweep in OUT up to --count trials")
    again.add_argument("--overwrite", **flag, help="delete the sweep in OUT first")
    add("--logger", choices=["csv", "wandb", "none"], default="csv", help="wandb: CSV + W&B run")
    add("--online", **flag, help="with --logger wandb: sync to the W&B server")
    add("--timeout", type=float, help="seconds after which a trial is killed (failed)")
    add("--dry-run", **flag, help="check and print the first trials' commands, run nothing")
    add("--no-validate", **flag, help="skip the checks through the CLI")
    cut = argv.index("--") if "--" in argv else len(argv)
    ns = p.parse_args(argv[:cut])
    ns.extra = argv[cut + 1 :]
    return ns


def earlier_sweep(out_dir: Path) -> list[Path]:
    """What an earlier sweep left in `out_dir`: its study, summary and trial directories."""
    names = [STORAGE, "sweep.json"]
    return sorted(p for p in out_dir.glob("*") if p.name in names or p.name.startswith("trial-"))


def _open_out(out_dir: Path, args: argparse.Namespace, sweep: SweepFile) -> optuna.Study:
    """The study in `out_dir`: a new one, the earlier one (--resume), or a new one after the
    earlier sweep's files are deleted (--overwrite); otherwise refuse, touching nothing."""
    found = earlier_sweep(out_dir)
    storage_file = out_dir / STORAGE
    if found and args.overwrite:
        for path in found:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    elif found and not args.resume:
        raise SweepError(
            f"{out_dir} holds an earlier sweep ({[p.name for p in found][:4]}...); "
            "nothing was changed. Continue its study with --resume, delete it with "
            "--overwrite, or give another --out"
        )
    elif args.resume and not storage_file.is_file():
        raise SweepError(f"--resume: {out_dir} holds no Optuna study ({STORAGE}) to continue")
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(storage_file)))
    name = sweep.name or sweep.path.stem
    if args.resume and name not in optuna.get_all_study_names(storage):
        raise SweepError(f"--resume: {storage_file} holds no study {name!r}")
    resumed = sum(p.name.startswith("trial-") for p in found) if args.resume else 0
    study = make_study(sweep, args.seed + resumed, args.startup_trials, storage)  # new draws
    this = {
        "file": str(sweep.path.resolve()),
        "method": sweep.method,
        "params": [p.name for p in sweep.params],
    }
    if study.user_attrs.setdefault("sweep", this) != this:
        raise SweepError(
            f"--resume: the study in {out_dir} is of another sweep "
            f"({study.user_attrs['sweep']}), not {this}"
        )
    study.set_user_attr("sweep", this)
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)  # a killed earlier process
    return study


def _write_summary(out_dir: Path, sweep: SweepFile) -> list[dict[str, Any]]:
    """``OUT/sweep.json``: the file, method, metric and every trial's ``trial.json``."""
    trials = [json.loads(p.read_text()) for p in sorted(out_dir.glob("trial-*/trial.json"))]
    summary = {
        "file": str(sweep.path),
        "method": sweep.method,
        "metric": sweep.metric,
        "engine": "optuna",
        "storage": str(out_dir / STORAGE),
        "trials": trials,
    }
    (out_dir / "sweep.json").write_text(json.dumps(summary, indent=2, default=str))
    return trials


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m fastast_pl sweep`; exit code 0 when every trial finished."""
    args = _parse_args(list(sys.argv[1:] if argv is None else argv))
    checker = TrialChecker()
    try:
        sweep = load_sweep(args.file, args.method)
        count = trial_count(sweep, args.count)
        name = sweep.name or sweep.path.stem
        out_dir = Path(args.out or Path("runs") / "sweeps" / name)
        if not args.no_validate:
            validate_sweep(sweep, checker, extra_args=args.extra)
        if args.dry_run:
            for i, params in enumerate(plan_trials(sweep, count, args.seed)):
                print(f"trial-{i:03d}: {shlex.join(expand_command(sweep, params) + args.extra)}")
            return 0
        study = _open_out(out_dir, args, sweep)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    todo = max(count - len(study.trials), 0)
    print(f"[sweep] {name}: {todo} of {count} {sweep.method} trials (Optuna) -> {out_dir}")
    if sweep.early_terminate:
        print(
            "[sweep] early_terminate is applied under `wandb agent` only; every trial runs to its end"
        )

    def objective(trial: optuna.Trial) -> float:
        params = sweep.suggest(trial)
        why = None if args.no_validate else checker.trial_error(sweep, params, args.extra)
        result = run_trial(sweep, trial.number, params, out_dir, args, why)
        shown = {
            k: round(v, 4) for k, v in result["metrics"].items() if k.startswith(("val/", "test/"))
        }
        print(
            f"[sweep] trial-{trial.number:03d} {result['status']} ({result['seconds']} s) "
            f"{params} {shown}"
        )
        _write_summary(out_dir, sweep)
        value = result["metrics"].get(sweep.metric.get("name", ""), math.nan)
        return value if result["status"] == "finished" else math.nan  # nan: Optuna's FAIL

    study.optimize(objective, n_trials=todo)
    trials = _write_summary(out_dir, sweep)
    failed = [t["index"] for t in trials if t["status"] != "finished"]
    print(
        f"[sweep] done: {len(trials) - len(failed)} finished, {len(failed)} failed {failed or ''}"
    )
    return 1 if failed else 0
