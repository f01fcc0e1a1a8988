"""Runs -> report rows: measured speed per schedule, the Pareto front, the best schedule, groups.

Two speed-ups per run: the analytic FLOP ratio its merge schedule gives (``<stage>/flop_ratio``,
logged by ``trainer.merge_stats``; the same on every machine) and the measured speed-up of
that schedule. Speed depends on the schedule, the architecture and the input size, not on
the weights: ``measure_runs`` times each distinct schedule of the runs once with the one
timing engine (``fastast_pl.speed``), interleaved with r=0 of the same architecture, so runs
with the same schedule share one measurement. A measured speed-up whose range over the
timing rounds reaches 1.0 is not called a speed-up.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastast_pl.speed.schedules import ScheduleSpeed, TimingSettings, build_model, time_schedules
from fastast_pl.tools.report.read import Run, describe_params

ACC_KEYS = ("test/acc", "test/mAP", "val/acc", "val/mAP")
AXES = ("flops", "measured")
#: Swept or configured keys that only repeat a run (a seed, a fold), grouped over.
REPEAT_KEYS = ("seed", "fold")


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


def run_schedule(run: Run) -> tuple[dict[str, Any], list[int]] | None:
    """(model spec, evaluation r per layer) a run logged (``trainer.merge_stats``), or None."""
    spec, r = run.config.get("merge/model"), run.config.get("merge/eval/r")
    if isinstance(spec, dict) and isinstance(r, list) and all(isinstance(v, int) for v in r):
        return spec, r
    return None


def measure_runs(runs: Sequence[Run], settings: TimingSettings) -> dict[int, ScheduleSpeed]:
    """``id(run) -> speed`` of every run that logged its schedule: one random-weight model per
    architecture, each distinct schedule timed once, interleaved with its r=0."""
    groups: dict[str, list[tuple[Run, list[int]]]] = {}
    for run in runs:
        found = run_schedule(run)
        if found is not None:
            groups.setdefault(json.dumps(found[0], sort_keys=True), []).append((run, found[1]))
    out: dict[int, ScheduleSpeed] = {}
    for key, members in groups.items():
        model = build_model(json.loads(key))
        speeds = time_schedules(model, [r for _, r in members], settings)
        out.update({id(run): speed for (run, _), speed in zip(members, speeds)})
    return out


@dataclass
class Report:
    """The table rows and the summary the CLI prints and writes."""

    acc_key: str
    axis: str  # "flops" or "measured": the speed-up the front and `best` use
    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    min_speedup: float | None
    timing: str | None = None  # what was timed, or None when nothing was
    groups: list[dict[str, Any]] = field(default_factory=list)


def _finite(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def axis_speedup(row: dict[str, Any], axis: str) -> float | None:
    """The speed-up of a row on `axis`; a measured one whose range reaches 1.0 counts as 1.0."""
    if axis == "flops":
        return row["flop_ratio"]
    if row["speedup"] is None:
        return None
    return row["speedup"] if row["speedup_min"] > 1.0 else 1.0


def _row(run: Run, usable: bool, acc_key: str, stage: str, speed: ScheduleSpeed | None) -> dict:
    ratio = speed.flop_ratio if speed else run.metrics.get(f"{stage}/flop_ratio")
    gmacs = speed.gmacs if speed else run.metrics.get(f"{stage}/gmacs_per_clip")
    return {
        "run": run.name,
        "status": run.status if usable or run.status != "finished" else "no metrics",
        "schedule": run.schedule,
        "r": list(speed.r) if speed else run.config.get("merge/eval/r"),
        acc_key: run.metrics.get(acc_key),
        "flop_ratio": ratio,
        "gmacs": gmacs,
        "clips_per_s": speed.clips_per_s if speed else None,
        "speedup": speed.speedup if speed else None,
        "speedup_min": speed.speedup_min if speed else None,
        "speedup_max": speed.speedup_max if speed else None,
        "pareto": False,
        "source": run.source,
    }


def _repeat_key(run: Run, row: dict[str, Any]) -> str:
    """Runs with equal keys differ only in a seed or fold: their schedule and swept values."""
    params = {k: v for k, v in run.params.items() if not any(w in k for w in REPEAT_KEYS)}
    return json.dumps([describe_params(params) or run.schedule, row["r"]], default=str)


def group_repeats(runs: Sequence[Run], rows: Sequence[dict], acc_key: str) -> list[dict]:
    """Mean, spread and count of the accuracy over runs that differ only in seed or fold."""
    groups: dict[str, list[dict]] = {}
    for run, row in zip(runs, rows):
        if row["status"] == "finished":
            groups.setdefault(_repeat_key(run, row), []).append(row)
    out = []
    for members in groups.values():
        accs = [m[acc_key] for m in members]
        first = members[0]
        out.append({
            "schedule": first["schedule"] or str(first["r"]), "runs": [m["run"] for m in members],
            f"{acc_key} mean": statistics.fmean(accs),
            f"{acc_key} std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            f"{acc_key} min": min(accs), f"{acc_key} max": max(accs),
            "flop_ratio": first["flop_ratio"], "speedup": first["speedup"],
        })  # fmt: skip
    return out


def build_report(
    runs: Sequence[Run],
    acc_key: str | None = None,
    min_speedup: float | None = None,
    axis: str | None = None,
    speeds: dict[int, ScheduleSpeed] | None = None,
    timing: str | None = None,
) -> Report:
    """Table rows (one per run) with both speed-ups, Pareto flags and the best run at >=
    `min_speedup` on `axis` (default: FLOP ratio when every usable run has one); among equally
    accurate runs the faster one is best."""
    if not runs:
        raise ValueError("report: no runs found")
    acc_key = pick_key(runs, acc_key, ACC_KEYS, "accuracy")
    stage = acc_key.split("/")[0]
    speeds = speeds or {}
    rows = []
    for r in runs:
        usable = r.status == "finished" and _finite(r.metrics.get(acc_key))
        rows.append(_row(r, usable, acc_key, stage, speeds.get(id(r))))
    usable_rows = [row for row in rows if row["status"] == "finished"]
    if axis is None:
        has_flops = usable_rows and all(_finite(row["flop_ratio"]) for row in usable_rows)
        axis = "flops" if has_flops else "measured"
    if axis not in AXES:
        raise ValueError(f"report: speed-up axis {axis!r}; expected one of {list(AXES)}")
    on_axis = [row for row in usable_rows if _finite(axis_speedup(row, axis))]
    for i in pareto_front([(axis_speedup(row, axis), row[acc_key]) for row in on_axis]):
        on_axis[i]["pareto"] = True
    best = None
    if min_speedup is not None:
        eligible = [row for row in on_axis if axis_speedup(row, axis) >= min_speedup]
        # ties in accuracy go to the faster schedule (then to the faster measured one)
        best = max(eligible, key=lambda row: (row[acc_key], axis_speedup(row, axis),
                                              row["speedup"] or 0.0), default=None)  # fmt: skip
    groups = group_repeats(runs, rows, acc_key)
    return Report(acc_key, axis, rows, best, min_speedup, timing, groups)


def speed_against_flops(report: Report) -> str | None:
    """How the measured speed-ups track the FLOP ratios, and why where they fall short."""
    merged = [r for r in report.rows if r["speedup"] is not None and r["r"] and any(r["r"])]
    if not merged:
        return None
    shares = [r["speedup"] / r["flop_ratio"] for r in merged]
    distinct = len({tuple(r["r"]) for r in merged})
    text = (f"measured speed-up / FLOP ratio over {distinct} timed merged schedules: "
            f"{min(shares):.2f}-{max(shares):.2f}")  # fmt: skip
    if min(shares) >= 0.9:
        return text + " (within 10% of the FLOP ratio)"
    base = min((r["gmacs"] for r in report.rows if r["gmacs"] and r["r"] and not any(r["r"])),
               default=max(r["gmacs"] or 0.0 for r in merged))  # fmt: skip
    return text + (
        f". Below 0.9 where the model is small ({1e3 * base:.3g} MMACs per clip unmerged): "
        "the FLOP ratio counts only the blocks' matrix products, while the merge's own work "
        "(matching, gather and scatter per layer) and what merging does not shrink (patch "
        "embedding, head, per-call overheads) are a larger share of a small model's time; "
        "at AST-Base size the benchmark measures 0.94-1.01 (docs/benchmarks.md)"
    )
