"""Trials of a sweep file from Optuna: the W&B search space translated, W&B's methods as samplers.

W&B's own sweep engine (the ``sweeps`` package) is not a dependency of the locked stack, so
the local runner asks Optuna (a kept, tested search library) instead: ``grid`` ->
``GridSampler`` (its points queued in W&B's order), ``random`` -> ``RandomSampler``, ``bayes`` -> ``TPESampler`` (a model-based
search like W&B's Bayesian one: after ``startup_trials`` random trials each new trial is
proposed from the results told so far). Optuna's study is driven with ask-and-tell, so a
trial runs as a subprocess and its final metric (the file's ``metric.name``) is told back.

Translation of the W&B distributions (the W&B value is what reaches the command line):
``values`` -> categorical over the value indices (values may be dicts or lists);
``int_uniform`` -> IntDistribution; ``uniform`` -> FloatDistribution; ``log_uniform_values``
-> FloatDistribution(log=True); ``log_uniform`` (natural-log bounds) -> the same on
``exp(min)..exp(max)``; ``q_uniform`` -> IntDistribution over ``k`` in
``round(min/q)..round(max/q)``, value ``k * q``; ``q_log_uniform_values`` -> log-uniform,
then rounded to a multiple of ``q``. Categorical ``probabilities`` cannot be expressed in
Optuna and are refused by name.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from fastast_pl.tools.sweep.spec import Param, SweepError, SweepFile, check_method

optuna.logging.set_verbosity(optuna.logging.WARNING)


def distribution(param: Param, where: str) -> BaseDistribution:
    """The Optuna distribution whose samples `to_value` turns into this W&B parameter."""
    if param.values is not None:
        if param.probabilities:
            raise SweepError(
                f"{where}: parameters.{param.name}.probabilities: the local engine (Optuna) "
                "samples categorical values uniformly; drop 'probabilities' or run the file "
                "under `wandb agent`"
            )
        return CategoricalDistribution(list(range(len(param.values))))
    lo, hi, dist = float(param.min), float(param.max), param.distribution  # type: ignore[arg-type]
    if dist == "int_uniform":
        return IntDistribution(int(lo), int(hi))
    if dist == "uniform":
        return FloatDistribution(lo, hi)
    if dist in ("log_uniform_values", "q_log_uniform_values"):
        return FloatDistribution(lo, hi, log=True)
    if dist == "log_uniform":
        return FloatDistribution(math.exp(lo), math.exp(hi), log=True)
    if dist == "q_uniform":
        q = float(param.q)  # type: ignore[arg-type]
        return IntDistribution(round(lo / q), round(hi / q))
    raise SweepError(f"{where}: parameters.{param.name}: distribution {dist!r} is not supported")


def _round_to(value: float, q: float) -> float | int:
    out = round(value / q) * q
    return int(out) if float(q).is_integer() else round(out, 12)  # 0.1 * 3 -> 0.3, not 0.30...04


def to_value(param: Param, sampled: Any) -> Any:
    """The W&B value of an Optuna sample (an index for `values`, k for q_uniform)."""
    if param.values is not None:
        return param.values[sampled]
    if param.distribution == "q_uniform":
        return _round_to(sampled * float(param.q), float(param.q))  # type: ignore[arg-type]
    if param.distribution == "q_log_uniform_values":
        return _round_to(sampled, float(param.q))  # type: ignore[arg-type]
    return sampled


def _sampler(sweep: SweepFile, seed: int, startup_trials: int) -> optuna.samplers.BaseSampler:
    if sweep.method == "grid":
        space = {p.name: list(range(len(p.values))) for p in sweep.params}  # type: ignore[arg-type]
        return optuna.samplers.GridSampler(space, seed=seed)
    if sweep.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials)


@dataclass
class PlannedTrial:
    """One trial Optuna proposed: its W&B parameter values, and the handle to tell back."""

    number: int
    params: dict[str, Any]
    handle: optuna.Trial


class SweepPlanner:
    """An Optuna study over the sweep file's search space; `ask` a trial, `tell` its result.

    Args:
        sweep: the parsed sweep file.
        seed: seed of the sampler (same seed, same trials for grid and random).
        startup_trials: bayes only: random trials before TPE models the results.
    """

    def __init__(self, sweep: SweepFile, seed: int = 0, startup_trials: int = 10) -> None:
        self.sweep = sweep
        where = str(sweep.path)
        check_method(sweep.path, sweep.method, sweep.params)
        self.distributions = {p.name: distribution(p, where) for p in sweep.params}
        goal = str(sweep.metric.get("goal", "maximize"))
        if goal not in ("maximize", "minimize"):
            raise SweepError(f"{where}: metric.goal={goal!r}; expected 'maximize' or 'minimize'")
        self.metric = sweep.metric.get("name")
        if sweep.method == "bayes" and not self.metric:
            raise SweepError(f"{where}: method 'bayes' needs metric.name (what to optimise)")
        self.study = optuna.create_study(
            direction=goal, sampler=_sampler(sweep, seed, startup_trials)
        )
        if sweep.method == "grid":  # W&B's grid order: the product, last parameter fastest
            sizes = [range(len(p.values)) for p in sweep.params]  # type: ignore[arg-type]
            for combo in itertools.product(*sizes):
                self.study.enqueue_trial(dict(zip(self.distributions, combo)))

    @property
    def grid_size(self) -> int:
        return math.prod(len(p.values) for p in self.sweep.params)  # type: ignore[arg-type]

    def count(self, count: int | None) -> int:
        """How many trials to run: the grid (cut at `count`), else `count` or ``run_cap``."""
        if self.sweep.method == "grid":
            return min(count, self.grid_size) if count else self.grid_size
        n = count or self.sweep.run_cap
        if not n:
            raise SweepError(
                f"{self.sweep.path}: method {self.sweep.method!r} needs --count (or run_cap in the file)"
            )
        return int(n)

    def ask(self) -> PlannedTrial:
        handle = self.study.ask(self.distributions)
        params = {p.name: to_value(p, handle.params[p.name]) for p in self.sweep.params}
        return PlannedTrial(handle.number, params, handle)

    def tell(self, trial: PlannedTrial, metrics: dict[str, float] | None) -> None:
        """The trial's final metric to the sampler; a failed trial (None) or one without
        the metric is told as failed, so the model-based sampler learns nothing from it."""
        value = (metrics or {}).get(self.metric) if self.metric else None
        if value is None or not math.isfinite(value):
            self.study.tell(trial.handle, state=TrialState.FAIL)
        else:
            self.study.tell(trial.handle, value)


def plan_trials(sweep: SweepFile, count: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """The parameter sets of a grid or random sweep, all at once (they do not depend on
    results). For bayes: its first proposals before any result is told (what TPE samples
    while starting up); a real bayes sweep tells each result to `SweepPlanner` first."""
    planner = SweepPlanner(sweep, seed)
    return [planner.ask().params for _ in range(planner.count(count))]
