"""Pre-flight checks: the sweep's command and every value a parameter can take, through the CLI.

Each command line is parsed by the fastast-pl CLI's own parser (an unknown key or a wrongly
typed value fails there) and its LightningModule is built on the meta device (no memory, no
compute), which runs the modules' own range checks (merge ratios in [0, 0.5), ...). Before
the first trial every listed value and both bounds of every distribution are tried, one
parameter at a time; each trial Optuna proposes is tried again just before it runs. A
rejection names the parameter and the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna

from fastast_pl.tools.sweep import budget
from fastast_pl.tools.sweep.spec import SweepError, SweepFile, cli_args, expand_command
from fastast_pl.tools.sweep.trial import TrialParser


class TrialChecker(TrialParser):
    """A ``TrialParser`` that checks whole trials, FLOP-budget trials resolved first."""

    def check(self, argv: list[str]) -> None:
        """Raise SweepError if the CLI rejects `argv` or its model's __init__ does."""
        config = self.parse(budget.resolve(argv, self))
        if not self.build_models:
            return
        try:
            self.build_model(config)
        except Exception as err:  # the module's own checks: ValueError, TypeError, ...
            raise SweepError(f"{type(err).__name__}: {_root_cause(err)}") from None

    def trial_error(
        self, sweep: SweepFile, params: dict[str, Any], extra: Sequence[str] = ()
    ) -> str | None:
        """None if the CLI accepts the trial with `params`, else its message."""
        try:
            self.check(cli_args(expand_command(sweep, params) + list(extra), str(sweep.path)))
        except SweepError as err:
            return str(err)
        return None


def _random_trial() -> optuna.Trial:
    return optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()


def _root_cause(err: BaseException) -> str:
    """jsonargparse wraps __init__ errors in Union messages; the innermost line says most."""
    skip = (
        "Does not validate",
        "Subtypes",
        "Errors",
        "Given value",
        "Expected a <class 'NoneType'>",
    )
    lines = [ln.strip(" -") for ln in str(err).splitlines() if ln.strip()]
    return "; ".join(ln for ln in lines if not ln.startswith(skip)) or str(err)


def validate_sweep(
    sweep: SweepFile, checker: TrialChecker | None = None, extra_args: Sequence[str] = ()
) -> None:
    """Raise SweepError, before any trial, if the CLI rejects the file's command, one value a
    parameter can take (alone on the command, so the message names it), or one random
    combination of all parameters."""
    checker = checker or TrialChecker()
    why = checker.trial_error(sweep, {}, extra_args)
    if why is not None:
        raise SweepError(f"{sweep.path}: the command itself is rejected by the CLI:\n{why}")
    combination = sweep.suggest(_random_trial())
    for what, params in [
        *((f"parameter {p.name}={v!r}", {p.name: v}) for p in sweep.params for v in p.extremes()),
        (f"the combination {combination}", combination),
    ]:
        why = checker.trial_error(sweep, params, extra_args)
        if why is not None:
            raise SweepError(
                f"{sweep.path}: {what} is rejected by the CLI (no trial was started):\n{why}"
            )
