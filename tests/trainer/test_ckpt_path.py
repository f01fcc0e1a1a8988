"""`--ckpt_path last|best|PATH` means the same in fit, validate, test and predict, and a
checkpoint that is missing, unreadable or of another model stops the run before any work,
naming the file and what was expected."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from fastast_pl.models.ast import ASTModel
from fastast_pl.models.checkpoints import load_teacher

from helpers.tiny_run import run, teacher_model, tiny, weights_equal

EVAL_SUBCOMMANDS = ("validate", "test", "predict")


@pytest.mark.parametrize("subcommand", EVAL_SUBCOMMANDS)
def test_last_without_a_checkpoint_is_an_error_in_every_subcommand(subcommand, tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(FileNotFoundError, match=rf"--ckpt_path last: no last.ckpt under .*{root}"):
        run([subcommand, *tiny(tmp_path / "data", root), "--ckpt_path", "last"])
    assert not root.exists()  # refused before anything was written


def test_last_under_another_root_is_not_used(fitted_student, tmp_path):
    other = tmp_path / "elsewhere"
    with pytest.raises(FileNotFoundError, match=rf"no last.ckpt under .*{other}"):
        run(["test", *tiny(fitted_student.data, other), "--ckpt_path", "last"])


@pytest.mark.parametrize("subcommand", EVAL_SUBCOMMANDS)
def test_last_loads_the_newest_last_ckpt_under_the_root(subcommand, fitted_student, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(fitted_student.root, root)
    cli = run([subcommand, *tiny(fitted_student.data, root), "--ckpt_path", "last"])
    last = root / fitted_student.last.relative_to(fitted_student.root)
    assert cli.config[subcommand]["ckpt_path"] == str(last)
    assert weights_equal(cli.model, last)


def test_best_is_the_best_on_val_recorded_by_model_checkpoint(fitted_student, tmp_path):
    cli = run(
        [
            "test",
            *tiny(fitted_student.data, fitted_student.root),
            "--ckpt_path",
            "best",
            "--trainer.logger",
            "false",
        ]
    )
    assert cli.config["test"]["ckpt_path"] == str(fitted_student.best)
    assert weights_equal(cli.model, fitted_student.best)


def _monitored_state(checkpoint: dict) -> dict:
    (state,) = [
        v
        for k, v in checkpoint["callbacks"].items()
        if k.startswith("ModelCheckpoint") and v.get("monitor")
    ]
    return state


def test_best_is_the_best_of_every_run_under_the_root_after_a_resume(tmp_path):
    """A resumed fit logs into a new version_N: Lightning then forgets the earlier best (its
    dirpath changed), so the resumed run records its own first epoch as best whatever its score."""
    root = tmp_path / "runs"
    argv = tiny(tmp_path / "data", root)
    first = run(["fit", *argv, "--trainer.max_epochs", "1"])
    first_best = Path(first.trainer.checkpoint_callback.best_model_path)
    first_score = float(first.trainer.checkpoint_callback.best_model_score)
    resumed = run(["fit", *argv, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    resumed_dir = Path(resumed.trainer.checkpoint_callback.dirpath)
    assert resumed_dir != first_best.parent
    assert Path(resumed.trainer.checkpoint_callback.best_model_path).parent == resumed_dir
    # Make the resumed run's recorded best worse than the first run's (a tiny run's val/acc
    # on 4 clips is often a tie): rewrite its score in every checkpoint that run wrote.
    for path in resumed_dir.glob("*.ckpt"):
        checkpoint = torch.load(path, weights_only=False)
        _monitored_state(checkpoint)["best_model_score"] = torch.tensor(first_score - 0.5)
        torch.save(checkpoint, path)
    cli = run(["test", *argv, "--ckpt_path", "best", "--trainer.logger", "false"])
    assert cli.config["test"]["ckpt_path"] == str(first_best)
    assert weights_equal(cli.model, first_best)


def test_best_over_runs_with_different_monitors_is_an_error(fitted_student, tmp_path):
    other = tmp_path / "runs" / "version_9"
    other.mkdir(parents=True)
    checkpoint = torch.load(fitted_student.best, weights_only=False)
    key, state = next((k, v) for k, v in checkpoint["callbacks"].items() if v.get("monitor"))
    crafted = other / "loss-best.ckpt"
    state.update(monitor="val/loss", best_model_path=str(crafted))
    checkpoint["callbacks"] = {key.replace("val/acc", "val/loss").replace("max", "min"): state}
    torch.save(checkpoint, crafted)
    shutil.copytree(fitted_student.root, tmp_path / "runs", dirs_exist_ok=True)
    with pytest.raises(ValueError, match=r"--ckpt_path best: .*val/acc \(max\).*val/loss \(min\)"):
        run(["test", *tiny(fitted_student.data, tmp_path / "runs"), "--ckpt_path", "best"])


def test_best_without_a_recorded_best_is_an_error(tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(FileNotFoundError, match=r"--ckpt_path best: no checkpoint under .*PATH"):
        run(["test", *tiny(tmp_path / "data", root), "--ckpt_path", "best"])


def test_missing_checkpoint_is_named_before_any_work(tmp_path):
    missing = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match=rf"{missing} does not exist"):
        run(["test", *tiny(tmp_path / "data", tmp_path / "runs"), "--ckpt_path", str(missing)])
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize("damage", ["empty", "truncated"])
@pytest.mark.parametrize("subcommand", ["fit", "test"])
def test_damaged_checkpoint_is_named(damage, subcommand, fitted_student, tmp_path):
    bad = tmp_path / f"{damage}.ckpt"
    full = fitted_student.last.read_bytes()
    bad.write_bytes(b"" if damage == "empty" else full[: len(full) // 3])
    why = r"is empty \(0 bytes\)" if damage == "empty" else r"truncated or corrupt"
    with pytest.raises(ValueError, match=rf"{bad}.*{why}.*Lightning checkpoint"):
        run([subcommand, *tiny(fitted_student.data, tmp_path / "runs"), "--ckpt_path", str(bad)])
    assert not (tmp_path / "runs").exists()


def test_state_dict_of_another_format_points_to_init_from(fitted_student, tmp_path):
    plain = tmp_path / "weights.pth"
    torch.save(torch.load(fitted_student.last, weights_only=False)["state_dict"], plain)
    with pytest.raises(ValueError, match=rf"{plain}: not a Lightning checkpoint.*init_from"):
        run(["test", *tiny(fitted_student.data, tmp_path / "runs"), "--ckpt_path", str(plain)])


def test_teacher_checkpoint_where_a_student_is_expected(fitted_teacher, tmp_path):
    ckpt = fitted_teacher.last
    with pytest.raises(ValueError, match=rf"{ckpt}.*TeacherModule.*expected .*StudentModule"):
        run(["test", *tiny(fitted_teacher.data, tmp_path / "runs"), "--ckpt_path", str(ckpt)])
    with pytest.raises(
        ValueError, match=rf"{ckpt}: .*TeacherModule checkpoint.*teacher_checkpoint"
    ):
        ASTModel.from_pretrained(ckpt)  # as --model.init_from would read it


def test_student_checkpoint_where_a_teacher_is_expected(fitted_student, tmp_path):
    ckpt = fitted_student.last
    argv = ["test", *tiny(fitted_student.data, tmp_path / "runs"), *teacher_model()]
    with pytest.raises(ValueError, match=rf"{ckpt}.*StudentModule.*expected .*TeacherModule"):
        run([*argv, "--ckpt_path", str(ckpt)])
    with pytest.raises(ValueError, match=rf"{ckpt}.*not a TeacherModule checkpoint"):
        load_teacher(ckpt)  # as model.teacher_checkpoint would read it


def test_checkpoint_for_other_classes_is_named(fitted_student, tmp_path):
    argv = ["test", *tiny(tmp_path / "data4", tmp_path / "runs", classes=4)]
    with pytest.raises(ValueError, match=r"trained for 3 classes.*the data has 4"):
        run([*argv, "--ckpt_path", str(fitted_student.last)])


def test_state_dict_missing_keys_are_named(fitted_student, tmp_path):
    checkpoint = torch.load(fitted_student.last, weights_only=False)
    for key in ("model.norm.weight", "model.head.1.bias"):
        del checkpoint["state_dict"][key]
    cut = tmp_path / "cut.ckpt"
    torch.save(checkpoint, cut)
    with pytest.raises(ValueError, match=rf"{cut}.*missing.*model.norm.weight.*model.head.1.bias"):
        run(["test", *tiny(fitted_student.data, tmp_path / "runs"), "--ckpt_path", str(cut)])


def test_teacher_state_dict_missing_keys_are_named(fitted_teacher, tmp_path):
    checkpoint = torch.load(fitted_teacher.last, weights_only=False)
    key = next(k for k in checkpoint["state_dict"] if k.startswith("model."))
    del checkpoint["state_dict"][key]
    cut = tmp_path / "teacher.ckpt"
    torch.save(checkpoint, cut)
    with pytest.raises(ValueError, match=rf"{cut}.*missing.*{key.removeprefix('model.')}"):
        load_teacher(cut)
