"""The data/training values of docs/recipes.md reach the composed recipes:
AST's weight-averaging windows, PSLA's enhanced balanced-AudioSet labels, AST's Speech
Commands noise/roll and BCE, and the ESC-50 reporting rule. Parsed through the CLI."""

from __future__ import annotations

import pytest
import yaml
from test_experiments_configs import EXP, _cli, _configs, _recipe_base

AVERAGING = "fastast_pl.trainer.weight_averaging.EpochWindowAveraging"  # branch r-recmodel


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["fastast_pl"])


def _composed(dataset: str, *names: str, sub: str = "fit") -> dict:
    files = [*_recipe_base(dataset), *names, "machines/cpu"]
    return yaml.safe_load(_cli([sub, *_configs(*files), "--print_config"]))


def _windows(cfg: dict) -> list[tuple[int, int]]:
    return [
        (c["init_args"]["first_epoch"], c["init_args"]["last_epoch"])
        for c in cfg["trainer"]["callbacks"]
        if c["class_path"] == AVERAGING
    ]


def test_audioset_ast_recipes_average_ast_s_epoch_windows():
    """AST run.sh: wa_start=6 wa_end=25 (balanced), 1..5 (full); EpochWindowAveraging counts
    epochs from 1, inclusive, as AST does."""
    balanced = _composed("audioset", "audioset/ast_baseline")
    assert _windows(balanced) == [(6, 25)] and balanced["trainer"]["max_epochs"] == 25
    full = _composed("audioset", "audioset/ast_baseline_full", "audioset/full")
    assert _windows(full) == [(1, 5)] and full["trainer"]["max_epochs"] == 5
    assert full["model"]["init_args"]["optim"]["lr"] == 1e-5  # full.yaml still wins
    # the full-set file is ast_baseline.yaml's model with another window
    docs = [
        yaml.safe_load((EXP / f"audioset/{n}.yaml").read_text())
        for n in ("ast_baseline", "ast_baseline_full")
    ]
    assert docs[0]["model"] == docs[1]["model"]
    strip = [c for c in full["trainer"]["callbacks"] if c["class_path"] != AVERAGING]
    assert strip == [c for c in balanced["trainer"]["callbacks"] if c["class_path"] != AVERAGING]


def test_other_audioset_recipes_keep_their_own_averaging():
    """The distilled student averages AST's windows too (6-25 balanced, 1-5 full, the model
    the same as fastast.yaml's); the full overlay adds none, so PSLA's teacher_full.yaml
    window stays the only one for the teacher."""
    assert _windows(_composed("audioset", "audioset/fastast")) == [(6, 25)]
    assert _windows(_composed("audioset", "audioset/fastast_full", "audioset/full")) == [(1, 5)]
    docs = [
        yaml.safe_load((EXP / f"audioset/{n}.yaml").read_text())
        for n in ("fastast", "fastast_full")
    ]
    assert docs[0]["model"] == docs[1]["model"]
    teacher = _composed("audioset", "audioset/full", "audioset/teacher_full")
    assert _windows(teacher) == [(16, 30)]


def test_audioset_trains_on_psla_enhanced_labels_by_default():
    cfg = _composed("audioset", "audioset/ast_baseline")
    assert cfg["data"]["source"]["init_args"]["train"].endswith(
        "balanced_train_data_type1_2_mean.json"
    )  # AST run.sh (balanced) tr_data
    plain = _composed("audioset", "audioset/ast_baseline", "audioset/original_labels")
    assert plain["data"]["source"]["init_args"]["train"].endswith("balanced_train.json")
    full = _composed("audioset", "audioset/ast_baseline", "audioset/full")
    assert full["data"]["source"]["init_args"]["train"].endswith("unbalanced_train.json")


def test_speech_commands_uses_ast_noise_roll_and_bce():
    base = _composed("speechcommands", "speechcommands/ast_baseline")
    augment = base["data"]["augment"]
    assert augment["noise"] == 0.1 and augment["time_roll"] == 10  # run_sc.sh noise=True
    assert augment["mixup_domain"] == "fbank" and augment["mask_before_norm"] is False
    assert base["model"]["init_args"]["loss"] == "bce"  # run_sc.sh loss=BCE
    assert base["trainer"]["callbacks"][0]["init_args"]["monitor"] == "val/acc"  # metrics=acc
    kd = _composed("speechcommands", "speechcommands/fastast")
    assert kd["data"]["augment"]["noise"] == 0.1
    assert kd["model"]["init_args"]["loss"] == "auto"  # CMKD's own loss (losses.py)


def test_esc50_recipes_name_their_reporting_rule():
    for name in ("data", "trainer"):
        text = (EXP / "esc50" / f"{name}.yaml").read_text()
        assert "report --esc50-folds" in text and "get_esc_result.py" in text
