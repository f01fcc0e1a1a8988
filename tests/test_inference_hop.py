"""A hop longer than the model's window leaves the audio between windows unheard: the
clip's score then comes from part of it, so ``predict`` says so (once, with the window)."""

import logging

from fastast_pl.inference import AudioClassifier

from helpers.audio import tone, write
from helpers.hf_tiny import FRAMES, save_tiny_hf_ast


def test_hop_longer_than_the_window_is_warned_about(tmp_path, caplog):
    save_tiny_hf_ast(tmp_path / "hf")
    classifier = AudioClassifier.from_pretrained(tmp_path / "hf", device="cpu")
    clip = write(tmp_path / "long.wav", tone(3.0, 16000), 16000)
    window_s = FRAMES * 10 / 1000  # 64 frames of 10 ms
    with caplog.at_level(logging.WARNING, logger="fastast_pl.inference"):
        (gappy,) = classifier.predict([str(clip)], hop=2.0)
    assert f"hop=2.0 s is longer than the model's {window_s:.2f} s window" in caplog.text
    assert gappy.windows == 3  # at 0, 2.0 s and the tail (2.34 s): 0.64-2.0 s unheard
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fastast_pl.inference"):
        classifier.predict([str(clip)], hop=window_s)
    assert "hop=" not in caplog.text
