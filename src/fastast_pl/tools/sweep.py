"""`python -m fastast_pl sweep FILE`: run a W&B sweep file locally, one trial after another.

The same file works with a W&B server (``wandb sweep FILE`` + ``wandb agent``) and without
one (this runner). Each trial is the file's ``command:`` with the W&B macros expanded the way
the W&B agent expands them (``${args}`` becomes ``--name=value`` per parameter), run as a
subprocess, so a trial that crashes is recorded as failed and the sweep goes on.

Before the first trial starts, every planned trial is parsed by the fastast-pl CLI (an
unknown key or a wrongly typed value fails there) and its LightningModule is built on the
meta device (no memory, no compute), which runs the modules' own range checks (merge ratios
in [0, 0.5), ...). A rejected sweep names the parameter and the value.

Results: ``OUT/sweep.json`` (one record per trial: parameters, status, final metrics) and
one run directory per trial (``OUT/trial-000/``: CSV metrics, the CLI's config.yaml,
``trial.json``, checkpoints, and the W&B offline run with ``--logger wandb``), which
``python -m fastast_pl report OUT`` turns into a table and a Pareto plot.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fastast_pl.tools.report import last_metrics_csv

SWEEP_KEYS = {
    "program", "method", "metric", "parameters", "command", "name", "description",
    "early_terminate", "run_cap", "project", "entity",
}  # fmt: skip
METHODS = ("grid", "random", "bayes")
DISTRIBUTIONS = (
    "constant", "categorical", "int_uniform", "uniform", "q_uniform",
    "log_uniform_values", "q_log_uniform_values",
)  # fmt: skip
MACROS = ("env", "interpreter", "program", "args", "args_no_boolean_flags", "args_json_file")
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]  # W&B's default


class SweepError(ValueError):
    """A sweep file that cannot run; the message names the file, key and value."""


# --------------------------------------------------------------------------- file
@dataclass
class Param:
    """One swept parameter: fixed values (grid-able) or a distribution (random only)."""

    name: str
    values: list[Any] | None = None
    probabilities: list[float] | None = None
    distribution: str | None = None
    min: float | None = None
    max: float | None = None
    q: float | None = None

    @property
    def is_grid(self) -> bool:
        return self.values is not None

    def sample(self, rng: random.Random) -> Any:
        if self.values is not None:
            if self.probabilities:
                return rng.choices(self.values, weights=self.probabilities)[0]
            return rng.choice(self.values)
        lo, hi = float(self.min), float(self.max)  # type: ignore[arg-type]
        if self.distribution == "int_uniform":
            return rng.randint(int(lo), int(hi))
        if self.distribution in ("log_uniform_values", "q_log_uniform_values"):
            value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        else:
            value = rng.uniform(lo, hi)
        if self.q:
            value = round(value / self.q) * self.q
        return value

    def extremes(self) -> list[Any]:
        """Values that bound what this parameter can take (checked before the first trial)."""
        if self.values is not None:
            return list(self.values)
        if self.distribution == "int_uniform":
            return [int(self.min), int(self.max)]  # type: ignore[arg-type]
        return [float(self.min), float(self.max)]  # type: ignore[arg-type]


@dataclass
class SweepFile:
    """A parsed, structurally checked W&B sweep file."""

    path: Path
    method: str
    params: list[Param]
    command: list[str]
    program: str | None = None
    metric: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    run_cap: int | None = None


def _param(path: Path, name: str, spec: Any) -> Param:
    where = f"{path}: parameters.{name}"
    if not isinstance(spec, dict):
        raise SweepError(
            f"{where}: expected a mapping with 'values', 'value' or 'distribution', got {spec!r}"
        )
    if "parameters" in spec:
        raise SweepError(
            f"{where}: nested 'parameters' are not supported; name the full key instead "
            f"(e.g. '{name}.ratio')"
        )
    known = {"value", "values", "probabilities", "distribution", "min", "max", "q", "mu", "sigma"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise SweepError(f"{where}: unknown keys {unknown}; expected some of {sorted(known)}")
    if "value" in spec:
        return Param(name, values=[spec["value"]])
    dist = spec.get("distribution")
    if "values" in spec:
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}.values: expected a non-empty list, got {values!r}")
        if any(v is None for v in values):
            raise SweepError(
                f"{where}.values: null is not passable on a command line (the W&B agent writes "
                "it as the string 'None'); use an explicit value such as {} or 0"
            )
        probs = spec.get("probabilities")
        if probs is not None and (len(probs) != len(values) or not math.isclose(sum(probs), 1.0)):
            raise SweepError(
                f"{where}.probabilities: expected {len(values)} numbers summing to 1, got {probs!r}"
            )
        return Param(name, values=list(values), probabilities=probs)
    if dist is None:
        if "min" in spec and "max" in spec:  # W&B infers uniform / int_uniform from the types
            both_int = all(isinstance(spec[k], int) for k in ("min", "max"))
            dist = "int_uniform" if both_int else "uniform"
        else:
            raise SweepError(
                f"{where}: expected 'value', 'values' or 'min'/'max' (with a 'distribution')"
            )
    if dist not in DISTRIBUTIONS or dist in ("constant", "categorical"):
        raise SweepError(
            f"{where}.distribution={dist!r}: supported here are "
            f"{[d for d in DISTRIBUTIONS if d not in ('constant', 'categorical')]} "
            "(use 'values' for categorical, 'value' for constant)"
        )
    lo, hi = spec.get("min"), spec.get("max")
    if (
        not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi))
        or lo > hi
    ):
        raise SweepError(f"{where}: expected numbers min <= max, got min={lo!r}, max={hi!r}")
    if dist.startswith(("log", "q_log")) and lo <= 0:
        raise SweepError(f"{where}: {dist} needs min > 0, got min={lo!r}")
    return Param(name, distribution=dist, min=lo, max=hi, q=spec.get("q"))


def load_sweep(path: str | os.PathLike) -> SweepFile:
    """Read and structurally check a W&B sweep file (keys, parameter specs, command)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(doc, dict):
        raise SweepError(f"{path}: expected a mapping at the top level, got {type(doc).__name__}")
    unknown = sorted(set(doc) - SWEEP_KEYS)
    if unknown:
        raise SweepError(
            f"{path}: unknown top-level keys {unknown}; expected some of {sorted(SWEEP_KEYS)}"
        )
    method = doc.get("method")
    if method not in METHODS:
        raise SweepError(f"{path}: method={method!r}; expected one of {list(METHODS)}")
    raw = doc.get("parameters")
    if not isinstance(raw, dict) or not raw:
        raise SweepError(f"{path}: 'parameters' must be a non-empty mapping")
    params = [_param(path, str(name), spec) for name, spec in raw.items()]
    if method == "grid":
        for p in params:
            if not p.is_grid:
                raise SweepError(
                    f"{path}: parameters.{p.name}: method 'grid' needs 'values' or 'value', got a distribution"
                )
    command = doc.get("command", DEFAULT_COMMAND)
    if not isinstance(command, list) or not all(isinstance(c, (str, int, float)) for c in command):
        raise SweepError(f"{path}: 'command' must be a list of strings, got {command!r}")
    command = [str(c) for c in command]
    for c in command:
        if c.startswith("${") and c.endswith("}") and c[2:-1] not in MACROS:
            raise SweepError(
                f"{path}: command macro {c} is not supported; expected one of {['${' + m + '}' for m in MACROS]}"
            )
    if not any(c in ("${args}", "${args_no_boolean_flags}", "${args_json_file}") for c in command):
        raise SweepError(f"{path}: 'command' never passes the parameters; add ${{args}}")
    run_cap = doc.get("run_cap")
    return SweepFile(
        path=path, method=method, params=params, command=command, program=doc.get("program"),
        metric=doc.get("metric") or {}, name=doc.get("name"), run_cap=run_cap,
    )  # fmt: skip


