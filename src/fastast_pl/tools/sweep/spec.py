"""A W&B sweep file: parsed, structurally checked, and its trial command expanded as the agent does.

The same file runs under a W&B server (``wandb sweep FILE`` + ``wandb agent``) and under the
local runner (``python -m fastast_pl sweep FILE``). Errors name the file, key and value.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SWEEP_KEYS = {
    "program", "method", "metric", "parameters", "command", "name", "description",
    "early_terminate", "run_cap", "project", "entity",
}  # fmt: skip
METHODS = ("grid", "random", "bayes")
# W&B's distributions (docs: "Sweep configuration options"); the ones below are run
# locally, every other name is refused by name in `_param`.
DISTRIBUTIONS = (
    "constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
    "log_uniform_values", "q_log_uniform_values",
)  # fmt: skip
REFUSED = (
    "q_log_uniform", "inv_log_uniform", "inv_log_uniform_values", "normal", "q_normal",
    "log_normal", "q_log_normal", "beta", "q_beta",
)  # fmt: skip
MACROS = ("env", "interpreter", "program", "args", "args_no_boolean_flags", "args_json_file")
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]  # W&B's default
# Programs a trial command may run: the CLI itself, or the FLOP-budget front end.
CLI_MODULES = ("fastast_pl", "fastast_pl.cli", "fastast_pl.tools.sweep.budget")


class SweepError(ValueError):
    """A sweep file that cannot run; the message names the file, key and value."""


@dataclass
class Param:
    """One swept parameter: fixed values (grid-able) or a W&B distribution (random, bayes)."""

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

    def extremes(self) -> list[Any]:
        """Values that bound what this parameter can take (checked before the first trial)."""
        if self.values is not None:
            return list(self.values)
        if self.distribution == "int_uniform":
            return [int(self.min), int(self.max)]  # type: ignore[arg-type]
        if self.distribution == "log_uniform":  # min/max are natural-log bounds
            return [math.exp(self.min), math.exp(self.max)]  # type: ignore[arg-type]
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
    known = {"value", "values", "probabilities", "distribution", "min", "max", "q", "mu", "sigma",
             "a", "b"}  # fmt: skip
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
    if dist in REFUSED:
        raise SweepError(
            f"{where}.distribution={dist!r} is a W&B distribution the local engine does not "
            f"run; supported here are {[d for d in DISTRIBUTIONS if d not in ('constant', 'categorical')]}"
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
    if dist in ("log_uniform_values", "q_log_uniform_values") and lo <= 0:
        raise SweepError(f"{where}: {dist} needs min > 0, got min={lo!r}")
    q = spec.get("q", 1.0 if dist.startswith("q_") else None)  # W&B's default q is 1
    if q is not None and not (isinstance(q, (int, float)) and q > 0):
        raise SweepError(f"{where}.q: expected a number > 0, got {q!r}")
    return Param(name, distribution=dist, min=lo, max=hi, q=q)


def check_method(path: Path, method: str, params: Sequence[Param]) -> None:
    """A grid needs fixed values for every parameter (also after ``--method grid``)."""
    if method not in METHODS:
        raise SweepError(f"{path}: method={method!r}; expected one of {list(METHODS)}")
    for p in params:
        if method == "grid" and not p.is_grid:
            raise SweepError(
                f"{path}: parameters.{p.name}: method 'grid' needs 'values' or 'value', "
                "got a distribution"
            )


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
    check_method(path, method, [])
    raw = doc.get("parameters")
    if not isinstance(raw, dict) or not raw:
        raise SweepError(f"{path}: 'parameters' must be a non-empty mapping")
    params = [_param(path, str(name), spec) for name, spec in raw.items()]
    check_method(path, method, params)
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
    """The arguments after ``-m fastast_pl`` (or the ``fastast-pl`` script, or the FLOP
    budget front end ``-m fastast_pl.tools.sweep.budget``) in a command."""
    cmd = list(command)
    for i, c in enumerate(cmd):
        if c == "-m" and i + 1 < len(cmd) and cmd[i + 1] in CLI_MODULES:
            return cmd[i + 2 :]
        if Path(c).name == "fastast-pl":
            return cmd[i + 1 :]
    raise SweepError(
        f"{where}: 'command' must run `python -m fastast_pl <subcommand> ...`, got {shlex.join(cmd)}"
    )
