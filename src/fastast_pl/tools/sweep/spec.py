"""A W&B sweep file for the local engine: its parameters as Optuna distributions, its command
expanded by the W&B agent's own functions.

The same file runs under a W&B server (``wandb sweep FILE`` + ``wandb agent``) and locally
(``python -m fastast_pl sweep FILE``, Optuna). Trial commands are built with
``wandb.sdk.launch.sweeps.utils`` (``create_sweep_command``, ``create_sweep_command_args``),
the code ``wandb agent`` runs, so a local trial gets the agent's exact ``--key=value`` text.
That module is internal to wandb (W&B documents the macros, not a function for them), so
pyproject.toml bounds wandb to the tested line and an import failure names it.
What is ours is the one table from W&B's parameter grammar to Optuna's distributions
(W&B "Sweep configuration options"; the W&B value is what reaches the command line):
``values`` -> categorical over the value indices (values may be dicts or lists);
``int_uniform`` -> IntDistribution; ``uniform`` -> FloatDistribution; ``log_uniform_values``
-> FloatDistribution(log=True); ``log_uniform`` (natural-log bounds) -> the same on
``exp(min)..exp(max)``; ``q_uniform`` -> IntDistribution over ``k``, value ``k * q``;
``q_log_uniform_values`` -> log-uniform rounded to a multiple of ``q``. Other distributions
and categorical ``probabilities`` have no Optuna form and are refused by name.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

try:  # wandb's internal module (no public API builds agent commands): pinned in pyproject.toml
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args
except ImportError as err:
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = f"wandb {version('wandb')}"
    except PackageNotFoundError:
        found = "this environment (no wandb installed)"
    raise ImportError(
        f"local sweeps build trial commands with wandb.sdk.launch.sweeps.utils (the functions "
        f"`wandb agent` runs), which {found} does not have ({err}); install "
        "the wandb line pyproject.toml names (wandb>=0.19,<0.32; the lock's 0.31 is tested)"
    ) from err

SWEEP_KEYS = set(
    "program method metric parameters command name description early_terminate run_cap "
    "project entity".split()
)
METHODS = ("grid", "random", "bayes")
SUPPORTED = (
    "int_uniform uniform q_uniform log_uniform log_uniform_values q_log_uniform_values".split()
)
PARAM_KEYS = set("value values probabilities distribution min max q mu sigma a b".split())
# The macros `wandb agent` fills in (wandb_agent.py `_command_run`); args_dict is no list.
MACROS = {
    *create_sweep_command_args({"args": {}}),
    "env",
    "interpreter",
    "program",
    "args_json_file",
} - {"args_dict"}
PASSES_FLAGS = ("${args}", "${args_no_equals}", "${args_no_boolean_flags}")
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]  # W&B's default
# Programs a trial command may run: the CLI itself, or the FLOP-budget front end.
CLI_MODULES = ("fastast_pl", "fastast_pl.cli", "fastast_pl.tools.sweep.budget")


class SweepError(ValueError):
    """A sweep file that cannot run; the message names the file, key and value."""


@dataclass
class Param:
    """One swept parameter: its Optuna distribution and how a sample becomes the W&B value."""

    name: str
    distribution: BaseDistribution
    values: list[Any] | None = None  # categorical: the values, sampled by index
    q: float | None = None  # q_ distributions: round to a multiple of q

    def value(self, sampled: Any) -> Any:
        """The W&B value of an Optuna sample (an index for `values`, k for q_uniform)."""
        if self.values is not None:
            return self.values[sampled]
        if self.q is None:
            return sampled
        if isinstance(self.distribution, IntDistribution):  # q_uniform: k -> k * q
            sampled = sampled * self.q
        out = round(sampled / self.q) * self.q
        return int(out) if float(self.q).is_integer() else round(out, 12)  # 0.1 * 3 -> 0.3

    def suggest(self, trial: optuna.Trial) -> Any:
        """The W&B value of this parameter in an Optuna trial (sampled by its sampler)."""
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return self.value(trial.suggest_categorical(self.name, d.choices))
        if isinstance(d, IntDistribution):
            return self.value(trial.suggest_int(self.name, d.low, d.high))
        return self.value(trial.suggest_float(self.name, d.low, d.high, log=d.log))  # type: ignore[attr-defined]

    def extremes(self) -> list[Any]:
        """Every listed value, or both bounds: what the checks try before the first trial."""
        if self.values is not None:
            return list(self.values)
        d = self.distribution
        return [self.value(d.low), self.value(d.high)]  # type: ignore[attr-defined]


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
    early_terminate: dict[str, Any] | None = None

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The W&B values of every parameter in an Optuna trial."""
        return {p.name: p.suggest(trial) for p in self.params}


