"""`--ckpt_path` checks a checkpoint against the data and model by everything its record says
(class names, feature settings, architecture), before any work; a meant difference is named
with --allow_ckpt_differences."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from fastast_pl.models.checkpoints.module_checkpoint import (
    read_module_checkpoint,
    record_differences,
)
from fastast_pl.trainer.ckpt_path import find_last

from helpers.audio import folder_dataset, tone, write
from helpers.tiny_run import run, tiny


def test_other_feature_settings_than_the_checkpoints_are_refused(fitted_student, tmp_path):
    args = [*tiny(fitted_student.data, tmp_path / "runs"), "--ckpt_path", str(fitted_student.last)]
    with pytest.raises(
        ValueError, match=r"last\.ckpt.*features\.mean: checkpoint -?[\d.]+, data -1\.5"
    ):
        run(["test", *args, "--data.features.mean=-1.5"])
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    cli = run(
        ["test", *args, "--data.features.mean=-1.5", "--allow_ckpt_differences=[features.mean]"]
    )
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
    assert differences == {"class_names": f"class 0: checkpoint {names[0]!r}, data {names[1]!r}"}
    # dither is training augmentation: free to differ
    features = dict(checkpoint.record.features, dither=0.5)
    assert record_differences(checkpoint, names, features, checkpoint.record.arch) == {}
    assert torch.load(fitted_student.last, weights_only=False)["fastast"]["class_names"] == names


def test_last_and_best_keep_to_runs_on_the_same_data(fitted_student, tmp_path, capsys):
    """A root shared by two experiments: the newer run trained on other data (another
    split seed) is never chosen for this data, and the listing says why."""
    root = tmp_path / "runs"
    shutil.copytree(fitted_student.root, root)
    other_data = tmp_path / "other-data"
    run(["fit", *tiny(other_data, root / "other"), "--data.source.init_args.generator.seed=7"])
    newest = find_last(root)  # without a data identity: the other experiment's, newest
    assert fitted_student.root not in newest.parents and str(other_data) in str(
        read_module_checkpoint(newest).record.data["source"]
    )
    capsys.readouterr()
    for value in ("last", "best"):
        cli = run(["test", *tiny(fitted_student.data, root), "--ckpt_path", value])
        chosen = Path(cli.config["test"]["ckpt_path"])
        assert (
            read_module_checkpoint(chosen).record.data["source"]
            == (cli.datamodule.data_identity()["source"])
        ), value
        err = capsys.readouterr().err
        assert f"--ckpt_path {value}: runs considered under {root}" in err
        assert (
            "same data" in err and f"other data source SyntheticSource(root='{other_data}'" in err
        )
    with pytest.raises(FileNotFoundError, match=r"none of the runs .* trained on the data"):
        run(
            [
                "test",
                *tiny(fitted_student.data, root),
                "--ckpt_path",
                "last",
                "--data.features.mean=-1.0",
            ]
        )


def _folder_args(data: Path, runs: Path) -> list[str]:
    """``tiny`` on a FolderSource instead of the synthetic one."""
    args, out = tiny(data, runs), []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a.startswith("--data.source.init_args."):
            skip = True
            continue
        out.append(a)
    source = {
        "class_path": "fastast_pl.data.sources.FolderSource",
        "init_args": {"root": str(data), "val_fraction": 0.25, "test_fraction": 0.25},
    }
    return [*out, "--data.source", json.dumps(source)]


def test_resume_after_the_folder_gained_files_is_refused(tmp_path):
    data = folder_dataset(tmp_path / "data", {"a": 4, "b": 4, "c": 4})
    runs = tmp_path / "runs"
    run(["fit", *_folder_args(data, runs)])
    last = find_last(runs)
    run(["fit", *_folder_args(data, runs), "--ckpt_path", "last", "--trainer.max_epochs", "2"])
    for i in range(4, 7):  # new recordings: the per-class shuffle now splits otherwise
        write(data / "a" / f"a_{i}.wav", tone(0.3, 16000, 900 + i), 16000)
    before = sorted(p for p in runs.rglob("*") if p.is_file())
    with pytest.raises(
        ValueError,
        match=r"last\.ckpt: the data's splits are not the ones this "
        r"run started with \(.*train: \d+ clips then, \d+ now",
    ):
        run(["fit", *_folder_args(data, runs), "--ckpt_path", "last", "--trainer.max_epochs", "3"])
    assert sorted(p for p in runs.rglob("*") if p.is_file()) == before  # nothing written
    assert last.is_file()
