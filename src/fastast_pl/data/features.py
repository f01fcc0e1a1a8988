"""Kaldi fbank features and their normalization, following the AST recipe.

The recipe (Gong et al., 2021): remove the waveform's mean, take a 25 ms / 10 ms
Hanning-window Kaldi fbank with ``htk_compat=True`` and no energy term, pad with zeros
or crop to ``target_length`` frames, then normalize as ``(x - mean) / (2 * std)`` with the
dataset's statistics. Training-time augmentation is in ``augment.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torchaudio.compliance import kaldi

from fastast_pl.utils.numbers import check_number

AUDIOSET_MEAN = -4.2677393
AUDIOSET_STD = 4.5689974

# Bump when the way features are computed changes, so old caches are never served.
FEATURE_VERSION = 1


@dataclass(frozen=True)
class FeatureConfig:
    """Every setting that decides the numbers in a normalized fbank.

    Args:
        sample_rate: Rate (Hz) the audio is resampled to before the fbank.
        num_mel_bins: Mel bands per frame (the model's input frequency size).
        target_length: Frames per clip after zero padding / cropping (model input time size).
        frame_shift: Hop between frames in milliseconds.
        frame_length: Window length in milliseconds.
        mean: Dataset mean of the raw log-mel fbank, for normalization.
        std: Dataset standard deviation of the raw log-mel fbank, for normalization.
        dither: Kaldi dither amount used for training clips (0 disables; eval never dithers).
    """

    sample_rate: int = 16000
    num_mel_bins: int = 128
    target_length: int = 1024
    frame_shift: float = 10.0
    frame_length: float = 25.0
    mean: float = AUDIOSET_MEAN
    std: float = AUDIOSET_STD
    dither: float = 0.0

    def __post_init__(self) -> None:
        for name in ("sample_rate", "num_mel_bins", "target_length"):
            check_number(f"FeatureConfig.{name}", getattr(self, name), above=0, integer=True)
        check_number("FeatureConfig.std", self.std, above=0)
        check_number("FeatureConfig.mean", self.mean)
        check_number("FeatureConfig.dither", self.dither, at_least=0)
        check_number("FeatureConfig.frame_shift", self.frame_shift, above=0)
        check_number("FeatureConfig.frame_length", self.frame_length, above=0)
        # Kaldi's framing needs whole samples: a shift of at least one sample, and a window
        # of at least two (a 0.01 ms window is 0 samples at 16 kHz: torchaudio then fails
        # without naming the setting).
        shift = int(self.sample_rate * self.frame_shift * 0.001)
        if shift < 1 or self.window_samples < 2:
            raise ValueError(
                f"FeatureConfig.frame_shift={self.frame_shift} ms and frame_length="
                f"{self.frame_length} ms give {shift} and {self.window_samples} samples at "
                f"{self.sample_rate} Hz; expected a shift of at least 1 sample and a window "
                "of at least 2 (AST: 10 ms and 25 ms)"
            )

    @property
    def window_samples(self) -> int:
        """Samples in one analysis window; shorter clips give no frames at all."""
        return int(self.sample_rate * self.frame_length * 0.001)

    def to_dict(self) -> dict[str, Any]:
        """All settings plus the fixed recipe constants, as plain JSON-able values."""
        out = dataclasses.asdict(self)
        out.update(
            window_type="hanning",
            htk_compat=True,
            use_energy=False,
            remove_waveform_mean=True,
            padding="zeros",
            normalization="(x - mean) / (2 * std)",
            version=FEATURE_VERSION,
        )
        return out

    def raw_key(self) -> str:
        """Hash of the settings that decide the *unnormalized* fbank (used by the cache).

        Mean, std and the training dither are left out: the cache stores dither-free
        features before normalization, so changing the statistics reuses it.
        """
        fields = self.to_dict()
        for name in ("mean", "std", "dither", "normalization"):
            fields.pop(name)
        blob = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def compute_fbank(
    waveform: torch.Tensor, config: FeatureConfig, dither: float = 0.0
) -> torch.Tensor:
    """Kaldi log-mel fbank of a ``(1, N)`` waveform, ``(frames, num_mel_bins)``, unpadded.

    A clip shorter than one window gives ``(0, num_mel_bins)`` (all padding later).
    """
    if waveform.dim() != 2 or waveform.shape[0] != 1:
        raise ValueError(f"expected a mono waveform of shape (1, N), got {tuple(waveform.shape)}")
    if waveform.shape[1] < config.window_samples:
        return torch.zeros(0, config.num_mel_bins)
    waveform = waveform - waveform.mean()
    return kaldi.fbank(
        waveform,
        htk_compat=True,
        sample_frequency=config.sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=config.num_mel_bins,
        dither=dither,
        frame_shift=config.frame_shift,
        frame_length=config.frame_length,
    )  # (frames, F)


def fbank_frames(seconds: float, config: FeatureConfig) -> int:
    """Frames ``compute_fbank`` gives a clip of ``seconds`` (Kaldi's framing with its edges
    snipped: one per shift whose whole window fits), without computing it."""
    samples = round(seconds * config.sample_rate)
    shift = int(config.sample_rate * config.frame_shift * 0.001)
    if samples < config.window_samples:
        return 0
    return 1 + (samples - config.window_samples) // shift


def crop(fbank: torch.Tensor, target_length: int) -> torch.Tensor:
    """Keep the first ``target_length`` frames (the AST recipe crops from the start)."""
    return fbank[:target_length]


def pad_or_crop(fbank: torch.Tensor, target_length: int) -> torch.Tensor:
    """Zero-pad at the end or crop to exactly ``target_length`` frames: ``(T, F)``."""
    frames = fbank.shape[0]
    if frames >= target_length:
        return fbank[:target_length]
    pad = torch.zeros(target_length - frames, fbank.shape[1], dtype=fbank.dtype)
    return torch.cat([fbank, pad], dim=0)  # (T, F)


def normalize(fbank: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """AST normalization ``(x - mean) / (2 * std)``."""
    return (fbank - mean) / (2.0 * std)


class _RawFbankSource(Protocol):
    def __len__(self) -> int: ...

    def raw_fbank(self, index: int) -> torch.Tensor: ...


def compute_stats(
    source: Any, max_clips: int | None = None, progress: bool = True
) -> tuple[float, float]:
    """Mean and standard deviation of the raw log-mel fbank over a training split.

    Args:
        source: An ``AudioDataModule`` (its training split is used) or an ``AudioDataset``
            (anything with ``__len__`` and ``raw_fbank(index)``).
        max_clips: Use at most this many clips, spread evenly over the split (None: all).
        progress: Show a rich progress bar.

    Returns:
        ``(mean, std)`` over every value of every real (unpadded) frame, ready for the
        DataModule's ``features.mean`` / ``features.std``. Unlike the AST scripts, padding frames are
        left out, so short clips with a long ``target_length`` do not pull the mean to 0.
    """
    dataset: _RawFbankSource = (
        source.stats_dataset() if hasattr(source, "stats_dataset") else source
    )
    n = len(dataset)
    if n == 0:
        raise ValueError("compute_stats: the split holds no clips")
    if max_clips is not None and max_clips < n:
        if max_clips <= 0:
            raise ValueError(f"max_clips must be > 0, got {max_clips}")
        indices = [int(i * n / max_clips) for i in range(max_clips)]
    else:
        indices = list(range(n))
    total = 0.0
    total_sq = 0.0
    count = 0
    iterator: Any = indices
    if progress:
        from rich.progress import track

        iterator = track(indices, description="fbank statistics", transient=True)
    for i in iterator:
        fb = dataset.raw_fbank(i).double()
        total += float(fb.sum())
        total_sq += float((fb * fb).sum())
        count += fb.numel()
    if count == 0:
        raise ValueError("compute_stats: every clip was shorter than one analysis window")
    mean = total / count
    var = max(total_sq / count - mean * mean, 0.0)
    return mean, math.sqrt(var)
