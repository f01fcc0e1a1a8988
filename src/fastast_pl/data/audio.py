"""Decode audio files into mono float32 waveforms at one sample rate.

soundfile (libsndfile) reads WAV, FLAC and OGG/Vorbis (and MP3 with libsndfile >= 1.1);
channels are averaged to mono and the signal is resampled with
torchaudio's sinc resampler (``torchaudio.transforms.Resample``, same as
``torchaudio.functional.resample``) so every clip reaches the fbank at the same rate.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.transforms as T

from fastast_pl.data.checks import bad_audio_reason

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


class AudioDecodeError(RuntimeError):
    """A file could not be read as audio (missing, empty, corrupt or unsupported)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode audio file {self.path}: {reason}")


def decode(path: str | Path, window_ms: float | None = None) -> tuple[np.ndarray, int]:
    """Read ``path`` as ``((N, channels) float32 samples, sample rate)``, checked.

    Raises:
        AudioDecodeError: the file is missing, unreadable, corrupt, truncated (its WAV
            header promises more samples than it holds), holds no samples, NaN/inf, or
            fewer samples than one ``window_ms`` window (``checks.bad_audio_reason``).
    """
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as err:
        raise AudioDecodeError(path, f"{type(err).__name__}: {err}") from err
    reason = bad_audio_reason(path, data, int(file_rate), window_ms)
    if reason is not None:
        raise AudioDecodeError(path, reason)
    return data, int(file_rate)


def load_audio(path: str | Path, sample_rate: int, window_ms: float | None = None) -> torch.Tensor:
    """Read ``path`` as a mono float32 waveform of shape ``(1, N)`` at ``sample_rate`` Hz.

    Args:
        window_ms: The fbank window; a clip shorter than it is bad audio (None: no check).

    Raises:
        AudioDecodeError: see ``decode``.
    """
    data, file_rate = decode(Path(path), window_ms)  # (N, channels)
    # Channel mean by adding columns: a strided mean over axis 1, or a BLAS product (whose
    # thread pool wakes slowly on a busy machine), is 10-100x slower for long clips.
    mono = data[:, 0].copy()  # (N,)
    for c in range(1, data.shape[1]):
        mono += data[:, c]
    if data.shape[1] > 1:
        mono /= data.shape[1]
    waveform = torch.from_numpy(mono).unsqueeze(0)  # (1, N)
    if file_rate != sample_rate:
        waveform = _resampler(int(file_rate), int(sample_rate))(waveform)
    return waveform.contiguous()


@lru_cache(maxsize=16)
def _resampler(orig_freq: int, new_freq: int) -> T.Resample:
    """``torchaudio.transforms.Resample`` keeps its sinc kernel, which
    ``torchaudio.functional.resample`` rebuilds on every call (~30% of the time for a
    10 s 44.1 kHz clip); one per rate pair and process."""
    return T.Resample(orig_freq=orig_freq, new_freq=new_freq)
