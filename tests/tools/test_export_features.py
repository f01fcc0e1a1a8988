"""`export --features`: the sidecar records the feature settings the model was exported and
checked with, and a value that replaces the checkpoint's own is warned about by name."""

import json
import logging

import pytest

from fastast_pl.cli import main

from helpers.audio import tone, write
from helpers.hf_tiny import FRAMES, MEAN, MELS, save_tiny_hf_ast


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tiny"
    save_tiny_hf_ast(path)
    return path


def test_sidecar_records_the_features_used_for_the_check(hf_dir, tmp_path, caplog):
    clip = write(tmp_path / "clip.wav", tone(1.0, 8000, 700), 8000)
    out = tmp_path / "model.onnx"
    given = {"sample_rate": 8000, "target_length": FRAMES // 2}
    argv = ["export", str(hf_dir), "--format", "onnx", "--check-audio", str(clip)]
    with caplog.at_level(logging.WARNING, logger="fastast_pl"):
        assert main([*argv, "--features", json.dumps(given), "--out", str(out)]) == 0
    meta = json.loads((tmp_path / "model.onnx.json").read_text())
    # was: the checkpoint's 16000 Hz and 64 frames beside a 32-frame graph checked at 8 kHz
    assert meta["features"]["sample_rate"] == 8000
    assert meta["features"]["target_length"] == FRAMES // 2
    assert meta["input"]["shape"] == ["batch", FRAMES // 2, MELS]
    assert meta["features"]["mean"] == MEAN  # what was not given stays the checkpoint's
    assert "sample_rate 16000 -> 8000, target_length 64 -> 32" in caplog.text


def test_features_without_check_audio_reach_the_sidecar(hf_dir, tmp_path, caplog):
    out = tmp_path / "model.onnx"
    argv = ["export", str(hf_dir), "--format", "onnx", "--out", str(out)]
    with caplog.at_level(logging.WARNING, logger="fastast_pl"):
        assert main([*argv, "--features", '{"mean": -1.5}']) == 0  # was: ignored
    meta = json.loads((tmp_path / "model.onnx.json").read_text())
    assert meta["features"]["mean"] == -1.5 and meta["input"]["shape"][1] == FRAMES
    assert f"mean {MEAN!r} -> -1.5" in caplog.text


def test_an_exported_file_given_as_a_checkpoint_is_named(hf_dir, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(hf_dir), "--format", "onnx", "--out", str(out)]) == 0
    clip = write(tmp_path / "clip.wav", tone(1.0, 16000, 700), 16000)
    capsys.readouterr()
    for given, what in ((out, "an ONNX model"), (tmp_path / "model.onnx.json", "a JSON file")):
        assert main(["classify", str(given), str(clip)]) == 2
        err = capsys.readouterr().err
        # was: "this state-dict checkpoint does not carry its feature settings"
        assert f"{given} is {what}" in err and "not a checkpoint" in err
