"""AudioDataset: the clips of one split -> model-ready features.

It decodes, computes the fbank (or reads it from the cache), and for training applies
mixup, SpecAugment, noise and time roll (``augment.py``); it yields
``{"fbank": (T, F), "target": (C,), "index": (), "clip_key": str, "augmented": (),
"labeled": ()}``
(docs/architecture.md, "Batches"): what a LightningModule needs to know about a clip comes
with the clip, so no module reads the dataset behind the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from fastast_pl.data.audio import AudioDecodeError, load_audio
from fastast_pl.data.augment import (
    AugmentConfig,
    SpecAugment,
    add_noise_and_roll,
    mix,
    mix_waveforms,
    sample_mixup_lambda,
)
from fastast_pl.data.cache import FeatureCache, file_fingerprint
from fastast_pl.data.clips import Clip
from fastast_pl.data.features import FeatureConfig, compute_fbank, crop, normalize, pad_or_crop

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------
# Bad-audio bookkeeping shared between DataLoader workers


class BadAudioTally:
    """Which clips of a split were skipped as bad audio, in shared memory, without locks.

    One flag per clip: DataLoader workers (forked before the first record) set flags
    idempotently, so a file met twice (a retry, a mixup partner, another worker) is
    counted once: the count is of files, not of attempts.
    """

    def __init__(self, size: int) -> None:
        self.flags = torch.zeros(max(size, 1), dtype=torch.bool).share_memory_()

    def record(self, index: int) -> None:
        self.flags[index] = True

    def total(self) -> int:
        return int(self.flags.sum())

    def first_indices(self, keep: int = 8) -> list[int]:
        return self.flags.nonzero().flatten()[:keep].tolist()

    def reset(self) -> None:
        self.flags.zero_()


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
        on_bad_audio: "raise": a bad clip (``checks.bad_audio_reason``) stops loading with
            its path; "skip": it is replaced by another random clip and recorded in
            ``tally`` (for training; evaluation splits are scanned and left without their
            bad clips by the datamodule instead, see ``AudioDataModule``).
        tally: Where skipped clips are counted (created if not given).
        unlabeled: Training clips without labels (``unlabeled.py``), after ``clips``: their
            target is all zeros and ``labeled`` False; a mixup partner or a bad clip's
            stand-in is drawn from the same kind (labeled or not).
        waveforms: Add each clip's ``"waveform"`` (``clip_waveform``: the clean audio, or the
            waveform mix with mixup, before fbank masking, noise and roll) for a waveform
            teacher; fbank-domain mixup is refused then (no waveform to give).
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
        unlabeled: Sequence[Path] = (),
        waveforms: bool = False,
    ) -> None:
        if on_bad_audio not in ("raise", "skip"):
            raise ValueError(f"on_bad_audio must be 'raise' or 'skip', got {on_bad_audio!r}")
        if waveforms and train and augment is not None and augment.mixup > 0:
            if augment.mixup_domain != "waveform":
                raise ValueError(
                    f"waveforms=True with augment.mixup={augment.mixup} needs "
                    "augment.mixup_domain='waveform' (found 'fbank'): a waveform teacher must "
                    "hear the mix the student sees, and a mix of fbanks has no waveform"
                )
        self.waveforms = waveforms
        self.clips = list(clips) + [Clip(Path(p), ()) for p in unlabeled]
        self.num_labeled = len(clips)
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
        self.tally = tally if tally is not None else BadAudioTally(len(self.clips))
        self._clip_keys: dict[int, str] = {}

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
        waveform = load_audio(path, self.features.sample_rate, self.features.frame_length)  # (1, N)
        fbank = crop(
            compute_fbank(waveform, self.features, dither=self.dither), self.features.target_length
        )
        if fbank.shape[0] == 0:  # rounding at the resampled rate: still less than a window
            raise AudioDecodeError(
                path, f"no fbank frame: {waveform.shape[1]} samples after resampling to "
                f"{self.features.sample_rate} Hz, one window needs {self.features.window_samples}",
            )  # fmt: skip
        if self.cache is not None:
            self.cache.save(path, fbank)
        return fbank

    def waveform(self, index: int) -> torch.Tensor:
        """Decoded, resampled ``(1, N)`` waveform of clip ``index`` (never cached), with the
        same bad-audio checks as ``raw_fbank``."""
        return load_audio(
            self.clips[index].path, self.features.sample_rate, self.features.frame_length
        )

    def labeled(self, index: int) -> bool:
        """Whether clip ``index`` has labels (the unlabeled clips come after the labeled)."""
        return index < self.num_labeled

    def _random_like(self, index: int) -> int:
        """A random clip of the same kind as ``index`` (labeled or unlabeled)."""
        start, stop = (
            (0, self.num_labeled) if self.labeled(index) else (self.num_labeled, len(self))
        )
        return start + int(torch.randint(stop - start, ()))

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
                index = self._random_like(index)
        raise RuntimeError(
            "20 clips in a row could not be decoded; is the dataset readable at all?"
        )

    def _mixed_from_waveforms(
        self, index: int
    ) -> tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]:
        """AST's waveform mixup: (index used, raw padded fbank ``(T, F)``, mixed target,
        the mixed ``(1, N)`` waveform)."""
        index, wave = self._load(index, waveform=True)  # (1, N)
        other, wave_other = self._load(self._random_like(index), waveform=True)
        lam = sample_mixup_lambda(self.mixup_alpha)
        mixed = mix_waveforms(wave, wave_other, lam)  # (1, N)
        fbank = crop(
            compute_fbank(mixed, self.features, dither=self.dither), self.features.target_length
        )
        target = lam * self.target(index) + (1 - lam) * self.target(other)
        return index, pad_or_crop(fbank, self.features.target_length), target, mixed

    def clip_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        """A ``(1, N)`` waveform cut or zero-padded to the span the fbank's ``target_length``
        frames cover, ``((T - 1) * shift + window,)`` samples (the waveform a waveform
        teacher hears)."""
        f = self.features
        shift = int(f.sample_rate * f.frame_shift * 0.001)
        n = (f.target_length - 1) * shift + f.window_samples
        wave = wave[0, :n]  # (<= n,)
        return torch.nn.functional.pad(wave, (0, n - wave.shape[0]))  # (n,)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        aug = self.augment
        mixed = self.mixup > 0 and float(torch.rand(())) < self.mixup
        wave = None
        if mixed:
            if aug.mixup_domain == "waveform":
                index, fbank, target, wave = self._mixed_from_waveforms(index)  # (T, F), (C,)
            else:
                index, fbank = self._load(index)  # (T, F)
                other, fbank_other = self._load(self._random_like(index))
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
        # A random change of this clip's input (this draw differs from the next epoch's).
        augmented = mixed or self.specaug is not None or bool(aug.noise or aug.time_roll)
        augmented = augmented or self.dither > 0
        item: dict[str, torch.Tensor | str] = {
            "fbank": fbank.float(),
            "target": target,
            "index": torch.tensor(index, dtype=torch.int64),
            "clip_key": self.clip_key(index),
            "augmented": torch.tensor(bool(augmented)),
            "labeled": torch.tensor(self.labeled(index)),
        }
        if self.waveforms:  # the audio the fbank came from, before any fbank augmentation
            item["waveform"] = self.clip_waveform(
                wave if wave is not None else self.waveform(index)
            )
        return item

    def clip_key(self, index: int) -> str:
        """What clip ``index`` is, independent of its row number: its file's fingerprint
        (a hash of the file's bytes; ``cache.file_fingerprint``), e.g. for the teacher-logits cache;
        computed once per clip (per DataLoader worker)."""
        key = self._clip_keys.get(index)
        if key is None:
            key = self._clip_keys[index] = file_fingerprint(self.clips[index].path)
        return key

    def bad_paths(self) -> list[str]:
        """Paths of the first few clips skipped so far (each file once)."""
        return [str(self.clips[i].path) for i in self.tally.first_indices()]
