"""Short real audio files for tests: tones written by soundfile, folder datasets, and the AST
fbank recipe written out with library calls (the reference the feature code is checked against)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torchaudio.compliance import kaldi

MEAN, STD = -4.2677393, 4.5689974


def tone(
    seconds: float, sr: int, freq: float = 440.0, channels: int = 1, seed: int = 0
) -> np.ndarray:
    """A tone plus a little noise, (N,) or (N, channels), float32 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    cols = [
        0.4 * np.sin(2 * math.pi * freq * (c + 1) * t) + 0.01 * rng.standard_normal(len(t))
        for c in range(channels)
    ]
    data = np.stack(cols, axis=1).astype(np.float32)
    return data[:, 0] if channels == 1 else data


def write(
    path: Path, data: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sr, format=fmt, subtype=subtype)
    return path


def reference_fbank(
    path: Path, target_length: int, mel_bins: int = 128, mean: float = MEAN, std: float = STD
) -> torch.Tensor:
    """The AST recipe written out with library calls only: soundfile -> mono -> resample to
    16 kHz -> remove mean -> kaldi.fbank -> zero-pad/crop -> (x - mean) / (2 std)."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wav = torch.from_numpy(data).mean(dim=1, keepdim=True).t()  # (1, N)
    if sr != 16000:
        wav = AF.resample(wav, sr, 16000)
    wav = wav - wav.mean()
    fb = kaldi.fbank(
        wav,
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=mel_bins,
        dither=0.0,
        frame_shift=10,
        frame_length=25,
    )
    n = fb.shape[0]
    if n < target_length:
        fb = torch.nn.functional.pad(fb, (0, 0, 0, target_length - n))
    else:
        fb = fb[:target_length]
    return (fb - mean) / (std * 2)


def raw_reference(path: Path, target_length: int, mel_bins: int = 128) -> torch.Tensor:
    """Unnormalized padded fbank from ``reference_fbank`` (undo the normalization)."""
    return reference_fbank(path, target_length, mel_bins) * (2 * STD) + MEAN


def folder_dataset(
    root: Path, per_class: dict[str, int], seconds: float = 0.3, sr: int = 16000
) -> Path:
    """root/<class>/<class>_<i>.wav with distinct tones."""
    for c, (name, count) in enumerate(per_class.items()):
        for i in range(count):
            write(
                root / name / f"{name}_{i}.wav",
                tone(seconds, sr, 300 + 200 * c + 10 * i, seed=i),
                sr,
            )
    return root
