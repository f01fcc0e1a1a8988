"""AST's own augmentation forms as options (docs/recipes.md, "Data and training").

References are written out here from AST's ``src/dataloader.py`` as we read it: noise
``fbank + U[0,1)^{TxF} * U[0,1) / 10`` then ``roll`` by ``randint(-10, 10)`` frames after
normalisation; waveform mixup (partner cut/padded to the first clip, mean removed again)
and SpecAugment before normalisation, each on real WAVs with torchaudio's kaldi.fbank.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import soundfile as sf
import torch
import torchaudio.transforms as T
from torchaudio.compliance import kaldi

from fastast_pl.data.augment import AugmentConfig, add_noise_and_roll
from fastast_pl.data.cache import FeatureCache
from fastast_pl.data.clips import Clip
from fastast_pl.data.dataset import AudioDataset
from fastast_pl.data.features import FeatureConfig

from helpers.audio import MEAN, STD, tone, write

TLEN, MELS = 64, 32


def _clips(tmp_path: Path) -> list[Clip]:
    """Three clips of different lengths and pitches, one label each (0, 1, 2)."""
    seconds = (0.45, 0.3, 0.6)  # 0 is longer than 1 (partner padded), shorter than 2 (cut)
    return [
        Clip(write(tmp_path / f"c{i}.wav", tone(s, 16000, 300.0 + 250 * i, seed=i), 16000), (i,))
        for i, s in enumerate(seconds)
    ]


def _fbank(wav: torch.Tensor) -> torch.Tensor:
    """AST's _wav2fbank after the waveform step: kaldi fbank, zero-pad/cut, (T, F) raw."""
    fb = kaldi.fbank(
        wav,
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=MELS,
        dither=0.0,
        frame_shift=10,
    )
    if fb.shape[0] < TLEN:
        return torch.nn.functional.pad(fb, (0, 0, 0, TLEN - fb.shape[0]))
    return fb[:TLEN]


def _wave(path: Path) -> torch.Tensor:
    data, _ = sf.read(str(path), dtype="float32")
    wav = torch.from_numpy(data)[None]  # (1, N)
    return wav - wav.mean()


def _norm(fb: torch.Tensor) -> torch.Tensor:
    return (fb - MEAN) / (2 * STD)


def test_noise_and_roll_follow_the_ast_formula():
    x = torch.randn(TLEN, MELS)
    torch.manual_seed(3)
    out = add_noise_and_roll(x, noise=0.1, max_roll=10)
    torch.manual_seed(3)  # the same draws, in AST's order: noise field, its scale, the shift
    field, scale = torch.rand(TLEN, MELS), torch.rand(())
    shift = int(torch.randint(-10, 10, ()))
    torch.testing.assert_close(out, torch.roll(x + field * scale * 0.1, shift, dims=0))


def test_noise_and_roll_statistics():
    """Over many draws: added noise is U*U/10 (mean 1/40, in [0, 0.1)); shifts -10..9."""
    torch.manual_seed(0)
    x = torch.zeros(TLEN, MELS)
    added, shifts = [], set()
    ramp = torch.arange(TLEN, dtype=torch.float32)[:, None].expand(TLEN, MELS)
    for _ in range(400):
        added.append(add_noise_and_roll(x, noise=0.1, max_roll=0))
        rolled = add_noise_and_roll(ramp * 1000.0, noise=0.1, max_roll=10)
        shifts.add(int((rolled[0, 0] / 1000.0).round().item()) % TLEN)
    noise = torch.stack(added)
    assert noise.min() >= 0 and noise.max() < 0.1
    assert abs(noise.mean().item() - 1 / 40) < 2e-3  # E[U] E[U] / 10
    # roll by s moves row (-s mod T) to the top: the top row reads -s mod T
    assert shifts == {(-s) % TLEN for s in range(-10, 10)}


def test_noise_is_training_only(tmp_path):
    clips = _clips(tmp_path)
    aug = AugmentConfig(noise=0.1, time_roll=10)
    feats = FeatureConfig(target_length=TLEN, num_mel_bins=MELS)
    evaluation = AudioDataset(clips, 3, feats, train=False, augment=aug)
    torch.testing.assert_close(
        evaluation[0]["fbank"], _norm(_fbank(_wave(clips[0].path))), atol=1e-4, rtol=1e-4
    )
    train = AudioDataset(clips, 3, feats, train=True, augment=aug)
    assert not torch.allclose(train[0]["fbank"], evaluation[0]["fbank"], atol=1e-3)


