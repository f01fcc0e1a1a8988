"""The LightningCLI through `python -m fastast_pl`: fit/test, links, bad input, no overwrites."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fastast_pl.cli import build_cli, main
from fastast_pl.tome import tome_state
from fastast_pl.tome.flops import vit_flops

from helpers.tiny_run import tiny_args


def _tiny(tmp_path: Path) -> list[str]:
    return tiny_args(tmp_path / "synthetic", tmp_path / "runs")


@pytest.fixture(autouse=True)
def _in_repo_root(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)


def test_fit_fast_dev_run(tmp_path):
    cli = build_cli(["fit", *_tiny(tmp_path), "--trainer.fast_dev_run", "true"])
    assert cli.trainer.state.finished
    # Linked from the data, never typed in the config:
    assert (
        cli.model.num_classes == 3
        and cli.model.target_length == 64
        and cli.model.num_mel_bins == 32
    )
    assert cli.model.model.grid_size == ((32 - 16) // 8 + 1, (64 - 16) // 8 + 1)


def test_fit_then_test_with_another_merge_schedule(tmp_path, capsys):
    fit = build_cli(["fit", *_tiny(tmp_path), "--trainer.max_epochs", "1"])
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    assert ckpt and Path(ckpt).is_file()
    assert str(tmp_path / "runs") in ckpt
    assert "val/acc" in fit.trainer.callback_metrics

    test = build_cli(
        [
            "test",
            *_tiny(tmp_path),
            "--ckpt_path",
            ckpt,
            "--model.init_args.eval_merge",
            "[3, 2]",
        ]
    )
    metrics = test.trainer.callback_metrics
    for key in ("test/acc", "test/mAP", "test/d_prime"):
        assert key in metrics, key
    assert "test/throughput" not in metrics  # speed is measured by fastast_pl.speed, not here
    ast = test.model.model
    assert ast.eval_merge == [3, 2] and ast.merge == 0  # training's 0 stays the training one
    # the test batches ran the evaluation schedule, not training's 0
    assert tome_state(ast).tokens_seen == ast.merge_schedule([3, 2]).tokens
    # what ran is said once and logged as hyperparameters (GMACs: 1 per multiply-add)
    tokens = ast.merge_schedule([3, 2]).tokens
    printed = capsys.readouterr().out
    assert printed.count("evaluation merge schedule: r per layer [3, 2]") == 1
    assert f"tokens per layer {tokens}" in printed and "GMACs per clip" in printed
    hparams = yaml.safe_load((Path(test.trainer.log_dir) / "hparams.yaml").read_text())
    assert hparams["merge/eval/r"] == [3, 2] and hparams["merge/eval/tokens"] == tokens
    assert hparams["merge/eval/gmacs_per_clip"] * 1e9 == pytest.approx(vit_flops(tokens, 32) / 2)
    assert hparams["merge/model"]["arch"]["embed_dim"] == 32


def test_each_run_gets_its_own_directory(tmp_path):
    args = [
        "fit",
        *_tiny(tmp_path),
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "1",
    ]
    first = build_cli(args)
    first_dir = Path(first.trainer.log_dir)
    before = {p: p.read_bytes() for p in first_dir.rglob("*") if p.is_file()}
    second = build_cli(args)
    assert Path(second.trainer.log_dir) != first_dir
    assert {p: p.read_bytes() for p in first_dir.rglob("*") if p.is_file()} == before


def test_print_config_shows_linked_values(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *_tiny(tmp_path), "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "StudentModule" in out and "target_length: 64" in out


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "fastast_pl", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_unknown_key_is_named_before_training(tmp_path):
    result = run_cli("fit", *_tiny(tmp_path), "--model.init_args.no_such_option", "1")
    assert result.returncode != 0
    assert "no_such_option" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_wrong_type_is_named(tmp_path):
    result = run_cli("fit", *_tiny(tmp_path), "--trainer.max_epochs", "many")
    assert result.returncode != 0
    assert "max_epochs" in result.stderr


@pytest.mark.slow
def test_missing_data_directory_is_named(tmp_path):
    missing = tmp_path / "no_esc50_here"
    result = run_cli(
        "fit",
        *_tiny(tmp_path),
        "--data.source",
        json.dumps(
            {
                "class_path": "fastast_pl.data.sources.ESC50Source",
                "init_args": {"root": str(missing)},
            }
        ),
    )
    assert result.returncode != 0
    assert str(missing) in result.stderr
    assert not (tmp_path / "runs").exists()


def test_ckpt_path_last_resumes_the_previous_run(tmp_path):
    args = [
        "fit",
        *_tiny(tmp_path),
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
    ]
    first = build_cli([*args, "--trainer.max_epochs", "1"])
    assert first.trainer.global_step == 2
    # A restart logs into a new version_N directory; "last" still finds the first run's last.ckpt.
    resumed = build_cli([*args, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert Path(resumed.trainer.log_dir) != Path(first.trainer.log_dir)
    assert resumed.trainer.global_step == 4  # continued from step 2, not from scratch


def test_ckpt_path_last_without_a_previous_run_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no last.ckpt under"):
        build_cli(["fit", *_tiny(tmp_path), "--trainer.max_epochs", "1", "--ckpt_path", "last"])


def test_predict_writes_one_csv_row_per_test_clip(tmp_path):
    fit = build_cli(["fit", *_tiny(tmp_path), "--trainer.max_epochs", "1"])
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    pred = build_cli(["predict", *_tiny(tmp_path), "--ckpt_path", ckpt])
    writer = next(cb for cb in pred.trainer.callbacks if type(cb).__name__ == "PredictionCSVWriter")
    with open(writer.written, newline="") as fh:
        rows = list(csv.DictReader(fh))
    test_set = pred.datamodule.datasets["test"]
    assert len(rows) == len(test_set)
    # Independent of the writer: run the model on each clip of the test split directly.
    model = pred.model.eval()
    for row in rows:
        item = test_set[int(row["index"])]
        assert row["path"] == str(test_set.clips[int(row["index"])].path)
        with torch.no_grad():
            probs = model(item["fbank"][None]).softmax(-1)[0]
        written = torch.tensor([float(row[f"p_{name}"]) for name in pred.datamodule.class_names])
        torch.testing.assert_close(written, probs, atol=1e-5, rtol=0)
        assert row["prediction"] == pred.datamodule.class_names[int(probs.argmax())]


def test_test_with_ckpt_path_does_not_reload_init_from(tmp_path):
    # Train from an initial checkpoint, then delete it: testing the trained checkpoint must
    # not need it (the weights come from --ckpt_path).
    first = build_cli(["fit", *_tiny(tmp_path), "--trainer.max_epochs", "1"])
    init = Path(first.trainer.checkpoint_callback.best_model_path)
    second = build_cli(
        ["fit", *_tiny(tmp_path), "--trainer.max_epochs", "1", "--model.init_from", str(init)]
    )
    trained = second.trainer.checkpoint_callback.best_model_path
    init.unlink()
    test = build_cli(["test", *_tiny(tmp_path), "--ckpt_path", trained])
    assert test.model.hparams.init_from is None
    assert "test/acc" in test.trainer.callback_metrics


@pytest.mark.parametrize("key", ["num_classes", "target_length"])
def test_a_linked_model_key_on_the_command_line_is_refused(tmp_path, key):
    """The link would silently replace it with the data's value (was: 10 became 8 / 128)."""
    with pytest.raises(ValueError, match=f"--model.init_args.{key} is linked from the data"):
        build_cli([*_tiny(tmp_path), f"--model.init_args.{key}=10"], run=False)
    assert not (tmp_path / "runs").exists()


def test_command_line_beats_checkpoint_beats_config_files(tmp_path):
    """The order FastASTCLI builds from LightningCLI's public seams: `parse_arguments` (the
    checkpoint resolved), Lightning's reading of its hyperparameters, then
    `before_instantiate_classes` (the command line's `--model.*` restored)."""
    tiny = [*_tiny(tmp_path), "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
    fit = build_cli(["fit", *tiny, "--trainer.max_epochs=1", "--model.init_args.eval_merge=1"])
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    test_args = ["test", *tiny, "--trainer.limit_test_batches=1", "--ckpt_path", ckpt]
    from_checkpoint = build_cli(test_args)
    assert from_checkpoint.model.hparams.eval_merge == 1  # the config file says 0
    given = build_cli([*test_args, "--model.init_args.eval_merge=2"])
    assert given.model.hparams.eval_merge == 2
