"""Nothing an earlier run wrote is changed or deleted by a later run, whatever logger,
version or checkpoint directory the user configures: the later run is refused first."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.tiny_run import csv_logger, run, snapshot, tiny


def _fit(tmp_path, *extra: str):
    return run(["fit", *tiny(tmp_path / "data", tmp_path / "runs"), *extra])


@pytest.mark.parametrize("subcommand", ["fit", "test"])
def test_csv_logger_pointed_at_an_existing_version_is_refused_untouched(subcommand, tmp_path):
    logger = csv_logger(tmp_path / "logs", name="exp", version=0)
    first = _fit(tmp_path, logger)
    log_dir = tmp_path / "logs" / "exp" / "version_0"
    assert (log_dir / "metrics.csv").is_file()
    before = snapshot(tmp_path / "logs")
    argv = [subcommand, *tiny(tmp_path / "data", tmp_path / "runs"), logger]
    if subcommand == "test":
        argv += ["--ckpt_path", first.trainer.checkpoint_callback.last_model_path]
    with pytest.raises(
        FileExistsError, match=rf"{log_dir}: the log directory .*metrics.csv.*version"
    ):
        run(argv)
    assert snapshot(tmp_path / "logs") == before


def test_csv_logger_with_a_fixed_directory_is_refused_the_second_time(tmp_path):
    logger = csv_logger(tmp_path / "fixed", name="", version="")
    _fit(tmp_path, logger)
    before = snapshot(tmp_path / "fixed")
    with pytest.raises(FileExistsError, match=rf"{tmp_path / 'fixed'}: the log directory"):
        _fit(tmp_path, logger)
    assert snapshot(tmp_path / "fixed") == before


def test_default_logger_gives_each_run_a_new_version(tmp_path):
    first = _fit(tmp_path)
    before = snapshot(tmp_path / "runs")
    second = _fit(tmp_path)
    assert second.trainer.log_dir != first.trainer.log_dir
    after = snapshot(tmp_path / "runs")
    assert {p: after[p] for p in before} == before


def test_no_logger_second_run_is_refused_untouched(tmp_path):
    _fit(tmp_path, "--trainer.logger", "false")
    before = snapshot(tmp_path / "runs")
    assert list((tmp_path / "runs" / "checkpoints").glob("*.ckpt"))
    with pytest.raises(FileExistsError, match=r"config.yaml"):
        _fit(tmp_path, "--trainer.logger", "false")
    assert snapshot(tmp_path / "runs") == before


def _callbacks(dirpath) -> str:
    callbacks = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": str(dirpath), "save_last": True},
        }
    ]
    return "--trainer.callbacks=" + json.dumps(callbacks)


def test_checkpoint_directory_of_an_earlier_run_is_refused(tmp_path):
    ckpts = tmp_path / "ckpts"
    _fit(tmp_path, _callbacks(ckpts))
    before = snapshot(ckpts)
    with pytest.raises(FileExistsError, match=rf"{ckpts}: the checkpoints .*last.ckpt.*dirpath"):
        _fit(tmp_path, _callbacks(ckpts))  # a new log version, the same checkpoint directory
    assert snapshot(ckpts) == before


def test_a_resumed_fit_continues_in_its_own_checkpoint_directory(tmp_path):
    ckpts = tmp_path / "runs" / "ckpts"  # under the root, where --ckpt_path last looks
    _fit(tmp_path, _callbacks(ckpts))
    resumed = _fit(tmp_path, _callbacks(ckpts), "--trainer.max_epochs", "2", "--ckpt_path", "last")
    assert resumed.trainer.global_step == 2
    assert torch.load(ckpts / "last.ckpt", weights_only=False)["global_step"] == 2


@pytest.mark.slow
def test_wandb_offline_with_a_fixed_id_is_refused_the_second_time(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = {
        "class_path": "lightning.pytorch.loggers.WandbLogger",
        "init_args": {
            "save_dir": str(tmp_path / "wb"),
            "project": "p",
            "id": "run1",
            "offline": True,
        },
    }
    argv = ["--trainer.logger=" + json.dumps(logger)]
    _fit(tmp_path, *argv)
    ckpt_dir = tmp_path / "wb" / "p" / "run1" / "checkpoints"
    assert list(ckpt_dir.glob("*.ckpt"))
    before = snapshot(ckpt_dir)
    with pytest.raises(FileExistsError):
        _fit(tmp_path, *argv)
    assert snapshot(ckpt_dir) == before
