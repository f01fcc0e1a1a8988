"""Decode audio files into mono float32 waveforms at one sample rate.

soundfile (libsndfile) reads WAV, FLAC and OGG/Vorbis (and MP3 with libsndfile >= 1.1);
channels are averaged to mono and the signal is resampled with
torchaudio's sinc resampler (``torchaudio.transforms.Resample``, same as
``torchaudio.functional.resample``) so every clip reaches the fbank at the same rate.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.transforms as T

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


class AudioDecodeError(RuntimeError):
    """A file could not be read as audio (missing, empty, corrupt or unsupported)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode audio file {self.path}: {reason}")


def load_audio(path: str | Path, sample_rate: int) -> torch.Tensor:
    """Read ``path`` as a mono float32 waveform of shape ``(1, N)`` at ``sample_rate`` Hz.

    Raises:
        AudioDecodeError: the file is missing, unreadable, corrupt or holds no samples.
    """
    path = Path(path)
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as err:
        raise AudioDecodeError(path, f"{type(err).__name__}: {err}") from err
    if data.shape[0] == 0:
        raise AudioDecodeError(path, "the file holds no audio samples")
    # Channel mean by adding columns: a strided mean over axis 1, or a BLAS product (whose
    # thread pool wakes slowly on a busy machine), is 10-100x slower for long clips.
    mono = data[:, 0].copy()  # (N,)
    for c in range(1, data.shape[1]):
        mono += data[:, c]
    if data.shape[1] > 1:
        mono /= data.shape[1]
    waveform = torch.from_numpy(mono).unsqueeze(0)  # (1, N)
    if not math.isfinite(float(waveform.sum())):  # one cheap pass; NaN/inf poison the fbank
        raise AudioDecodeError(path, "the decoded samples contain NaN or infinity")
    if file_rate != sample_rate:
        waveform = _resampler(int(file_rate), int(sample_rate))(waveform)
    return waveform.contiguous()


@lru_cache(maxsize=16)
def _resampler(orig_freq: int, new_freq: int) -> T.Resample:
    """``torchaudio.transforms.Resample`` keeps its sinc kernel, which
    ``torchaudio.functional.resample`` rebuilds on every call (~30% of the time for a
    10 s 44.1 kHz clip); one per rate pair and process."""
    return T.Resample(orig_freq=orig_freq, new_freq=new_freq)