@pytest.mark.parametrize("pair", [(0, 1), (0, 2)])
def test_waveform_mixup_matches_ast(tmp_path, pair):
    clips = _clips(tmp_path)
    first, partner = pair
    feats = FeatureConfig(target_length=TLEN, num_mel_bins=MELS)
    aug = AugmentConfig(mixup=1.0, mixup_domain="waveform")
    dataset = AudioDataset([clips[first], clips[partner]], 3, feats, train=True, augment=aug)
    for seed in range(50):  # until the partner drawn is the other clip (it may be itself)
        torch.manual_seed(seed)
        item = dataset[0]
        if item["target"][partner] > 0:
            break
    lam = float(item["target"][first])
    assert 0 < lam < 1 and abs(float(item["target"][partner]) - (1 - lam)) < 1e-6
    w1, w2 = _wave(clips[first].path), _wave(clips[partner].path)
    if w2.shape[1] < w1.shape[1]:  # AST: pad the partner with zeros to the first's length
        w2 = torch.nn.functional.pad(w2, (0, w1.shape[1] - w2.shape[1]))
    else:  # ... or cut it
        w2 = w2[:, : w1.shape[1]]
    mixed = lam * w1 + (1 - lam) * w2
    expected = _norm(_fbank(mixed - mixed.mean()))
    torch.testing.assert_close(item["fbank"], expected, atol=2e-4, rtol=1e-4)
    # and it is not the fbank-domain mix (the default)
    fbank_mix = _norm(lam * _fbank(w1) + (1 - lam) * _fbank(_wave(clips[partner].path)))
    assert (item["fbank"] - fbank_mix).abs().max() > 0.05


def test_waveform_mixup_bypasses_the_cache_with_a_log_line(tmp_path, caplog):
    clips = _clips(tmp_path)
    feats = FeatureConfig(target_length=TLEN, num_mel_bins=MELS)
    cache = FeatureCache(str(tmp_path / "cache"), feats)
    aug = AugmentConfig(mixup=1.0, mixup_domain="waveform")
    with caplog.at_level(logging.INFO, logger="fastast_pl.data.dataset"):
        dataset = AudioDataset(clips, 3, feats, train=True, augment=aug, cache=cache)
    assert "bypass" in caplog.text and "feature cache" in caplog.text
    dataset[0]
    assert cache.hits + cache.misses == 0  # mixed training clips never read the cache
    AudioDataset(clips, 3, feats, train=False, augment=aug, cache=cache)[0]
    assert cache.misses == 1  # evaluation clips still use it


def test_mask_before_norm_matches_ast(tmp_path):
    clips = _clips(tmp_path)
    feats = FeatureConfig(target_length=TLEN, num_mel_bins=MELS)
    raw = _fbank(_wave(clips[0].path))  # (T, F)
    before = AudioDataset(
        clips,
        3,
        feats,
        train=True,
        augment=AugmentConfig(freqm=8, timem=16, mask_before_norm=True),
    )
    after = AudioDataset(clips, 3, feats, train=True, augment=AugmentConfig(freqm=8, timem=16))
    for seed in range(20):
        torch.manual_seed(seed)
        got = before[0]["fbank"]
        # AST: mask the raw (1, F, T) fbank (frequency, then time), then normalise
        torch.manual_seed(seed)
        spec = T.TimeMasking(16)(T.FrequencyMasking(8)(raw.t()[None]))
        expected = _norm(spec[0].t())
        torch.testing.assert_close(got, expected, atol=2e-4, rtol=1e-4)
        torch.manual_seed(seed)
        ours = after[0]["fbank"]
        masked = (spec[0].t() == 0) & (raw != 0)  # (T, F) where the masks fell (not padding)
        if masked.any():
            assert torch.allclose(got[masked], torch.tensor(-MEAN / (2 * STD)), atol=1e-5)
            assert torch.all(ours[masked] == 0)  # the default fills with the normalised mean
            break
    else:
        pytest.fail("no seed drew a non-empty mask")


def test_ast_forms_are_validated_and_listed():
    with pytest.raises(ValueError, match="mixup_domain"):
        AugmentConfig(mixup_domain="spectrum")
    with pytest.raises(ValueError, match="noise"):
        AugmentConfig(noise=-0.1)
    with pytest.raises(ValueError, match="time_roll"):
        AugmentConfig(time_roll=-1)
    active = AugmentConfig(noise=0.1, time_roll=10).active()
    assert active == ["noise=0.1", "time_roll=10"]
    assert AugmentConfig(noise=0.1).changes_teacher_input()
