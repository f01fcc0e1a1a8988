"""The CMKD teacher recipes: EfficientNet-B2 with mean pooling (CMKD), PSLA's AudioSet
schedule and weight averaging, composed through the real CLI (--print_config)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from fastast_pl import cli

EXP = Path(__file__).resolve().parents[2] / "experiments"


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["fastast_pl"])


def _print_config(*names: str) -> dict:
    args = ["fit"]
    for name in names:
        args += ["--config", str(EXP / f"{name}.yaml")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        with contextlib.suppress(SystemExit):
            cli.main([*args, "--print_config"])
    return yaml.safe_load(out.getvalue())


def _averaging(cfg: dict) -> list[dict]:
    return [
        c for c in cfg["trainer"]["callbacks"] if c["class_path"].endswith("EpochWindowAveraging")
    ]


@pytest.mark.parametrize("dataset", ["esc50", "speechcommands", "audioset"])
def test_cmkd_teachers_use_mean_pooling(dataset) -> None:
    cfg = _print_config(f"{dataset}/data", f"{dataset}/trainer", "callbacks", f"{dataset}/teacher")
    teacher = cfg["model"]["init_args"]["teacher"]
    assert teacher["backbone"] == "tf_efficientnet_b2"  # PSLA's (TensorFlow-ported) variant
    assert teacher["pooling"] == "mean"  # CMKD: EfficientNet without the attention module


def test_audioset_teacher_follows_psla_balanced() -> None:
    cfg = _print_config("audioset/data", "audioset/trainer", "callbacks", "audioset/teacher")
    optim = cfg["model"]["init_args"]["optim"]
    assert cfg["data"]["loader"]["batch_size"] == 100
    assert cfg["trainer"]["max_epochs"] == 60
    assert (optim["lr"], optim["decay_start_epoch"], optim["decay_every"]) == (1e-3, 35, 5)
    assert optim["decay_factor"] == 0.5 and optim["warmup_steps"] == 1000
    (wa,) = _averaging(cfg)
    assert (wa["init_args"]["first_epoch"], wa["init_args"]["last_epoch"]) == (41, 60)


def test_audioset_teacher_follows_psla_full() -> None:
    cfg = _print_config(
        "audioset/data", "audioset/trainer", "callbacks", "audioset/full", "audioset/teacher_full"
    )
    optim = cfg["model"]["init_args"]["optim"]
    assert cfg["trainer"]["max_epochs"] == 30
    assert (optim["lr"], optim["decay_start_epoch"], optim["decay_every"]) == (1e-4, 10, 5)
    assert cfg["model"]["init_args"]["teacher"]["pooling"] == "mean"
    (wa,) = _averaging(cfg)
    assert (wa["init_args"]["first_epoch"], wa["init_args"]["last_epoch"]) == (16, 30)
