"""Feature settings given to ``AudioClassifier.from_pretrained`` against those the
checkpoint stores: unknown keys refused, replaced values warned about by name, another
feature recipe version refused, dither never used at inference."""

import logging
from pathlib import Path

import pytest

from fastast_pl.data.features import FEATURE_VERSION
from fastast_pl.inference import AudioClassifier
from fastast_pl.inference_inputs import stored_features

from helpers.hf_tiny import save_tiny_hf_ast


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tiny"
    save_tiny_hf_ast(path)  # its feature extractor says 16 kHz
    return path


def test_given_settings_are_checked_and_replacements_named(hf_dir, caplog):
    with pytest.raises(ValueError, match=r"unknown feature setting\(s\) \['sample_rat'\]"):
        AudioClassifier.from_pretrained(hf_dir, features={"sample_rat": 22050}, device="cpu")
    with caplog.at_level(logging.WARNING, logger="fastast_pl.inference_inputs"):
        classifier = AudioClassifier.from_pretrained(
            hf_dir, features={"sample_rate": 22050}, device="cpu"
        )
    assert classifier.sample_rate == 22050
    assert "sample_rate 16000 -> 22050" in caplog.text


def test_stored_settings_of_another_recipe_are_refused_and_dither_is_off():
    stored = {"sample_rate": 16000, "dither": 1.0, "version": FEATURE_VERSION, "note": "x"}
    assert stored_features(Path("a.ckpt"), stored) == {"sample_rate": 16000, "dither": 0.0}
    assert stored_features(Path("a.ckpt"), None) == {}
    with pytest.raises(ValueError, match=f"a.ckpt: .*version {FEATURE_VERSION + 1}"):
        stored_features(Path("a.ckpt"), {**stored, "version": FEATURE_VERSION + 1})
