"""ESC-50 five-fold result, the way AST reports it (YuanGongND/ast egs/esc50/get_esc_result.py).

AST averages the five folds' per-epoch accuracy curves and reports the best epoch of that
mean curve (one epoch for all folds: choosing each fold's own best would be optimistic,
since the held-out fold is also the validation fold). The last-epoch mean is printed next
to it: it selects nothing on the test folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fastast_pl.tools.report.read import _read_yaml, epoch_metric_csv

FOLDS = 5


@dataclass
class Esc50Result:
    """The mean curve (by 0-based epoch) and the two summary rules."""

    runs: list[str]
    metric: str
    mean_curve: list[float]
    best_epoch: int
    best_acc: float
    fold_acc_at_best: list[float]
    last_epoch: int
    last_acc: float


def find_metrics_csv(run_dir: Path) -> Path:
    """The one ``metrics.csv`` at or below ``run_dir`` (error if none or several)."""
    if (run_dir / "metrics.csv").is_file():
        return run_dir / "metrics.csv"
    found = sorted(run_dir.rglob("metrics.csv"))
    if len(found) != 1:
        what = "no metrics.csv" if not found else f"{len(found)}: {[str(p) for p in found]}"
        raise ValueError(
            f"esc50: expected one metrics.csv under {run_dir}, found {what}; pass the "
            "run's log directory"
        )
    return found[0]


def _val_fold(metrics_csv: Path) -> int | None:
    config = _read_yaml(metrics_csv.parent / "config.yaml")
    fold = (config.get("data") or {}).get("source", {}).get("init_args", {}).get("val_fold")
    return int(fold) if fold is not None else None


def esc50_result(run_dirs: Sequence[Path], metric: str = "val/acc") -> Esc50Result:
    """Mean per-epoch ``metric`` curve of the five fold runs and its best and last epochs."""
    if len(run_dirs) != FOLDS:
        raise ValueError(
            f"esc50: expected {FOLDS} fold runs (one per val_fold), got {len(run_dirs)}"
        )
    curves: list[dict[int, float]] = []
    folds: dict[int, str] = {}
    for run_dir in map(Path, run_dirs):
        path = find_metrics_csv(run_dir)
        curve = epoch_metric_csv(path, metric)
        if not curve:
            raise ValueError(f"esc50: {path} has no {metric} values")
        fold = _val_fold(path)
        if fold is not None:
            if fold in folds:
                raise ValueError(f"esc50: {run_dir} and {folds[fold]} both hold val_fold={fold}")
            folds[fold] = str(run_dir)
        curves.append(curve)
    epochs = sorted(curves[0])
    for run_dir, curve in zip(run_dirs, curves, strict=True):
        if sorted(curve) != epochs:
            raise ValueError(
                f"esc50: {run_dir} has {metric} for epochs {sorted(curve)}, the first fold run "
                f"for epochs {epochs}: the folds must be trained for the same epochs"
            )
    mean = [sum(c[e] for c in curves) / FOLDS for e in epochs]
    best = max(range(len(epochs)), key=lambda i: mean[i])  # first maximum, as np.argmax
    return Esc50Result(
        runs=[str(r) for r in run_dirs], metric=metric, mean_curve=mean,
        best_epoch=epochs[best], best_acc=mean[best],
        fold_acc_at_best=[c[epochs[best]] for c in curves],
        last_epoch=epochs[-1], last_acc=mean[-1],
    )  # fmt: skip


def format_result(result: Esc50Result) -> str:
    """The printed summary: per-fold values at the chosen epoch, both rules."""
    lines = [f"ESC-50 {FOLDS}-fold {result.metric} (epochs 0-based as Lightning logs them)"]
    for run, acc in zip(result.runs, result.fold_acc_at_best, strict=True):
        lines.append(f"  {run}: {acc:.4f} at epoch {result.best_epoch}")
    lines.append(
        f"best epoch of the mean curve: {result.best_epoch} (AST numbering "
        f"{result.best_epoch + 1}): {result.best_acc:.4f}  [AST get_esc_result.py rule]"
    )
    lines.append(f"last epoch {result.last_epoch}: {result.last_acc:.4f}  [no selection]")
    return "\n".join(lines)
