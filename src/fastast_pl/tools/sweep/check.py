"""Pre-flight checks: every planned trial parsed by the CLI and its model built, before any runs.

Each trial's command line is parsed by the fastast-pl CLI's own parser (an unknown key or a
wrongly typed value fails there) and its LightningModule is built on the meta device (no
memory, no compute), which runs the modules' own range checks (merge ratios in [0, 0.5),
...). A rejected sweep names the parameter and the value; no trial has started.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastast_pl.tools.sweep import budget
from fastast_pl.tools.sweep.spec import SweepError, SweepFile, cli_args, expand_command
from fastast_pl.tools.sweep.trial import TrialParser


class TrialChecker(TrialParser):
    """A ``TrialParser`` that checks whole trials, FLOP-budget trials resolved first."""

    def check(self, argv: list[str]) -> None:
        """Raise SweepError if the CLI rejects `argv` or its model's __init__ does."""
        argv = budget.resolve(argv, self)  # a FLOP-budget trial: its schedule, then the CLI
        config = self.parse(argv)
        if not self.build_models:
            return
        try:
            self.build_model(config)
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