def _param(where: str, name: str, spec: Any) -> Param:
    where = f"{where}: parameters.{name}"
    if not isinstance(spec, dict) or "parameters" in spec:
        raise SweepError(
            f"{where}: expected a mapping with 'values', 'value' or 'distribution' "
            f"(nested 'parameters': name the full key, e.g. '{name}.ratio'), got {spec!r}"
        )
    unknown = sorted(set(spec) - PARAM_KEYS)
    if unknown:
        raise SweepError(f"{where}: unknown keys {unknown}")
    values = [spec["value"]] if "value" in spec else spec.get("values")
    if "value" in spec or "values" in spec:
        if not isinstance(values, list) or not values:
            raise SweepError(f"{where}.values: expected a non-empty list, got {values!r}")
        if any(v is None for v in values):
            raise SweepError(
                f"{where}.values: null is not passable on a command line (the W&B "
                "agent writes it as the string 'None'); use an explicit value such as {} or 0"
            )
        if spec.get("probabilities") is not None:
            raise SweepError(
                f"{where}.probabilities: the local engine (Optuna) samples values "
                "uniformly; drop 'probabilities' or run the file under `wandb agent`"
            )
        return Param(name, CategoricalDistribution(list(range(len(values)))), values=values)
    lo, hi, dist = spec.get("min"), spec.get("max"), spec.get("distribution")
    if dist is not None and dist not in SUPPORTED:
        raise SweepError(
            f"{where}.distribution={dist!r} is a W&B distribution the local engine "
            f"(Optuna) does not run; supported here are {SUPPORTED}"
        )
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
        raise SweepError(
            f"{where}: expected 'value', 'values' or numbers 'min' and 'max', "
            f"got min={lo!r}, max={hi!r}"
        )
    # W&B infers the distribution from the bounds' types when none is named.
    dist = dist or ("int_uniform" if isinstance(lo + hi, int) else "uniform")
    q = float(spec.get("q", 1.0)) if dist.startswith("q_") else None  # W&B's default q is 1
    try:
        if q is not None and not q > 0:
            raise ValueError("q must be > 0")
        if dist == "int_uniform":
            return Param(name, IntDistribution(int(lo), int(hi)))
        if dist == "q_uniform":
            return Param(name, IntDistribution(round(lo / q), round(hi / q)), q=q)
        if dist == "log_uniform":
            lo, hi = math.exp(lo), math.exp(hi)
        return Param(name, FloatDistribution(lo, hi, log=dist != "uniform"), q=q)
    except (ValueError, ZeroDivisionError) as err:  # Optuna's own bound checks
        raise SweepError(f"{where}: {err} (min={lo!r}, max={hi!r}, q={q!r})") from None


def load_sweep(path: str | os.PathLike, method: str | None = None) -> SweepFile:
    """Read and structurally check a W&B sweep file (`method` overrides the file's)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SweepError(f"sweep file {path}: cannot be read as YAML: {err}") from err
    if not isinstance(doc, dict):
        raise SweepError(f"{path}: expected a mapping at the top level, got {type(doc).__name__}")
    unknown = sorted(set(doc) - SWEEP_KEYS)
    if unknown:
        raise SweepError(
            f"{path}: unknown top-level keys {unknown}; expected some of {sorted(SWEEP_KEYS)}"
        )
    method = method or doc.get("method")
    if method not in METHODS:
        raise SweepError(f"{path}: method={method!r}; expected one of {list(METHODS)}")
    raw = doc.get("parameters")
    if not isinstance(raw, dict) or not raw:
        raise SweepError(f"{path}: 'parameters' must be a non-empty mapping")
    params = [_param(str(path), str(name), spec) for name, spec in raw.items()]
    for p in params:
        if method == "grid" and p.values is None:
            raise SweepError(
                f"{path}: parameters.{p.name}: method 'grid' needs 'values' or "
                "'value', got a distribution"
            )
    command = [str(c) for c in doc.get("command", DEFAULT_COMMAND)]
    bad = [c for c in command if c.startswith("${") and c.endswith("}") and c[2:-1] not in MACROS]
    if bad or (doc.get("program") is None and "${program}" in command):
        raise SweepError(
            f"{path}: command macros {bad or ['${program}']} cannot be filled in; "
            f"`wandb agent` knows {sorted(MACROS)} (and ${{program}} needs 'program')"
        )
    if not any(c in PASSES_FLAGS for c in command):
        raise SweepError(
            f"{path}: 'command' {command} never passes the parameters as flags; add ${{args}}"
        )
    return SweepFile(
        path,
        method,
        params,
        command,
        doc.get("program"),
        doc.get("metric") or {},
        doc.get("name"),
        doc.get("run_cap"),
        doc.get("early_terminate"),
    )


def expand_command(
    sweep: SweepFile, params: dict[str, Any], json_file: Path | None = None
) -> list[str]:
    """The trial's command line as ``wandb agent`` builds it, ``python`` -> this Python and
    ``${env}`` dropped (the environment is inherited anyway)."""
    sweep_vars = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    sweep_vars |= {
        "env": [],
        "interpreter": [sys.executable],
        "program": [str(sweep.program)],
        "args_json_file": [str(json_file)],
    }
    command = create_sweep_command(list(sweep.command))  # fills in ${envvar:NAME}
    if json_file is not None and "${args_json_file}" in command:
        json_file.write_text(sweep_vars["args_json"][0])
    out: list[str] = []
    for c in command:
        if c.startswith("${") and c.endswith("}"):
            out += sweep_vars[c[2:-1]]
        else:
            out.append(sys.executable if c in ("python", "python3") else c)
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
