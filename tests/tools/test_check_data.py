"""`python -m fastast_pl check-data`: a decode of every file, a report, an exit code."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

from fastast_pl.cli import main

from helpers.audio import folder_dataset, tone, write


def _config(tmp_path, root) -> Path:
    config = {
        "data": {
            "source": {
                "class_path": "fastast_pl.data.sources.FolderSource",
                "init_args": {"root": str(root)},
            },
            "features": {"target_length": 40, "num_mel_bins": 32},
        }
    }
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_clean_data_passes(tmp_path, capsys):
    root = tmp_path / "data"
    folder_dataset(root / "train", {"a": 3, "b": 3}, seconds=0.1)
    folder_dataset(root / "val", {"a": 1, "b": 1}, seconds=0.1)
    code = main(
        [
            "check-data",
            "--config",
            str(_config(tmp_path, root)),
            "--out",
            str(tmp_path / "report.csv"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "8 files checked" in out and "no problems" in out
    with open(tmp_path / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"ok"}  # val = test: read once


def test_every_problem_is_in_the_report_and_the_exit_code(tmp_path, capsys):
    root = tmp_path / "data"
    folder_dataset(root / "train", {"a": 3, "b": 3}, seconds=0.1)
    folder_dataset(root / "val", {"a": 1, "b": 1}, seconds=0.1)
    train = root / "train"
    cut = write(train / "a" / "cut.wav", tone(1.0, 16000), 16000)
    cut.write_bytes(cut.read_bytes()[:20000])  # header: 16000 samples, file: ~9978
    write(train / "a" / "short.wav", tone(0.01, 16000), 16000)
    write(train / "b" / "silent.wav", np.zeros(1600, np.float32), 16000)
    write(train / "b" / "rate.wav", tone(0.1, 8000), 8000)
    nan = np.zeros(1600, np.float32)
    nan[5] = np.nan
    write(train / "b" / "nan.wav", nan, 16000, subtype="FLOAT")
    (train / "a" / "junk.wav").write_bytes(b"junk")
    out_csv = tmp_path / "report.csv"
    code = main(
        [
            "check-data",
            "--config",
            str(_config(tmp_path, root)),
            "--split",
            "train",
            "--out",
            str(out_csv),
        ]
    )
    assert code == 1
    with open(out_csv, newline="") as fh:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(fh)}
    assert len(rows) == 12 and {r["split"] for r in rows.values()} == {"train"}
    assert (
        rows["cut.wav"]["status"] == "bad"
        and "header promises 16000" in rows["cut.wav"]["problems"]
    )
    assert rows["cut.wav"]["header_frames"] == "16000"
    assert int(rows["cut.wav"]["decoded_frames"]) == sf.info(str(cut)).frames
    assert rows["short.wav"]["status"] == "bad" and "window" in rows["short.wav"]["problems"]
    assert rows["nan.wav"]["status"] == "bad" and "NaN" in rows["nan.wav"]["problems"]
    assert rows["junk.wav"]["status"] == "bad"
    assert rows["silent.wav"]["status"] == "warn" and "silent" in rows["silent.wav"]["problems"]
    assert rows["rate.wav"]["status"] == "warn"
    assert "8000 Hz" in rows["rate.wav"]["problems"] and "16000 Hz" in rows["rate.wav"]["problems"]
    assert rows["a_0.wav"]["status"] == "ok"
    out = capsys.readouterr().out
    assert "12 files checked" in out and "4 bad" in out and "2 with warnings" in out
    assert "cut.wav" in out


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["check-data", "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml" in capsys.readouterr().err


def test_training_audio_in_evaluation_splits_is_reported(tmp_path, capsys, caplog):
    import logging
    import shutil

    from fastast_pl.data.datamodule import AudioDataModule
    from fastast_pl.data.features import FeatureConfig
    from fastast_pl.data.sources import FolderSource

    root = tmp_path / "data"
    folder_dataset(root / "train", {"a": 3, "b": 3}, seconds=0.1)
    folder_dataset(root / "val", {"a": 1, "b": 1}, seconds=0.15)  # other clips
    shutil.copy(root / "train" / "a" / "a_0.wav", root / "val" / "a" / "copy.wav")  # same bytes
    (root / "val" / "b" / "link.wav").symlink_to(root / "train" / "b" / "b_2.wav")
    main(
        [
            "check-data",
            "--config",
            str(_config(tmp_path, root)),
            "--out",
            str(tmp_path / "report.csv"),
        ]
    )
    out = capsys.readouterr().out
    assert "copy.wav has the same audio bytes as training clip" in out
    assert "link.wav has the same audio bytes as training clip" in out
    assert out.count("leak: ") == 4  # copy and link in val, and in test (= val)
    dm = AudioDataModule(
        FolderSource(str(root)), features=FeatureConfig(target_length=40, num_mel_bins=32)
    )
    with caplog.at_level(logging.WARNING, logger="fastast_pl"):
        dm.setup("fit")
    assert "4 evaluation clip(s) hold training audio" in caplog.text  # val, and test = val
    assert "copy.wav" in caplog.text and "link.wav" in caplog.text


def test_an_earlier_report_is_not_overwritten(tmp_path, capsys):
    root = tmp_path / "data"
    folder_dataset(root / "train", {"a": 1, "b": 1}, seconds=0.1)
    folder_dataset(root / "val", {"a": 1, "b": 1}, seconds=0.1)
    out = tmp_path / "report.csv"
    out.write_text("an earlier report\n")
    argv = ["check-data", "--config", str(_config(tmp_path, root)), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "report.csv exists" in err and "--overwrite" in err
    assert out.read_text() == "an earlier report\n"  # untouched
    assert main([*argv, "--overwrite"]) == 0
    assert out.read_text().startswith("split,")


def test_unlabeled_audio_is_checked_with_the_training_split(tmp_path, capsys):
    root = tmp_path / "data"
    folder_dataset(root / "train", {"a": 2, "b": 2}, seconds=0.1)
    folder_dataset(root / "val", {"a": 1, "b": 1}, seconds=0.15)
    pool = tmp_path / "pool"
    write(pool / "fine.wav", tone(0.3, 16000, 700), 16000)
    (pool / "broken.wav").write_bytes(b"RIFF....WAVEfmt not audio")
    shutil.copy(root / "val" / "a" / "a_0.wav", pool / "val_copy.wav")
    config = yaml.safe_load(_config(tmp_path, root).read_text())
    config["data"]["unlabeled"] = {"folder": str(pool)}
    path = tmp_path / "with_pool.yaml"
    path.write_text(yaml.safe_dump(config))
    report = tmp_path / "report.csv"
    assert main(["check-data", "--config", str(path), "--out", str(report)]) == 1
    out = capsys.readouterr().out
    # was: the pool was not read at all (no line, exit 0 for a pool of broken files)
    assert "bad  unlabeled" in out and "broken.wav" in out
    assert (
        f"val clip {root / 'val' / 'a' / 'a_0.wav'} has the same audio bytes as unlabeled clip {pool / 'val_copy.wav'}"
        in out
    )
    rows = list(csv.DictReader(report.open()))
    assert sorted(Path(r["path"]).name for r in rows if r["split"] == "unlabeled") == [
        "broken.wav",
        "fine.wav",
        "val_copy.wav",
    ]
