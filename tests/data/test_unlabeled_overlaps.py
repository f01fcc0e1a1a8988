"""Unlabeled audio a researcher points at by mistake: a pool holding training clips (not
counted twice), evaluation clips (a leak, warned and named), one file written two ways, and
a model without a teacher (the unlabeled clips teach it nothing: warned)."""

from __future__ import annotations

import json
import logging
import shutil

import lightning as L
import pytest

from fastast_pl.data.datamodule import AudioDataModule
from fastast_pl.data.features import FeatureConfig
from fastast_pl.data.sources import FolderSource
from fastast_pl.data.unlabeled import UnlabeledConfig
from fastast_pl.modules.student import StudentModule

from helpers.audio import tone, write
from helpers.distill import FAST_OPTIM, TINY_AST, T, folder_datamodule


def _data(root):
    """train/ (4 classes x 2), val/ and test/ (1 each) class folders of distinct real WAVs."""
    for c in range(4):
        for i in range(2):
            write(
                root / "train" / f"c{c}" / f"{i}.wav",
                tone(0.5, 16000, 200 + 900 * c, seed=i),
                16000,
            )
        write(root / "val" / f"c{c}" / "0.wav", tone(0.5, 16000, 250 + 900 * c, seed=9), 16000)
        write(root / "test" / f"c{c}" / "0.wav", tone(0.5, 16000, 270 + 900 * c, seed=8), 16000)
    for i in range(3):
        write(root / "pool" / f"u{i}.wav", tone(0.5, 16000, 333 + 500 * i, seed=20 + i), 16000)
    return root


def test_pool_holding_training_clips_adds_them_once(tmp_path, caplog) -> None:
    root = _data(tmp_path / "data")
    shutil.copy(root / "train" / "c1" / "0.wav", root / "pool" / "copy_of_train.wav")
    # labeled_fraction 0.5 and the pool = the whole training folder too: a quarter-labels
    # study written the plausible way; every training clip is in the pool.
    manifest = tmp_path / "all.json"
    train_files = sorted((root / "train").rglob("*.wav"))
    manifest.write_text(json.dumps({"data": [{"wav": str(p)} for p in train_files]}))
    dm = folder_datamodule(
        root,
        UnlabeledConfig(folder=str(root / "pool"), manifest=str(manifest), labeled_fraction=0.5),
    )
    with caplog.at_level(logging.INFO, logger="fastast_pl.data.unlabeled"):
        dm.setup("fit")
    train = dm.datasets["train"]
    # 4 labeled, 4 withheld + 3 pool files; the copy and the 8 listed training files: not again
    assert (train.num_labeled, len(train)) == (4, 11)
    assert len({c.path.resolve() for c in train.clips}) == len(train.clips)
    assert "9 file(s) of unlabeled.folder/manifest hold the audio of training clips" in caplog.text
    assert "copy_of_train.wav (= " in caplog.text
    assert "training clips: 4 labeled, 7 unlabeled (4 with their labels withheld" in caplog.text
    assert "3 from unlabeled.folder/manifest" in caplog.text


def test_pool_holding_evaluation_clips_is_a_leak_named_in_a_warning(tmp_path, caplog) -> None:
    root = _data(tmp_path / "data")
    shutil.copy(root / "test" / "c2" / "0.wav", root / "pool" / "found_on_disk.wav")
    manifest = tmp_path / "more.json"  # the val clip listed by a path relative to the manifest
    manifest.write_text(json.dumps({"data": [{"wav": "data/val/c0/0.wav"}]}))
    dm = folder_datamodule(root, UnlabeledConfig(folder=str(root / "pool"), manifest=str(manifest)))
    with caplog.at_level(logging.INFO, logger="fastast_pl.data.unlabeled"):
        dm.setup("fit")
    assert len(dm.datasets["train"]) == 8 + 5  # kept: a warning, as for labeled leaks
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        len(warnings) == 1
        and "2 evaluation clip(s) are also unlabeled training audio" in warnings[0]
    )
    assert (
        f"val clip {root / 'val' / 'c0' / '0.wav'} has the same audio bytes as unlabeled clip"
        in warnings[0]
    )
    assert (
        f"test clip {root / 'test' / 'c2' / '0.wav'} has the same audio bytes as unlabeled clip {root / 'pool' / 'found_on_disk.wav'}"
        in warnings[0]
    )


