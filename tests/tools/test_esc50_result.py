"""`report --esc50-folds`: AST's get_esc_result.py rule (best epoch of the five folds' mean
accuracy curve) and the last-epoch mean, from five fold runs' metrics.csv (docs/recipes.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from fastast_pl.tools.report import main as report_main
from fastast_pl.tools.report.esc50 import esc50_result

# val/acc per epoch (0-based) of five folds; fold 1 peaks alone at epoch 1, the mean at 2
CURVES = [
    [0.50, 0.95, 0.80, 0.70],
    [0.50, 0.60, 0.90, 0.85],
    [0.40, 0.70, 0.90, 0.80],
    [0.60, 0.70, 0.85, 0.90],
    [0.50, 0.65, 0.80, 0.75],
]


def _fold_run(root: Path, fold: int, curve: list[float], version: bool = False) -> Path:
    """A run directory as the CLI writes it: CSVLogger rows (train rows without val/acc)."""
    run = root / f"fold{fold}"
    logdir = run / "lightning_logs" / "version_0" if version else run
    logdir.mkdir(parents=True)
    with (logdir / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "step", "train/loss", "val/acc", "val/loss"])
        for epoch, acc in enumerate(curve):
            w.writerow([epoch, epoch * 10 + 4, 1.0 / (epoch + 1), "", ""])
            w.writerow([epoch, epoch * 10 + 9, "", acc, 0.5])
    cfg = {"data": {"source": {"init_args": {"val_fold": fold}}}}
    (logdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run


def _runs(tmp_path: Path) -> list[Path]:
    return [_fold_run(tmp_path, i + 1, c, version=i % 2 == 1) for i, c in enumerate(CURVES)]


def test_best_epoch_of_the_mean_curve_and_last_epoch_mean(tmp_path):
    result = esc50_result(_runs(tmp_path))
    means = [sum(c[e] for c in CURVES) / 5 for e in range(4)]  # [0.5, 0.72, 0.85, 0.8]
    assert result.mean_curve == pytest.approx(means)
    assert result.best_epoch == 2 and result.best_acc == pytest.approx(0.85)
    assert result.fold_acc_at_best == pytest.approx([c[2] for c in CURVES])
    assert result.last_epoch == 3 and result.last_acc == pytest.approx(0.80)
    # not the over-optimistic per-fold best that AST's note warns about
    assert result.best_acc < sum(max(c) for c in CURVES) / 5


def test_cli_prints_the_rule_and_both_numbers(tmp_path, capsys):
    assert report_main(["--esc50-folds", *map(str, _runs(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "best epoch of the mean curve: 2 (AST numbering 3): 0.8500" in out
    assert "last epoch 3: 0.8000" in out


def test_folds_that_do_not_line_up_are_refused(tmp_path):
    runs = _runs(tmp_path)
    with pytest.raises(ValueError, match="5 fold runs"):
        esc50_result(runs[:4])
    short = _fold_run(tmp_path / "short", 5, CURVES[4][:3])
    with pytest.raises(ValueError, match="epochs"):
        esc50_result([*runs[:4], short])
    again = _fold_run(tmp_path / "again", 1, CURVES[4])  # val_fold 1 twice
    with pytest.raises(ValueError, match="val_fold"):
        esc50_result([*runs[:4], again])
    assert report_main(["--esc50-folds", *map(str, runs[:4])]) == 2
