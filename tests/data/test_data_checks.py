"""Audio that is not what it says: truncated WAVs, clips shorter than one window, and the
check functions that both ``on_bad_audio`` and ``check-data`` use."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from fastast_pl.data.audio import AudioDecodeError, load_audio
from fastast_pl.data.checks import inspect_audio, wav_header_frames
from fastast_pl.data.clips import Clip
from fastast_pl.data.dataset import AudioDataset
from fastast_pl.data.features import FeatureConfig

from helpers.audio import tone, write


def truncated_wav(path, seconds=1.0, keep=0.5, subtype="PCM_16"):
    """A WAV whose header promises ``seconds`` of audio but whose file holds ``keep`` of it."""
    write(path, tone(seconds, 16000), 16000, subtype=subtype)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_header_frames_read_from_the_riff_header(tmp_path, subtype):
    path = write(tmp_path / "a.wav", tone(0.25, 16000, channels=2), 16000, subtype=subtype)
    assert wav_header_frames(path) == 4000 == sf.info(str(path)).frames  # peer: libsndfile
    assert wav_header_frames(write(tmp_path / "b.flac", tone(0.1, 16000), 16000, "FLAC")) is None


def test_truncated_wav_is_bad_audio_naming_both_counts(tmp_path):
    path = truncated_wav(tmp_path / "cut.wav")
    data, _ = sf.read(str(path))  # libsndfile reads what is there, without complaint
    assert 0 < len(data) < 16000
    with pytest.raises(
        AudioDecodeError, match=rf"cut.wav.*header promises 16000 samples.*holds {len(data)}"
    ):
        load_audio(path, 16000)


def test_clip_shorter_than_one_window_is_bad_audio(tmp_path):
    short = write(tmp_path / "short.wav", tone(0.01, 16000), 16000)  # 160 samples < 400
    ds = AudioDataset([Clip(short, (0,))], 1, FeatureConfig(target_length=30))
    with pytest.raises(AudioDecodeError, match=r"short.wav.*160 samples.*one 25(\.0)? ms window"):
        ds[0]
    ok = write(tmp_path / "ok.wav", tone(0.03, 16000), 16000)  # 480 samples: one frame
    assert AudioDataset([Clip(ok, (0,))], 1, FeatureConfig(target_length=30))[0]["fbank"].shape == (
        30,
        128,
    )


def test_inspect_flags_every_kind_of_surprise(tmp_path):
    features = FeatureConfig(target_length=30)
    good = inspect_audio(write(tmp_path / "good.wav", tone(0.2, 16000), 16000), features)
    assert good.bad is None and good.warnings == [] and good.decoded_frames == 3200
    silent = inspect_audio(write(tmp_path / "s.wav", np.zeros(3200, np.float32), 16000), features)
    assert silent.bad is None and any("silent" in w for w in silent.warnings)
    low = inspect_audio(write(tmp_path / "low.wav", tone(0.2, 8000), 8000), features)
    assert low.bad is None and any("8000 Hz is below" in w for w in low.warnings)
    cut = inspect_audio(truncated_wav(tmp_path / "cut.wav"), features)
    assert "header promises 16000" in cut.bad and cut.header_frames == 16000
    short = inspect_audio(write(tmp_path / "short.wav", tone(0.01, 16000), 16000), features)
    assert "one 25" in short.bad
    nan = np.zeros(1600, np.float32)
    nan[3] = np.inf
    assert (
        "NaN or infinity"
        in inspect_audio(write(tmp_path / "inf.wav", nan, 16000, subtype="FLOAT"), features).bad
    )
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    assert "cannot decode" in inspect_audio(tmp_path / "junk.wav", features).bad


def test_float_wav_far_beyond_full_scale_is_bad_audio_naming_the_peak(tmp_path):
    samples = 8.0 * tone(0.5, 16000)  # int16-like scale errors are far larger; 8x suffices
    peak = f"{np.abs(samples).max():.4g}"
    loud = write(tmp_path / "loud.wav", samples, 16000, subtype="FLOAT")
    with pytest.raises(
        AudioDecodeError, match=rf"loud\.wav.*beyond full scale: peak amplitude {peak}"
    ):
        load_audio(loud, 16000)
    assert f"peak amplitude {peak}" in inspect_audio(loud, FeatureConfig()).bad
    ok = write(tmp_path / "ok.wav", 2.5 * tone(0.5, 16000), 16000, subtype="FLOAT")  # peak ~1.0
    assert load_audio(ok, 16000).abs().max() <= 1.5


def test_stereo_channels_that_cancel_in_the_downmix_are_bad_audio(tmp_path):
    w = tone(0.5, 16000)
    cancel = write(tmp_path / "inverted.wav", np.stack([w, -w], axis=1), 16000)
    with pytest.raises(AudioDecodeError, match=r"inverted\.wav.*2 channels cancel"):
        load_audio(cancel, 16000)
    assert "cancel in the mono downmix" in inspect_audio(cancel, FeatureConfig()).bad
    stereo = write(tmp_path / "stereo.wav", tone(0.5, 16000, channels=2), 16000)
    assert inspect_audio(stereo, FeatureConfig()).bad is None  # two unrelated tones: fine
