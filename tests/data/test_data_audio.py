"""Decoding: formats, sample rates, channel counts, and bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from fastast_pl.data.audio import AudioDecodeError, load_audio

from helpers.audio import tone, write


@pytest.mark.parametrize(
    "fmt,subtype,sr,channels",
    [
        ("WAV", "PCM_16", 16000, 1),
        ("WAV", "FLOAT", 44100, 2),
        ("FLAC", "PCM_24", 22050, 1),
        ("OGG", "VORBIS", 16000, 2),
        ("WAV", "PCM_16", 8000, 3),
    ],
)
def test_decode_formats_to_mono_16k(tmp_path, fmt, subtype, sr, channels):
    path = write(
        tmp_path / f"clip.{fmt.lower()}", tone(0.5, sr, channels=channels), sr, fmt, subtype
    )
    wav = load_audio(path, 16000)
    assert wav.shape == (1, 8000) and wav.dtype == torch.float32
    # Independent reference: soundfile, channel mean, torchaudio resample.
    data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    ref = torch.from_numpy(data.mean(axis=1, dtype=np.float32)).unsqueeze(0)
    if file_sr != 16000:
        ref = AF.resample(ref, file_sr, 16000)
    torch.testing.assert_close(wav, ref)


def test_stereo_is_averaged(tmp_path):
    left = np.full(1600, 0.5, dtype=np.float32)
    right = np.full(1600, -0.25, dtype=np.float32)
    path = write(tmp_path / "st.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    torch.testing.assert_close(load_audio(path, 16000), torch.full((1, 1600), 0.125))


def test_corrupt_file_names_path(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x00garbage" + bytes(range(200)))
    with pytest.raises(AudioDecodeError, match="corrupt.wav"):
        load_audio(path, 16000)


def test_empty_file_names_path(tmp_path):
    path = tmp_path / "empty.flac"
    path.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty.flac"):
        load_audio(path, 16000)


def test_zero_samples_is_an_error(tmp_path):
    path = write(tmp_path / "nothing.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioDecodeError, match="nothing.wav.*no audio samples"):
        load_audio(path, 16000)


def test_missing_file_names_path(tmp_path):
    with pytest.raises(AudioDecodeError, match="absent.wav"):
        load_audio(tmp_path / "absent.wav", 16000)


def test_nan_samples_are_an_error(tmp_path):
    data = np.zeros(1600, dtype=np.float32)
    data[100] = np.nan
    path = write(tmp_path / "nan.wav", data, 16000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="nan.wav.*NaN"):
        load_audio(path, 16000)
