"""`--ckpt_path` checks a checkpoint against the data and model by everything its record says
(class names, feature settings, architecture), before any work; a meant difference is named
with --allow_ckpt_differences."""

from __future__ import annotations

import pytest
import torch

from fastast_pl.models.checkpoints.module_checkpoint import (
    read_module_checkpoint,
    record_differences,
)

from helpers.tiny_run import run, tiny


def test_other_feature_settings_than_the_checkpoints_are_refused(fitted_student, tmp_path):
    args = [*tiny(fitted_student.data, tmp_path / "runs"), "--ckpt_path", str(fitted_student.last)]
    with pytest.raises(ValueError, match=r"last\.ckpt.*features\.mean: checkpoint -?[\d.]+, data -1\.5"):
        run(["test", *args, "--data.features.mean=-1.5"])
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    cli = run(["test", *args, "--data.features.mean=-1.5",
               "--allow_ckpt_differences=[features.mean]"])  # fmt: skip
    assert cli.datamodule.features.mean == -1.5


def test_architecture_override_under_ckpt_path_is_refused(fitted_student, tmp_path):
    """4 heads instead of 2 keep every weight's shape: only the record tells them apart."""
    args = [*tiny(fitted_student.data, tmp_path / "runs"), "--ckpt_path", str(fitted_student.last)]
    with pytest.raises(ValueError, match=r"arch\.num_heads: checkpoint 2, model 4"):
        run(["test", *args, "--model.init_args.ast.num_heads=4"])
    run(["test", *args, "--model.init_args.ast.num_heads=4", "--allow_ckpt_differences=[arch]"])


def test_other_class_names_are_named(fitted_student):
    checkpoint = read_module_checkpoint(fitted_student.last)
    names = list(checkpoint.record.class_names)
    swapped = [names[1], names[0], *names[2:]]
    differences = record_differences(checkpoint, swapped, checkpoint.record.features, None)
    assert differences == {
        "class_names": f"class 0: checkpoint {names[0]!r}, data {names[1]!r}"
    }
    # dither is training augmentation: free to differ
    features = dict(checkpoint.record.features, dither=0.5)
    assert record_differences(checkpoint, names, features, checkpoint.record.arch) == {}
    assert torch.load(fitted_student.last, weights_only=False)["fastast"]["class_names"] == names
