"""AudioDataset: the clips of one split -> model-ready features.

It decodes, computes the fbank (or reads it from the cache), and for training applies
mixup, SpecAugment, noise and time roll (``augment.py``); it yields
``{"fbank": (T, F), "target": (C,), "index": ()}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import torch
from torch.utils.data import Dataset, get_worker_info

from fastast_pl.data.audio import AudioDecodeError, load_audio
from fastast_pl.data.augment import (
    AugmentConfig,
    SpecAugment,
    add_noise_and_roll,
    mix,
    mix_waveforms,
    sample_mixup_lambda,
)
from fastast_pl.data.cache import FeatureCache
from fastast_pl.data.clips import Clip
from fastast_pl.data.features import FeatureConfig, compute_fbank, crop, normalize, pad_or_crop

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------
# Bad-audio bookkeeping shared between DataLoader workers


class BadAudioTally:
    """Counts skipped clips per DataLoader worker in shared memory, without locks.

    Each worker writes only its own row (row 0: the main process), so counts are exact.
    """

    def __init__(self, slots: int = 64, keep: int = 8) -> None:
        self.counts = torch.zeros(slots + 1, dtype=torch.int64).share_memory_()
        self.first = torch.full((slots + 1, keep), -1, dtype=torch.int64).share_memory_()

    def record(self, index: int) -> None:
        info = get_worker_info()
        row = 0 if info is None else 1 + info.id % (len(self.counts) - 1)
        n = int(self.counts[row])
        if n < self.first.shape[1]:
            self.first[row, n] = index
        self.counts[row] = n + 1

    def total(self) -> int:
        return int(self.counts.sum())

    def first_indices(self) -> list[int]:
        return [int(i) for i in self.first.flatten() if i >= 0]

    def reset(self) -> None:
        self.counts.zero_()
        self.first.fill_(-1)


# ---------------------------------------------------------------------------------------
# The torch Dataset


class AudioDataset(Dataset):
    """Clips of one split as model-ready features (callable without a Trainer).

    Args:
        clips: The split's clips.
        num_classes: Size of the target vector.
        features: Feature settings (fbank, length, normalization, training dither).
        train: Apply dither and ``augment`` (training split only).
        augment: SpecAugment and mixup settings (used only with ``train``; None: none).
        cache: Optional feature cache (used unless training with dither > 0).
        on_bad_audio: "raise": an unreadable clip stops loading with its path; "skip":
            it is replaced by another random clip and recorded in ``tally``.
        tally: Where skipped clips are counted (created if not given).
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        num_classes: int,
        features: FeatureConfig,
        train: bool = False,
        augment: AugmentConfig | None = None,
        cache: FeatureCache | None = None,
        on_bad_audio: Literal["raise", "skip"] = "raise",
        tally: BadAudioTally | None = None,
    ) -> None:
        if on_bad_audio not in ("raise", "skip"):
            raise ValueError(f"on_bad_audio must be 'raise' or 'skip', got {on_bad_audio!r}")
        self.clips = list(clips)
        self.num_classes = num_classes
        self.features = features
        self.train = train
        augment = augment if augment is not None and train else AugmentConfig()
        self.augment = augment
        self.mixup, self.mixup_alpha = augment.mixup, augment.mixup_alpha
        self.specaug = (
            SpecAugment(augment.freqm, augment.timem) if augment.freqm or augment.timem else None
        )
        self.dither = features.dither if train else 0.0
        self.cache = cache if self.dither == 0 else None
        if self.cache is not None and self.mixup > 0 and augment.mixup_domain == "waveform":
            log.info(
                "augment.mixup_domain=waveform: mixed training clips (mixup=%s) are decoded and "
                "featurized from their audio, bypassing the feature cache",
                self.mixup,
            )
        self.on_bad_audio = on_bad_audio
        self.tally = tally if tally is not None else BadAudioTally()

    def __len__(self) -> int:
        return len(self.clips)

    def target(self, index: int) -> torch.Tensor:
        """One-hot / multi-hot target of clip ``index``, ``(C,)`` float32."""
        out = torch.zeros(self.num_classes, dtype=torch.float32)
        out[list(self.clips[index].labels)] = 1.0
        return out

    def raw_fbank(self, index: int) -> torch.Tensor:
        """Unnormalized fbank of clip ``index`` cropped to ``target_length``, ``(frames, F)``.

        Raises:
            AudioDecodeError: the clip cannot be decoded.
        """
        path = self.clips[index].path
        if self.cache is not None:
            cached = self.cache.load(path)
            if cached is not None:
                return cached
        waveform = load_audio(path, self.features.sample_rate)  # (1, N)
        fbank = crop(
            compute_fbank(waveform, self.features, dither=self.dither), self.features.target_length
        )
        if self.cache is not None:
            self.cache.save(path, fbank)
        return fbank

    def waveform(self, index: int) -> torch.Tensor:
        """Decoded, resampled ``(1, N)`` waveform of clip ``index`` (never cached)."""
        return load_audio(self.clips[index].path, self.features.sample_rate)

    def _load(self, index: int, waveform: bool = False) -> tuple[int, torch.Tensor]:
        """(index actually used, padded raw fbank ``(T, F)`` or with ``waveform`` the
        ``(1, N)`` waveform), skipping bad clips if asked."""
        for _ in range(20):
            try:
                if waveform:
                    return index, self.waveform(index)
                return index, pad_or_crop(self.raw_fbank(index), self.features.target_length)
            except AudioDecodeError:
                if self.on_bad_audio == "raise":
                    raise
                self.tally.record(index)
                index = int(torch.randint(len(self.clips), ()))
        raise RuntimeError(
            "20 clips in a row could not be decoded; is the dataset readable at all?"
        )

    def _mixed_from_waveforms(self, index: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """AST's waveform mixup: (index used, raw padded fbank ``(T, F)``, mixed target)."""
        index, wave = self._load(index, waveform=True)  # (1, N)
        other, wave_other = self._load(int(torch.randint(len(self.clips), ())), waveform=True)
        lam = sample_mixup_lambda(self.mixup_alpha)
        mixed = mix_waveforms(wave, wave_other, lam)  # (1, N)
        fbank = crop(
            compute_fbank(mixed, self.features, dither=self.dither), self.features.target_length
        )
        target = lam * self.target(index) + (1 - lam) * self.target(other)
        return index, pad_or_crop(fbank, self.features.target_length), target

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        aug = self.augment
        if self.mixup > 0 and float(torch.rand(())) < self.mixup:
            if aug.mixup_domain == "waveform":
                index, fbank, target = self._mixed_from_waveforms(index)  # (T, F), (C,)
            else:
                index, fbank = self._load(index)  # (T, F)
                other, fbank_other = self._load(int(torch.randint(len(self.clips), ())))
                lam = sample_mixup_lambda(self.mixup_alpha)
                fbank, target = mix(fbank, self.target(index), fbank_other, self.target(other), lam)
        else:
            index, fbank = self._load(index)  # (T, F)
            target = self.target(index)
        if self.specaug is not None and aug.mask_before_norm:
            fbank = self.specaug(fbank)  # AST: masks of 0 on the raw fbank
        fbank = normalize(fbank, self.features.mean, self.features.std)
        if self.specaug is not None and not aug.mask_before_norm:
            fbank = self.specaug(fbank)
        if aug.noise > 0 or aug.time_roll > 0:
            fbank = add_noise_and_roll(fbank, aug.noise, aug.time_roll)
        return {
            "fbank": fbank.float(),
            "target": target,
            "index": torch.tensor(index, dtype=torch.int64),
        }

    def bad_paths(self) -> list[str]:
        """Paths of the first few clips skipped so far."""
        return [str(self.clips[i].path) for i in self.tally.first_indices()]
