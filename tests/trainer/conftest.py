"""Runs trained once per test session and shared (read-only) by the run/checkpoint tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from fastast_pl.trainer.ckpt_path import find_last

from helpers.tiny_run import run, teacher_model, tiny


@dataclass(frozen=True)
class Fitted:
    """A finished tiny run: its data, run root, best and last checkpoints."""

    data: Path
    root: Path
    best: Path
    last: Path


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    """pytest's own argv would otherwise reach LightningCLI's check for mixed arguments."""
    monkeypatch.setattr("sys.argv", ["fastast_pl"])


def _fit(tmp: Path, *extra: str) -> Fitted:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["fastast_pl"])
        cli = run(["fit", *tiny(tmp / "data", tmp / "runs"), "--trainer.max_epochs", "2", *extra])
    best = Path(cli.trainer.checkpoint_callback.best_model_path)  # the monitored one comes first
    return Fitted(tmp / "data", tmp / "runs", best, find_last(tmp / "runs"))


@pytest.fixture(scope="session")
def fitted_student(tmp_path_factory) -> Fitted:
    """A StudentModule (tiny AST) trained two epochs on 3 synthetic classes."""
    return _fit(tmp_path_factory.mktemp("student"))


@pytest.fixture(scope="session")
def fitted_teacher(tmp_path_factory) -> Fitted:
    """A TeacherModule (tiny timm CNN) trained two epochs on the same kind of data."""
    return _fit(tmp_path_factory.mktemp("teacher"), *teacher_model())
