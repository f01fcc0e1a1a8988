"""Decode audio files into mono float32 waveforms at one sample rate.

soundfile (libsndfile) reads WAV, FLAC and OGG/Vorbis (and MP3 with libsndfile >= 1.1);
channels are averaged to mono and the signal is resampled with
``torchaudio.functional.resample`` so every clip reaches the fbank at the same rate.
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF

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
    waveform = torch.from_numpy(data).mean(dim=1).unsqueeze(0)  # (1, N) mono
    if not torch.isfinite(waveform).all():
        raise AudioDecodeError(path, "the decoded samples contain NaN or infinity")
    if file_rate != sample_rate:
        waveform = AF.resample(waveform, orig_freq=int(file_rate), new_freq=int(sample_rate))
    return waveform.contiguous()


def audio_info(path: str | Path) -> tuple[int, int, int]:
    """Return ``(sample_rate, frames, channels)`` from the file header without decoding."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise AudioDecodeError(path, f"{type(err).__name__}: {err}") from err
    return int(info.samplerate), int(info.frames), int(info.channels)
