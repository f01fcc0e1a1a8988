"""Features: the AST fbank recipe, normalization, padding, SpecAugment, mixup, statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastast_pl.data.audio import AudioDecodeError, load_audio
from fastast_pl.data.augment import AugmentConfig
from fastast_pl.data.clips import Clip
from fastast_pl.data.dataset import AudioDataset
from fastast_pl.data.features import FeatureConfig, compute_fbank, compute_stats, fbank_frames

from helpers.audio import MEAN, STD, raw_reference, reference_fbank, tone, write


def _dataset(paths, labels=None, num_classes=2, target_length=100, train=False, **augment):
    labels = labels or [(0,)] * len(paths)
    clips = [Clip(p, lab) for p, lab in zip(paths, labels)]
    config = FeatureConfig(target_length=target_length)
    return AudioDataset(clips, num_classes, config, train=train, augment=AugmentConfig(**augment))


def test_fbank_matches_direct_kaldi_call_with_padding(tmp_path):
    path = write(tmp_path / "a.wav", tone(0.6, 44100, channels=2), 44100, subtype="PCM_16")
    item = _dataset([path], target_length=100)[0]
    assert item["fbank"].shape == (100, 128) and item["fbank"].dtype == torch.float32
    torch.testing.assert_close(item["fbank"], reference_fbank(path, 100), rtol=1e-4, atol=1e-4)
    # 0.6 s -> 58 real frames, then zero padding (normalized: (0 - mean) / (2 std)).
    torch.testing.assert_close(item["fbank"][60:], torch.full((40, 128), -MEAN / (2 * STD)))
    assert item["target"].tolist() == [1.0, 0.0] and item["index"].dtype == torch.int64


def test_fbank_crops_long_clips(tmp_path):
    path = write(tmp_path / "long.flac", tone(1.0, 16000), 16000, "FLAC")
    item = _dataset([path], target_length=50)[0]
    torch.testing.assert_close(item["fbank"], reference_fbank(path, 50), rtol=1e-4, atol=1e-4)


def test_normalization_uses_configured_stats(tmp_path):
    path = write(tmp_path / "a.wav", tone(0.3, 16000), 16000)
    config = FeatureConfig(target_length=40, mean=-3.0, std=2.0)
    item = AudioDataset([Clip(path, (0,))], 1, config)[0]
    raw = raw_reference(path, 40)
    torch.testing.assert_close(item["fbank"], (raw + 3.0) / 4.0, rtol=1e-4, atol=1e-4)


def test_silence_gives_finite_features_and_too_short_clips_are_bad_audio(tmp_path):
    silent = write(tmp_path / "silent.wav", np.zeros(8000, dtype=np.float32), 16000)
    short = write(tmp_path / "short.wav", tone(0.01, 16000), 16000)  # 160 samples < one window
    ds = _dataset([silent, short], target_length=30)
    fb_silent = ds[0]["fbank"]
    assert torch.isfinite(fb_silent).all()
    # A clip with no fbank frame would be pure padding with a label: bad audio
    # (docs/reliability.md).
    with pytest.raises(AudioDecodeError, match="short.wav.*shorter than one"):
        ds[1]
    assert compute_fbank(load_audio(short, 16000), FeatureConfig()).shape == (0, 128)


def test_specaugment_only_in_training(tmp_path):
    path = write(tmp_path / "a.wav", tone(1.0, 16000), 16000)
    evaluation = _dataset([path], target_length=100, freqm=48, timem=40)  # train=False
    torch.testing.assert_close(
        evaluation[0]["fbank"], reference_fbank(path, 100), rtol=1e-4, atol=1e-4
    )
    torch.manual_seed(0)
    train = _dataset([path], target_length=100, train=True, freqm=48, timem=40)
    masked = [train[0]["fbank"] for _ in range(8)]
    clean = reference_fbank(path, 100)
    for fb in masked:
        changed = ~torch.isclose(fb, clean, atol=1e-4)
        # Every changed value is a mask value (0 = the dataset mean after normalization),
        # and whole frequency rows / time columns are masked.
        assert torch.all(fb[changed] == 0)
    assert any((~torch.isclose(fb, clean, atol=1e-4)).any() for fb in masked)
    full_freq_rows = [(fb == 0).all(dim=0).sum() for fb in masked]  # masked mel bins
    full_time_cols = [(fb == 0).all(dim=1).sum() for fb in masked]  # masked frames
    assert max(full_freq_rows) > 0 and max(full_time_cols) > 0


def test_mixup_targets_are_convex_combinations(tmp_path):
    a = write(tmp_path / "a.wav", tone(0.5, 16000, 300), 16000)
    b = write(tmp_path / "b.wav", tone(0.5, 16000, 2000, seed=1), 16000)
    ds = _dataset(
        [a, b], labels=[(0,), (2,)], num_classes=3, target_length=60, train=True, mixup=1.0
    )
    raw = [raw_reference(a, 60), raw_reference(b, 60)]
    torch.manual_seed(0)
    mixed_pairs = 0
    for _ in range(12):
        item = ds[0]
        target = item["target"]
        torch.testing.assert_close(target.sum(), torch.tensor(1.0))
        assert target[1] == 0 and (target >= 0).all()
        lam = float(target[0])  # weight of clip a (the partner may be a itself: lam = 1)
        if 0 < lam < 1:
            mixed_pairs += 1
        expected = (lam * raw[0] + (1 - lam) * raw[1] - MEAN) / (2 * STD)
        torch.testing.assert_close(item["fbank"], expected, rtol=1e-4, atol=1e-4)
    assert mixed_pairs > 0
    evaluation = _dataset([a, b], labels=[(0,), (2,)], num_classes=3, target_length=60, mixup=1.0)
    assert evaluation[0]["target"].tolist() == [1.0, 0.0, 0.0]


def test_compute_stats_matches_direct_computation(tmp_path):
    paths = [
        write(tmp_path / f"{i}.wav", tone(0.2 + 0.1 * i, 16000, 200 * (i + 1), seed=i), 16000)
        for i in range(3)
    ]
    ds = _dataset(paths, target_length=1000)  # long target: padding must not count
    mean, std = compute_stats(ds, progress=False)
    frames = []
    for p in paths:
        raw = raw_reference(p, 1000)
        frames.append(raw[~(raw == 0).all(dim=1)])  # the reference's real frames
    values = torch.cat(frames).double()
    assert mean == pytest.approx(float(values.mean()), rel=1e-5)
    assert std == pytest.approx(float(values.std(unbiased=False)), rel=1e-4)
    sub_mean, _ = compute_stats(ds, max_clips=1, progress=False)
    assert sub_mean == pytest.approx(float(frames[0].double().mean()), rel=1e-5)


@pytest.mark.parametrize(
    "field,value",
    [
        ("target_length", 0),
        ("num_mel_bins", -1),
        ("std", 0.0),
        ("dither", -1.0),
        ("frame_shift", 0.0),
    ],
)
def test_feature_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        FeatureConfig(**{field: value})


@pytest.mark.parametrize("seconds", [0.02, 0.025, 1.0, 2.5, 5.0, 10.0, 0.3333])
def test_fbank_frames_counts_what_compute_fbank_gives(seconds):
    config = FeatureConfig(num_mel_bins=32)
    wave = torch.randn(1, round(seconds * 16000))
    assert fbank_frames(seconds, config) == compute_fbank(wave, config).shape[0]
