"""Every shipped config kind keeps `last.ckpt` current every epoch: checked on the composed
callbacks, and by a short run whose validation score never improves (learning rate 0)."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from fastast_pl.trainer.ckpt_path import find_last

from helpers.last_ckpt import composed_callbacks, last_ckpt_problems
from helpers.tiny_run import run, tiny

# Each config kind as it is composed for `fit` (see the files' headers).
SHIPPED = {
    "quickstart": ("quickstart",),
    **{
        f"{ds}-recipe": (f"{ds}/data", f"{ds}/trainer", "callbacks", f"{ds}/fastast")
        for ds in ("esc50", "audioset", "speechcommands")
    },
    **{f"demo-{stage}": ("demo/data", f"demo/{stage}") for stage in ("teacher", "ast", "fastast")},
}


def test_the_check_flags_a_single_monitored_checkpoint_with_save_last():
    stale = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"monitor": "val/acc", "mode": "max", "save_last": True},
        }
    ]
    assert last_ckpt_problems(stale)
    assert last_ckpt_problems([])


@pytest.mark.parametrize("kind", SHIPPED)
def test_shipped_callbacks_save_last_every_epoch(kind):
    assert last_ckpt_problems(composed_callbacks(*SHIPPED[kind])) == []


@pytest.mark.parametrize("kind", ["quickstart", "esc50-recipe", "audioset-recipe"])
def test_short_run_last_ckpt_holds_the_final_epoch(kind, tmp_path):
    argv = [
        "fit",
        *tiny(tmp_path / "data", tmp_path / "runs"),
        "--trainer.max_epochs",
        "3",
        "--model.init_args.optim.lr",
        "1e-12",
    ]  # (val/acc then never improves)
    if kind != "quickstart":
        argv.append("--trainer.callbacks=" + json.dumps(composed_callbacks(*SHIPPED[kind])))
    run(argv)
    last = torch.load(find_last(tmp_path / "runs"), weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 3)


@pytest.mark.parametrize("kind", SHIPPED)
def test_shipped_configs_saving_last_resume_their_random_numbers(kind):
    """A resume from last.ckpt is exact only with the RNG states saved (docs/reliability.md)."""
    names = [c["class_path"] for c in composed_callbacks(*SHIPPED[kind])]
    assert "fastast_pl.trainer.resume.ResumeRNGState" in names, names


def test_resume_without_rng_states_says_it_will_not_be_exact(tmp_path, caplog):
    no_rng = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"monitor": None, "save_last": True},
        }
    ]
    argv = [
        "fit",
        *tiny(tmp_path / "data", tmp_path / "runs"),
        "--trainer.callbacks=" + json.dumps(no_rng),
    ]
    run(argv)
    with caplog.at_level(logging.WARNING, logger="fastast_pl"):
        run([*argv, "--ckpt_path", "last", "--trainer.max_epochs", "2"])
    assert "continuation will not be exact" in caplog.text and "ResumeRNGState" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fastast_pl"):  # the shipped quickstart
        run(
            [
                "fit",
                *tiny(tmp_path / "data", tmp_path / "runs"),
                "--ckpt_path",
                "last",
                "--trainer.max_epochs",
                "3",
            ]
        )
    assert "continuation will not be exact" in caplog.text  # the callback: no states saved
