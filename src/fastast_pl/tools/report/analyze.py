"""Runs -> report rows: the unmerged baseline, speed-ups, the Pareto front and the best schedule.

Two speed-ups per run: the analytic FLOP ratio its merge schedule gives (``<stage>/flop_ratio``,
logged by ``trainer.merge_stats``; the same on every machine) and the measured throughput
divided by that of the unmerged run of the same model (same ``<stage>/gflops_unmerged``).
Without an unmerged run the measured speed-up is unknown and only the FLOP ratio is used;
"the slowest run" is never taken as the baseline (on a busy machine it can be any run).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastast_pl.tools.report.read import Run, model_args

ACC_KEYS = ("test/acc", "test/mAP", "val/acc", "val/mAP")
SPEED_KEYS = ("test/throughput", "val/throughput")
AXES = ("flops", "throughput")


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
    """Indices of the points (speed, accuracy) no other point beats on both axes."""
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


def _all_zero(spec: Any) -> bool:
    """Whether a merge spec (int, list, schedule dict) merges nothing: every number is 0."""
    if isinstance(spec, bool) or spec is None:
        return spec is None
    if isinstance(spec, (int, float)):
        return spec == 0
    if isinstance(spec, Mapping):
        return all(_all_zero(v) for k, v in spec.items() if k != "shape")
    if isinstance(spec, (list, tuple)):
        return all(_all_zero(v) for v in spec)
    return False


def _spec_from_params(params: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """Dotted sweep keys ``model.init_args.<name>.a.b`` -> {"a": {"b": ...}} (None: absent)."""
    prefix = f"model.init_args.{name}"
    found = {k[len(prefix) :].lstrip("."): v for k, v in params.items() if k.startswith(prefix)}
    if not found:
        return None
    return {"": found[""]} if "" in found else found


def is_unmerged(run: Run, stage: str) -> bool | None:
    """Whether the run evaluated without merging (None: the run does not say)."""
    ratio = run.metrics.get(f"{stage}/flop_ratio")
    if ratio is not None:
        return math.isclose(ratio, 1.0, rel_tol=0, abs_tol=1e-9)
    r = run.config.get("merge/eval/r")
    if isinstance(r, list):
        return not any(r)
    model = model_args(run.config)
    if "merge" in model or "eval_merge" in model:
        spec = model.get("eval_merge")
        return _all_zero(model.get("merge") if spec is None else spec)
    spec = _spec_from_params(run.params, "eval_merge") or _spec_from_params(run.params, "merge")
    return None if spec is None else _all_zero(spec)


@dataclass
class Report:
    """The table rows and the summary the CLI prints and writes."""

    acc_key: str
    speed_key: str | None
    axis: str  # "flops" or "throughput": the speed-up the front and `best` use
    baseline: str | None
    baseline_speed: float | None
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    min_speedup: float | None


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def _baselines(ok: Sequence[Run], stage: str, speed_key: str | None, named: str | None):
    """model key -> baseline run: the named run, else the first unmerged run of each model."""
    if named is not None:
        hits = [r for r in ok if r.name == named]
        if not hits:
            raise ValueError(
                f"report: baseline run {named!r} not among the finished runs {[r.name for r in ok]}"
            )
        return {None: hits[0]}
    out: dict[Any, Run] = {}
    for r in ok:
        if is_unmerged(r, stage) and (speed_key is None or speed_key in r.metrics):
            out.setdefault(r.metrics.get(f"{stage}/gflops_unmerged"), r)
    return out


def build_report(
    runs: Sequence[Run],
    acc_key: str | None = None,
    speed_key: str | None = None,
    baseline: str | None = None,
    min_speedup: float | None = None,
    axis: str | None = None,
) -> Report:
    """Table rows (one per run) with both speed-ups, Pareto flags and the best run at >=
    `min_speedup` on `axis` (default: FLOP ratio when every usable run logged one)."""
    if not runs:
        raise ValueError("report: no runs found")
    acc_key = pick_key(runs, acc_key, ACC_KEYS, "accuracy")
    stage = acc_key.split("/")[0]
    present = {k for r in runs for k in r.metrics}
    if speed_key is None:
        speed_key = next((k for k in SPEED_KEYS if k.startswith(stage) and k in present), None)
    elif speed_key not in present:
        pick_key(runs, speed_key, SPEED_KEYS, "throughput")  # raises, naming what was found
    flop_key = f"{stage}/flop_ratio"
    ok = [r for r in runs if r.status == "finished" and _finite(r.metrics.get(acc_key))]
    bases = _baselines(ok, stage, speed_key, baseline)
    by_model = bases.get(None) if None in bases and len(bases) == 1 else None

    ok_ids = {id(r) for r in ok}
    rows = []
    for r in runs:
        usable = id(r) in ok_ids
        base = by_model or bases.get(r.metrics.get(f"{stage}/gflops_unmerged"))
        speed = r.metrics.get(speed_key) if speed_key else None
        base_speed = base.metrics.get(speed_key) if base is not None and speed_key else None
        speedup = speed / base_speed if usable and speed and base_speed else None
        rows.append({
            "run": r.name,
            "status": r.status if usable or r.status != "finished" else "no metrics",
            "schedule": r.schedule,
            acc_key: r.metrics.get(acc_key),
            "flop_ratio": r.metrics.get(flop_key),
            speed_key or "throughput": speed,
            "speedup": speedup,
            "baseline": base.name if base is not None else None,
            "pareto": False,
            "source": r.source,
        })  # fmt: skip
    usable_rows = [row for row, r in zip(rows, runs) if id(r) in ok_ids]
    if axis is None:
        has_flops = usable_rows and all(_finite(row["flop_ratio"]) for row in usable_rows)
        axis = "flops" if has_flops else "throughput"
    if axis not in AXES:
        raise ValueError(f"report: speed-up axis {axis!r}; expected one of {list(AXES)}")
    x_key = "flop_ratio" if axis == "flops" else "speedup"
    on_axis = [row for row in usable_rows if _finite(row[x_key])]
    for i in pareto_front([(row[x_key], row[acc_key]) for row in on_axis]):
        on_axis[i]["pareto"] = True
    best = None
    if min_speedup is not None:
        eligible = [row for row in on_axis if row[x_key] >= min_speedup]
        best = max(eligible, key=lambda row: row[acc_key]) if eligible else None
    first = by_model or next(iter(bases.values()), None)
    base_speed = first.metrics.get(speed_key) if first is not None and speed_key else None
    return Report(
        acc_key, speed_key, axis, first.name if first is not None else None,
        base_speed, rows, best, min_speedup,
    )  # fmt: skip