def test_one_file_in_folder_and_manifest_counts_once(tmp_path) -> None:
    root = _data(tmp_path / "data")
    manifest = root / "pool" / "list.json"  # relative entries: the same files as the folder's
    manifest.write_text(json.dumps({"data": [{"wav": "u0.wav"}, {"wav": "../pool/u1.wav"}]}))
    config = UnlabeledConfig(folder=str(root / "pool"), manifest=str(manifest))
    assert len(config.audio_files()) == 3


def test_unlabeled_clips_without_a_teacher_are_warned_about(tmp_path, caplog) -> None:
    root = _data(tmp_path / "data")
    dm = folder_datamodule(root, UnlabeledConfig(folder=str(root / "pool")))
    module = StudentModule(
        num_classes=4, target_length=T, num_mel_bins=32, ast=TINY_AST, optim=FAST_OPTIM
    )
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with caplog.at_level(logging.WARNING, logger="fastast_pl.modules.base"):
        trainer.fit(module, datamodule=dm)
    assert (
        "data.unlabeled gives 3 unlabeled training clip(s), but StudentModule trains on labels only"
        in caplog.text
    )


def test_labels_in_an_unlabeled_manifest_are_warned_about(tmp_path, caplog) -> None:
    root = _data(tmp_path / "data")
    manifest = tmp_path / "labeled.json"
    entries = [{"wav": str(root / "pool" / f"u{i}.wav"), "labels": "/m/0bt9lr"} for i in range(2)]
    manifest.write_text(json.dumps({"data": [*entries, {"wav": str(root / "pool" / "u2.wav")}]}))
    with caplog.at_level(logging.WARNING, logger="fastast_pl.data.unlabeled"):
        assert len(UnlabeledConfig(manifest=str(manifest)).audio_files()) == 3
    assert "2 of its 3 entries carry labels, which are not used" in caplog.text


def test_same_audio_needs_every_byte_equal_not_just_size_and_start(tmp_path) -> None:
    from fastast_pl.data.checks import HEAD_BYTES, same_audio

    start = bytes(range(256)) * (HEAD_BYTES // 256)  # the same first HEAD_BYTES in all three
    (tmp_path / "train.wav").write_bytes(start + b"tail A")
    (tmp_path / "copy.wav").write_bytes(start + b"tail A")
    (tmp_path / "other.wav").write_bytes(start + b"tail B")  # same size, same start
    found = same_audio([tmp_path / "train.wav"], [tmp_path / "copy.wav", tmp_path / "other.wav"])
    assert found == {tmp_path / "copy.wav": [tmp_path / "train.wav"]}


def test_unlabeled_folder_among_the_class_folders_is_refused(tmp_path) -> None:
    root = tmp_path / "flat"  # root/<class>/*.wav, and the pool put beside the classes
    for c in ("a", "b"):
        for i in range(10):
            write(root / c / f"{i}.wav", tone(0.5, 16000, 300 + 900 * (c == "b") + 10 * i), 16000)
    for i in range(10):
        write(root / "unlabeled" / f"u{i}.wav", tone(0.5, 16000, 2000 + 37 * i, seed=i), 16000)
    dm = AudioDataModule(
        FolderSource(str(root)),
        features=FeatureConfig(num_mel_bins=32, target_length=T),
        unlabeled=UnlabeledConfig(folder=str(root / "unlabeled")),
    )
    assert dm.class_names == ["a", "b", "unlabeled"]  # what FolderSource reads: a phantom class
    # was: trained a third class 'unlabeled' (and the same clips again as unlabeled)
    with pytest.raises(
        ValueError,
        match=r"unlabeled.folder .*/flat/unlabeled is a folder the data source reads labeled clips from \(10 of",
    ):
        dm.setup("fit")
