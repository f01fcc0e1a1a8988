"""Training-time augmentation: SpecAugment masks, mixup, noise and time roll (AST recipe).

Our defaults: mixup mixes two clips' raw fbanks, and SpecAugment masks after normalization
filling with 0 (the dataset mean), so both work on cached features. AST's exact forms
(YuanGongND/ast ``src/dataloader.py``) are options: ``mixup_domain="waveform"`` mixes the
waveforms before the fbank (the feature cache is bypassed for mixed clips), and
``mask_before_norm`` masks the raw fbank with 0 before normalization (a masked region then
reads ``-mean / (2 std)``; this works on cached raw fbanks). ``noise``/``time_roll`` are
AST's Speech Commands augmentation, applied after normalization.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from fastast_pl.utils.numbers import check_number

MIXUP_DOMAINS = ("fbank", "waveform")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of training clips (validation/test clips are never augmented).

    Args:
        freqm: SpecAugment max frequency-mask width in bins (AST: 48; 0 = off).
        timem: SpecAugment max time-mask width in frames (AST AudioSet: 192; 0 = off).
        mixup: Probability that a training clip is mixed with another (0 = off).
        mixup_alpha: Beta(alpha, alpha) parameter of the mixup weight (AST: np.random.beta(10, 10)).
        mixup_domain: "fbank" (ours, default: mix the two raw fbanks, cache-friendly) or
            "waveform" (AST dataloader.py: remove each mean, cut/zero-pad the partner to the
            first clip's length, mix, remove the mean again, then the fbank; mixed clips
            are decoded from audio, bypassing the feature cache).
        mask_before_norm: False (ours, default): SpecAugment after normalization, masks
            read 0; True (AST dataloader.py): mask the raw fbank, then normalize.
        noise: Largest noise amplitude added after normalization, ``fbank + U[0,1)^{TxF} *
            U[0,1) * noise`` (AST Speech Commands, run_sc.sh noise=True: 1/10 = 0.1; 0 = off).
        time_roll: Roll the fbank in time by a shift drawn uniformly from
            ``[-time_roll, time_roll)`` frames, after the noise (AST: np.random.randint(-10,
            10), so -10..9; 0 = off).
    """

    freqm: int = 0
    timem: int = 0
    mixup: float = 0.0
    mixup_alpha: float = 10.0
    mixup_domain: Literal["fbank", "waveform"] = "fbank"
    mask_before_norm: bool = False
    noise: float = 0.0
    time_roll: int = 0

    def __post_init__(self) -> None:
        check_number("AugmentConfig.freqm", self.freqm, at_least=0, integer=True)
        check_number("AugmentConfig.timem", self.timem, at_least=0, integer=True)
        check_number("AugmentConfig.mixup", self.mixup, at_least=0, at_most=1)
        check_number("AugmentConfig.mixup_alpha", self.mixup_alpha, above=0)
        if self.mixup_domain not in MIXUP_DOMAINS:
            raise ValueError(
                f"AugmentConfig.mixup_domain must be one of {MIXUP_DOMAINS}, got "
                f"{self.mixup_domain!r}"
            )
        check_number("AugmentConfig.noise", self.noise, at_least=0)
        check_number("AugmentConfig.time_roll", self.time_roll, at_least=0, integer=True)

    def active(self) -> list[str]:
        """``"name=value"`` of every setting that changes a training clip (empty: none).

        ``mixup_alpha``, ``mixup_domain`` and ``mask_before_norm`` only shape mixup and the
        masks, so they are listed only through ``mixup``, ``freqm`` and ``timem``.
        """
        settings = (
            ("freqm", self.freqm),
            ("timem", self.timem),
            ("mixup", self.mixup),
            ("noise", self.noise),
            ("time_roll", self.time_roll),
        )
        return [f"{name}={value}" for name, value in settings if value]

    def changes_teacher_input(self) -> bool:
        """Whether a training clip's fbank differs from epoch to epoch (no fixed teacher input)."""
        return bool(self.active())


class SpecAugment(torch.nn.Module):
    """Frequency and time masking of one ``(T, F)`` fbank (training only).

    Args:
        freqm: Largest frequency mask width in bins (0 disables).
        timem: Largest time mask width in frames (0 disables).
    """

    def __init__(self, freqm: int = 0, timem: int = 0) -> None:
        super().__init__()
        if freqm < 0 or timem < 0:
            raise ValueError(f"freqm and timem must be >= 0, got {freqm} and {timem}")
        import torchaudio.transforms as T

        self.freq_mask = T.FrequencyMasking(freqm) if freqm > 0 else None
        self.time_mask = T.TimeMasking(timem) if timem > 0 else None

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        spec = fbank.t().unsqueeze(0)  # (1, F, T): torchaudio masks want (..., freq, time)
        if self.freq_mask is not None:
            spec = self.freq_mask(spec)
        if self.time_mask is not None:
            spec = self.time_mask(spec)
        return spec.squeeze(0).t().contiguous()  # (T, F)


def sample_mixup_lambda(alpha: float) -> float:
    """Draw the mixing weight of the first clip from Beta(alpha, alpha) (torch RNG)."""
    if alpha <= 0:
        raise ValueError(f"mixup_alpha must be > 0, got {alpha}")
    beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
    return float(beta.sample())


def mix(
    fbank_a: torch.Tensor,
    target_a: torch.Tensor,
    fbank_b: torch.Tensor,
    target_b: torch.Tensor,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convex combination of two clips and of their targets (weight ``lam`` on the first)."""
    return lam * fbank_a + (1 - lam) * fbank_b, lam * target_a + (1 - lam) * target_b


def mix_waveforms(wave_a: torch.Tensor, wave_b: torch.Tensor, lam: float) -> torch.Tensor:
    """AST's waveform mixup of two ``(1, N)`` waveforms: ``(1, N_a)``.

    Each mean is removed, the partner is cut or zero-padded to the first clip's length,
    and the mean of the mix is removed again (AST ``src/dataloader.py`` ``_wav2fbank``).
    """
    wave_a = wave_a - wave_a.mean()
    wave_b = wave_b - wave_b.mean()
    n = wave_a.shape[1]
    if wave_b.shape[1] < n:
        wave_b = torch.nn.functional.pad(wave_b, (0, n - wave_b.shape[1]))  # (1, N_a)
    else:
        wave_b = wave_b[:, :n]  # (1, N_a)
    mixed = lam * wave_a + (1 - lam) * wave_b
    return mixed - mixed.mean()


def add_noise_and_roll(fbank: torch.Tensor, noise: float, max_roll: int) -> torch.Tensor:
    """AST's Speech Commands augmentation of a normalized ``(T, F)`` fbank (torch RNG).

    ``fbank + U[0,1)^{TxF} * U[0,1) * noise``, then a roll in time by a shift drawn from
    ``[-max_roll, max_roll)`` (AST: noise 1/10, ``np.random.randint(-10, 10)``).
    """
    if noise > 0:
        field = torch.rand(fbank.shape)  # (T, F)
        fbank = fbank + field * torch.rand(()) * noise
    if max_roll > 0:
        shift = int(torch.randint(-max_roll, max_roll, ()))
        fbank = torch.roll(fbank, shift, dims=0)  # (T, F), rows moved by `shift` frames
    return fbank
