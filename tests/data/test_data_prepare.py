"""prepare_dataset from small archives the tests build (never downloads)."""

from __future__ import annotations

import csv
import io
import json
import tarfile
import zipfile

import pytest
import soundfile as sf

from fastast_pl.data.datamodule import AudioDataModule, LoaderConfig
from fastast_pl.data.features import FeatureConfig
from fastast_pl.data.prepare import UnsafeArchiveError, prepare_dataset
from fastast_pl.data.sources import ESC50Source, ManifestSource

from helpers.audio import tone


def _wav_bytes(freq: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(0.1, 16000, freq), 16000, format="WAV")
    return buf.getvalue()


def _esc50_zip(path):
    rows = [["filename", "fold", "target", "category", "esc10", "src_file", "take"]]
    with zipfile.ZipFile(path, "w") as zf:
        for fold in (1, 2, 3, 4, 5):
            for target, name in ((0, "dog"), (1, "rooster")):
                fn = f"{fold}-{target}-A-{target}.wav"
                zf.writestr(f"ESC-50-master/audio/{fn}", _wav_bytes(300 + 100 * target))
                rows.append([fn, fold, target, name, "True", "s", "A"])
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        zf.writestr("ESC-50-master/meta/esc50.csv", text.getvalue())
        zf.writestr("ESC-50-master/README.md", "readme")
    return path


def _add(tf, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _speech_tar(path):
    with tarfile.open(path, "w:gz") as tf:
        for word in ("no", "yes"):
            for i in range(4):
                _add(tf, f"./{word}/spk{i}_nohash_0.wav", _wav_bytes(200 + 50 * i))
        _add(tf, "./_background_noise_/white.wav", _wav_bytes(1000))
        _add(tf, "./validation_list.txt", b"yes/spk1_nohash_0.wav\nno/spk1_nohash_0.wav\n")
        _add(tf, "./testing_list.txt", b"yes/spk2_nohash_0.wav\n")
    return path


def test_esc50_from_archive(tmp_path):
    out = tmp_path / "esc50"
    settings = prepare_dataset("esc50", out, archive=_esc50_zip(tmp_path / "ESC-50-master.zip"))
    assert settings == {
        "class_path": "fastast_pl.data.sources.ESC50Source",
        "init_args": {"root": str(out)},
    }
    assert (out / "meta" / "esc50.csv").is_file() and len(list((out / "audio").glob("*.wav"))) == 10
    dm = AudioDataModule(
        ESC50Source(**settings["init_args"], val_fold=2),
        features=FeatureConfig(target_length=16, num_mel_bins=16),
        loader=LoaderConfig(batch_size=2),
    )
    dm.setup("fit")
    assert dm.class_names == ["dog", "rooster"] and len(dm.datasets["val"]) == 2
    assert next(iter(dm.val_dataloader()))["fbank"].shape == (2, 16, 16)
    # Running again is a no-op that returns the same settings.
    assert prepare_dataset("esc50", out, archive=tmp_path / "ESC-50-master.zip") == settings


def test_speech_commands_from_archive(tmp_path):
    out = tmp_path / "sc"
    settings = prepare_dataset("speechcommands", out, archive=_speech_tar(tmp_path / "sc.tar.gz"))
    assert settings["class_path"] == "fastast_pl.data.sources.ManifestSource"
    labels = list(csv.DictReader((out / "class_labels_indices.csv").open()))
    assert [(r["index"], r["display_name"]) for r in labels] == [("0", "no"), ("1", "yes")]
    splits = {
        s: json.loads((out / f"speechcommands_{s}.json").read_text())["data"]
        for s in ("train", "valid", "test")
    }
    assert sorted(e["wav"] for e in splits["valid"]) == [
        "audio/no/spk1_nohash_0.wav",
        "audio/yes/spk1_nohash_0.wav",
    ]
    assert [e["wav"] for e in splits["test"]] == ["audio/yes/spk2_nohash_0.wav"]
    assert len(splits["train"]) == 5 and all(
        "_background_noise_" not in e["wav"] for e in splits["train"]
    )
    dm = AudioDataModule(
        ManifestSource(**{**settings["init_args"], "multi_label": False}),
        features=FeatureConfig(target_length=16, num_mel_bins=16),
        loader=LoaderConfig(batch_size=5),
    )
    assert (dm.num_classes, dm.multi_label) == (2, False)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["target"].shape == (5, 2) and batch["target"].sum().item() == 5


def test_path_traversal_is_refused(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("ESC-50-master/meta/esc50.csv", "filename,fold,target,category,esc10\n")
        zf.writestr("ESC-50-master/../../escaped.txt", "gotcha")
    with pytest.raises(UnsafeArchiveError, match="escaped.txt"):
        prepare_dataset("esc50", tmp_path / "out", archive=evil)
    assert not (tmp_path / "escaped.txt").exists()
    # Nothing half-prepared is left behind: no out dir, no staging dir.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip"]


def test_tar_links_are_refused(tmp_path):
    archive = tmp_path / "sc.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        _add(tf, "validation_list.txt", b"")
        link = tarfile.TarInfo("yes/link.wav")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(UnsafeArchiveError, match="link.wav"):
        prepare_dataset("speechcommands", tmp_path / "out", archive=archive)


def test_never_writes_into_a_non_empty_directory(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        prepare_dataset("esc50", out, archive=_esc50_zip(tmp_path / "a.zip"))
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'audioset'"):
        prepare_dataset("audioset", tmp_path / "x")
    with pytest.raises(FileNotFoundError, match="nothere.zip"):
        prepare_dataset("esc50", tmp_path / "x", archive=tmp_path / "nothere.zip")
    (tmp_path / "wrong.zip").write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "wrong.zip", "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="no meta/esc50.csv inside"):
        prepare_dataset("esc50", tmp_path / "y", archive=tmp_path / "wrong.zip")
