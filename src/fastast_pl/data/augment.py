"""Training-time augmentation of the fbank: SpecAugment masks and mixup (AST recipe).

SpecAugment masks are applied after normalization and fill with 0 (the dataset mean), so a
masked region looks like "average", not like a loud band. Mixup mixes two clips' fbanks and
their targets (AST mixes waveforms; on the fbank the mix is the same for the linear part).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of training clips (validation/test clips are never augmented).

    Args:
        freqm: SpecAugment max frequency-mask width in bins (AST: 48; 0 = off).
        timem: SpecAugment max time-mask width in frames (AST AudioSet: 192; 0 = off).
        mixup: Probability that a training clip is mixed with another (0 = off).
        mixup_alpha: Beta(alpha, alpha) parameter of the mixup weight.
    """

    freqm: int = 0
    timem: int = 0
    mixup: float = 0.0
    mixup_alpha: float = 10.0

    def __post_init__(self) -> None:
        if self.freqm < 0 or self.timem < 0:
            raise ValueError(
                f"AugmentConfig.freqm and timem must be >= 0, got {self.freqm} and {self.timem}"
            )
        if not 0.0 <= self.mixup <= 1.0:
            raise ValueError(f"AugmentConfig.mixup is a probability in [0, 1], got {self.mixup}")
        if self.mixup_alpha <= 0:
            raise ValueError(f"AugmentConfig.mixup_alpha must be > 0, got {self.mixup_alpha}")

    def active(self) -> list[str]:
        """``"name=value"`` of every setting that changes a training clip (empty: none).

        ``mixup_alpha`` only shapes mixup, so it is listed only through ``mixup``.
        """
        return [
            f"{name}={value}"
            for name, value in (("freqm", self.freqm), ("timem", self.timem), ("mixup", self.mixup))
            if value
        ]

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