# ------------------------------------------------------------------------- trials
def plan_trials(sweep: SweepFile, count: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """The parameter sets to run: the grid (cut at `count`) or `count` random draws."""
    if sweep.method == "grid":
        names = [p.name for p in sweep.params]
        grid = itertools.product(*(p.values for p in sweep.params))  # type: ignore[misc]
        trials = [dict(zip(names, combo)) for combo in grid]
        return trials[:count] if count else trials
    n = count or sweep.run_cap
    if not n:
        raise SweepError(
            f"{sweep.path}: method {sweep.method!r} needs --count (or run_cap in the file)"
        )
    rng = random.Random(seed)
    return [{p.name: p.sample(rng) for p in sweep.params} for _ in range(n)]


def format_value(value: Any) -> str:
    """A value as the W&B agent writes it after ``--name=``: Python's ``str``."""
    return str(value)


def trial_flags(params: dict[str, Any], macro: str = "args") -> list[str]:
    """``${args}`` (``--name=value``) or ``${args_no_boolean_flags}`` for one trial."""
    flags = []
    for name, value in params.items():
        if macro == "args_no_boolean_flags" and isinstance(value, bool):
            if value:
                flags.append(f"--{name}")
            continue
        flags.append(f"--{name}={format_value(value)}")
    return flags


def expand_command(
    sweep: SweepFile, params: dict[str, Any], json_file: Path | None = None
) -> list[str]:
    """The trial's command line, with the W&B macros expanded and ``python`` -> this Python."""
    out: list[str] = []
    for c in sweep.command:
        if c == "${env}":
            continue  # /usr/bin/env: the environment is inherited anyway
        if c in ("${interpreter}", "python", "python3"):
            out.append(sys.executable)
        elif c == "${program}":
            if not sweep.program:
                raise SweepError(
                    f"{sweep.path}: command uses ${{program}} but 'program' is not set"
                )
            out.append(sweep.program)
        elif c in ("${args}", "${args_no_boolean_flags}"):
            out.extend(trial_flags(params, c[2:-1]))
        elif c == "${args_json_file}":
            if json_file is None:
                raise SweepError(f"{sweep.path}: ${{args_json_file}} needs a trial directory")
            json_file.write_text(json.dumps(params))
            out.append(str(json_file))
        else:
            out.append(c)
    return out


def cli_args(command: Sequence[str], where: str) -> list[str]:
    """The arguments after ``-m fastast_pl`` (or the ``fastast-pl`` script) in a command."""
    cmd = list(command)
    for i, c in enumerate(cmd):
        if c == "-m" and i + 1 < len(cmd) and cmd[i + 1] in ("fastast_pl", "fastast_pl.cli"):
            return cmd[i + 2 :]
        if Path(c).name == "fastast-pl":
            return cmd[i + 1 :]
    raise SweepError(
        f"{where}: 'command' must run `python -m fastast_pl <subcommand> ...`, got {shlex.join(cmd)}"
    )


# --------------------------------------------------------------------- validation
class _Parsed(Exception):
    def __init__(self, cli: Any) -> None:
        super().__init__("parsed")
        self.cli = cli


class TrialChecker:
    """Parses trial command lines exactly as `python -m fastast_pl` does and builds their
    LightningModules, without training. The CLI's parser is built once and reused."""

    def __init__(self, build_models: bool = True) -> None:
        self._parser: Any = None
        self._models_seen: set[str] = set()
        self.build_models = build_models

    def _parse(self, argv: list[str]) -> Any:
        from fastast_pl.cli import FastASTCLI
        from fastast_pl.data.datamodule import AudioDataModule
        from fastast_pl.modules.base import ClassificationModule

        class _ParseOnly(FastASTCLI):
            def before_instantiate_classes(self) -> None:
                raise _Parsed(self)

        sink = io.StringIO()
        try:
            with (
                contextlib.redirect_stderr(sink),
                contextlib.redirect_stdout(sink),
                warnings.catch_warnings(),
            ):
                warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
                if self._parser is None:
                    _ParseOnly(
                        model_class=ClassificationModule,
                        subclass_mode_model=True,
                        datamodule_class=AudioDataModule,
                        seed_everything_default=0,
                        args=argv,
                    )
                    raise SweepError("the command did not reach training (--help, --print_config?)")
                config = self._parser.parse_args(argv)
        except _Parsed as parsed:
            self._parser = parsed.cli.parser
            config = parsed.cli.config
        except SystemExit as err:
            lines = sink.getvalue().strip().splitlines()
            starts = [i for i, ln in enumerate(lines) if ln.startswith("error:")]
            lines = lines[starts[0] :] if starts else lines  # drop the usage text
            raise SweepError("\n".join(lines) or f"the CLI exited with {err.code}") from None
        return config[config["subcommand"]]

    def _build_model(self, config: Any) -> None:
        """Instantiate the configured LightningModule: runs its own __init__ checks.

        Tried on the meta device first (no memory, no compute); a module whose __init__
        needs real tensors is built on the CPU instead. Each distinct model config once.
        """
        import torch
        from jsonargparse import ArgumentParser

        from fastast_pl.modules.base import ClassificationModule

        model = config["model"].as_dict()
        key = json.dumps(model, sort_keys=True, default=str)
        if key in self._models_seen:
            return
        parser = ArgumentParser(exit_on_error=False)
        parser.add_subclass_arguments(ClassificationModule, "model", required=True)
        model_cfg = parser.parse_object({"model": model})
        try:
            with torch.device("meta"):
                parser.instantiate_classes(model_cfg)
        except Exception as err:  # meta-incompatible init (e.g. .tolist()): retry for real
            if "meta" not in str(err):
                raise
            parser.instantiate_classes(model_cfg)
        self._models_seen.add(key)

    def check(self, argv: list[str]) -> None:
        """Raise SweepError if the CLI rejects `argv` or its model's __init__ does."""
        config = self._parse(argv)
        if not self.build_models:
            return
        try:
            self._build_model(config)
        except Exception as err:  # the module's own checks: ValueError, TypeError, ...
            raise SweepError(f"{type(err).__name__}: {_root_cause(err)}") from None


def _root_cause(err: BaseException) -> str:
    """jsonargparse wraps __init__ errors in Union messages; the innermost line says most."""
    text = str(err)
    lines = [ln.strip(" -") for ln in text.splitlines() if ln.strip()]
    inner = [ln for ln in lines if not ln.startswith(("Does not validate", "Subtypes", "Errors",
                                                        "Given value", "Expected a <class 'NoneType'>"))]  # fmt: skip
    return "; ".join(inner) or text


def validate_sweep(
    sweep: SweepFile,
    trials: list[dict[str, Any]],
    checker: TrialChecker | None = None,
    extra_args: Sequence[str] = (),
) -> None:
    """Check every planned trial (and each distribution's bounds) before anything runs.

    A failure names the parameter(s) that cause it: each parameter is tried alone on the
    file's command; if none fails alone the combination is named.
    """
    checker = checker or TrialChecker()
    extra = list(extra_args)
    base = cli_args(expand_command(sweep, {}) + extra, str(sweep.path))
    try:
        checker.check(base)
    except SweepError as err:
        raise SweepError(
            f"{sweep.path}: the command itself is rejected by the CLI:\n{err}"
        ) from None
    candidates: list[dict[str, Any]] = []
    for p in sweep.params:  # bounds of distributions / every listed value, one at a time
        candidates += [{**trials[0], p.name: v} for v in p.extremes()] if trials else []
    candidates += trials
    seen: set[str] = set()
    for params in candidates:
        key = json.dumps(params, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        try:
            checker.check(cli_args(expand_command(sweep, params) + extra, str(sweep.path)))
        except SweepError as err:
            raise SweepError(_blame(sweep, params, err, checker, extra)) from None


def _blame(
    sweep: SweepFile,
    params: dict[str, Any],
    err: SweepError,
    checker: TrialChecker,
    extra: list[str],
) -> str:
    guilty = []
    for name, value in params.items():
        try:
            checker.check(cli_args(expand_command(sweep, {name: value}) + extra, str(sweep.path)))
        except SweepError:
            guilty.append(f"{name}={value!r}")
    what = (
        f"parameter {', '.join(guilty)}"
        if guilty
        else "the combination " + ", ".join(f"{k}={v!r}" for k, v in params.items())
    )
    return f"{sweep.path}: {what} is rejected by the CLI (no trial was started):\n{err}"


# ------------------------------------------------------------------------ running
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


def run_trials(
    sweep: SweepFile,
    trials: list[dict[str, Any]],
    out_dir: Path,
    logger: str = "csv",
    online: bool = False,
    extra_args: Sequence[str] = (),
    timeout: float | None = None,
) -> Iterator[TrialResult]:
    """Run the trials one after another; a failing trial is recorded and the next one runs."""
    name = sweep.name or sweep.path.stem
    for index, params in enumerate(trials):
        trial_name = f"trial-{index:03d}"
        run_dir = out_dir / trial_name
        run_dir.mkdir(parents=True, exist_ok=True)
        command = expand_command(sweep, params, json_file=run_dir / "params.json")
        command += list(extra_args) + logger_args(logger, run_dir, name, trial_name, online)
        start = time.perf_counter()
        with (run_dir / "stdout.log").open("w") as log:
            try:
                proc = subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
                )
                code = proc.returncode
            except subprocess.TimeoutExpired:
                log.write(f"\n[sweep] trial killed after the {timeout} s timeout\n")
                code = -9
        result = TrialResult(
            index=index, params=params, status="finished" if code == 0 else "failed",
            returncode=code, run_dir=str(run_dir), seconds=round(time.perf_counter() - start, 2),
            metrics=read_final_metrics(run_dir), command=command,
        )  # fmt: skip
        (run_dir / "trial.json").write_text(json.dumps(asdict(result), indent=2, default=str))
        yield result


def _parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl sweep",
        description="Run a W&B sweep file locally, trial after trial (no W&B server needed). "
        "Arguments after `--` are appended to every trial's command.",
    )
    p.add_argument("file", help="W&B sweep YAML (experiments/sweeps/*.yaml)")
    p.add_argument(
        "--method",
        choices=["grid", "random"],
        help="override the file's method (bayes runs as random)",
    )
    p.add_argument(
        "--count",
        type=int,
        help="number of trials (random: required unless run_cap; grid: the first N)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws (default 0)")
    p.add_argument("--out", default=None, help="output directory (default runs/sweeps/<name>)")
    p.add_argument("--logger", choices=["csv", "wandb", "none"], default="csv",
                   help="csv: metrics.csv per trial; wandb: also a W&B run (offline unless --online)")  # fmt: skip
    p.add_argument(
        "--online", action="store_true", help="with --logger wandb: sync to the W&B server"
    )
    p.add_argument(
        "--timeout", type=float, default=None, help="seconds after which a trial is killed (failed)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="validate and print the trial commands, run nothing"
    )
    p.add_argument(
        "--no-validate", action="store_true", help="skip the checks before the first trial"
    )
    if "--" in argv:
        cut = argv.index("--")
        ns = p.parse_args(argv[:cut])
        ns.extra = argv[cut + 1 :]
    else:
        ns = p.parse_args(argv)
        ns.extra = []
    return ns


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m fastast_pl sweep`; exit code 0 when every trial finished."""
    args = _parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        sweep = load_sweep(args.file)
        if args.method:
            sweep.method = args.method
        if sweep.method == "bayes":
            print("[sweep] method 'bayes' needs the W&B server; running random trials locally")
            sweep.method = "random"
        trials = plan_trials(sweep, args.count, args.seed)
        if not args.no_validate:
            validate_sweep(sweep, trials, extra_args=args.extra)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = sweep.name or sweep.path.stem
    out_dir = Path(args.out or Path("runs") / "sweeps" / name)
    print(f"[sweep] {name}: {len(trials)} {sweep.method} trials -> {out_dir}")
    if args.dry_run:
        for i, params in enumerate(trials):
            print(f"trial-{i:03d}: {shlex.join(expand_command(sweep, params) + args.extra)}")
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[TrialResult] = []
    for result in run_trials(
        sweep, trials, out_dir, args.logger, args.online, args.extra, args.timeout
    ):
        results.append(result)
        shown = {k: round(v, 4) for k, v in result.metrics.items() if re.match(r"(val|test)/", k)}
        print(
            f"[sweep] trial-{result.index:03d} {result.status} ({result.seconds} s) {result.params} {shown}"
        )
        (out_dir / "sweep.json").write_text(
            json.dumps(
                {
                    "file": str(sweep.path),
                    "method": sweep.method,
                    "metric": sweep.metric,
                    "trials": [asdict(r) for r in results],
                },
                indent=2,
                default=str,
            )  # fmt: skip
        )
    failed = [r.index for r in results if r.status != "finished"]
    print(
        f"[sweep] done: {len(results) - len(failed)} finished, {len(failed)} failed {failed or ''}"
    )
    return 1 if failed else 0
