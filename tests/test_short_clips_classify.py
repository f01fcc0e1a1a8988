"""Every short-clip option through ``AudioClassifier`` and ``classify``: the padding result
bit for bit from one window on (one window, several windows with a short remainder), fewer
tokens and FLOPs below, counted in the model's frames whatever the file's rate and
channels, and the cost line ``classify --cost`` prints."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from fastast_pl.cli import main
from fastast_pl.inference import AudioClassifier
from fastast_pl.short_clips import SHORT_CLIPS
from fastast_pl.tools.classify import _parser

from helpers.hf_tiny import FRAMES, save_tiny_hf_ast

# The tiny HF model: 64 frames, patch 16 at stride 10 -> 5 time columns (starting at frames
# 0, 10, ..., 40) x 2 frequency rows, 2 + 10 = 12 tokens. A 21-frame clip: crop-pos keeps
# 26 frames, 2 columns (2 + 2 * 2 tokens); merge-pad keeps the 3 columns starting inside it
# and one padding token per row (2 + 2 * (3 + 1)).
SHORT_FRAMES = 21
SHORT_TOKENS = {"pad": 12, "crop-pos": 2 + 2 * 2, "merge-pad": 2 + 2 * (3 + 1)}
OPTIONS = ("crop-pos", "merge-pad")


def _samples(frames: int) -> int:
    """Samples at 16 kHz that give ``frames`` fbank frames (25 ms windows, 10 ms shift)."""
    return 400 + (frames - 1) * 160


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tiny"
    save_tiny_hf_ast(path)
    return path


@pytest.mark.parametrize("option", OPTIONS)
def test_exact_from_one_window_and_cheaper_below(hf_dir, tmp_path, option):
    rng = np.random.default_rng(0)
    full = tmp_path / "full.wav"
    short = tmp_path / "short.wav"
    sf.write(full, 0.1 * rng.standard_normal(_samples(FRAMES)), 16000)  # one window
    sf.write(short, 0.1 * rng.standard_normal(_samples(SHORT_FRAMES)), 16000)
    pad = AudioClassifier.from_pretrained(hf_dir, merge=2, device="cpu")
    other = AudioClassifier.from_pretrained(hf_dir, merge=2, device="cpu", short_clips=option)
    (p_full, p_short), (o_full, o_short) = (c.predict([full, short]) for c in (pad, other))
    torch.testing.assert_close(o_full.scores, p_full.scores, rtol=0, atol=0)  # exact
    assert (o_full.windows, o_full.tokens, o_full.flops) == (
        p_full.windows,
        p_full.tokens,
        p_full.flops,
    )
    assert (p_short.tokens, o_short.tokens) == (SHORT_TOKENS["pad"], SHORT_TOKENS[option])
    assert o_short.flops < p_short.flops
    assert not torch.equal(o_short.scores, p_short.scores)  # approximate below one window
    with pytest.raises(ValueError, match="int8"):
        AudioClassifier(pad.model, pad.features, device="cpu", quantize="int8", short_clips=option)


@pytest.mark.parametrize("option", OPTIONS)
def test_a_clip_of_several_windows_is_the_padding_result_bit_for_bit(hf_dir, tmp_path, option):
    """A clip longer than the window, not a whole number of windows: its last window ends at
    the clip's end (a full window), so every option equals padding; a stereo 44.1 kHz file
    is counted in frames of the model's 16 kHz (the same tokens as its mono 16 kHz copy)."""
    rng = np.random.default_rng(0)
    long = tmp_path / "long.wav"
    sf.write(long, 0.1 * rng.standard_normal(_samples(int(2.3 * FRAMES))), 16000)
    mono = 0.1 * rng.standard_normal(_samples(SHORT_FRAMES))
    short, stereo = tmp_path / "short.wav", tmp_path / "stereo.wav"
    sf.write(short, mono, 16000)
    at_44k = torchaudio.functional.resample(torch.from_numpy(mono).float(), 16000, 44100)
    sf.write(stereo, torch.stack([at_44k, at_44k], 1).numpy(), 44100)
    pad = AudioClassifier.from_pretrained(hf_dir, merge=2, device="cpu")
    other = AudioClassifier.from_pretrained(hf_dir, merge=2, device="cpu", short_clips=option)
    (p_long,) = pad.predict(long)
    o_long, o_short, o_stereo = other.predict([long, short, stereo])
    assert p_long.windows == 4  # windows start at 0, 32, 64 and 83 of 147 frames
    torch.testing.assert_close(o_long.scores, p_long.scores, rtol=0, atol=0)
    assert (o_long.windows, o_long.tokens, o_long.flops) == (4, p_long.tokens, p_long.flops)
    assert o_short.tokens == SHORT_TOKENS[option]
    assert (o_stereo.windows, o_stereo.tokens, o_stereo.flops) == (1, o_short.tokens, o_short.flops)


@pytest.mark.parametrize("option", OPTIONS)
def test_classify_prints_tokens_and_flops_per_file(hf_dir, tmp_path, capsys, option):
    clip = tmp_path / "a.wav"
    sf.write(clip, 0.1 * np.random.default_rng(1).standard_normal(4000), 16000)  # 23 frames
    flops = {}
    for run in ("pad", option):
        argv = ["classify", str(hf_dir), str(clip), "--short-clips", run, "--cost"]
        assert main(argv) == 0
        line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("cost"))
        assert line.startswith(f"cost {clip}: 1 window(s), ") and line.endswith(" ms")
        flops[run] = float(line.split(" tokens, ")[1].split(" MFLOPs")[0])
    assert 0 < flops[option] < flops["pad"]


def test_classify_offers_every_option():
    """classify spells its --short-clips choices out (it imports the model lazily): they stay
    the options ``short_clips`` runs."""
    action = next(a for a in _parser()._actions if a.dest == "short_clips")
    assert tuple(action.choices) == SHORT_CLIPS
    assert action.default == "pad"
