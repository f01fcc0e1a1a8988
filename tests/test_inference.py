"""Train a tiny model for a few steps, then classify one's own WAVs: API and CLI agree.

The checkpoint is written by a real Lightning Trainer (so by the modules' own
on_save_checkpoint); the references are the training pipeline's AudioDataset and the
window/aggregation formulas written out.
"""

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import fastast_pl
from fastast_pl.cli import build_cli, main
from fastast_pl.data.audio import AudioDecodeError, load_audio
from fastast_pl.data.clips import Clip
from fastast_pl.data.dataset import AudioDataset
from fastast_pl.data.features import compute_fbank, normalize
from fastast_pl.models.checkpoints import RECORD_KEY

from helpers.tiny_run import tiny_args

T, F = 64, 32  # frames, mel bins of the tiny model
SR = 16000


def _samples(frames: int) -> int:
    """Samples giving exactly ``frames`` 25 ms / 10 ms frames at 16 kHz."""
    return 400 + (frames - 1) * 160


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    args = [
        "fit",
        *tiny_args(tmp / "synthetic", tmp / "runs"),
        "--model.init_args.eval_merge=2",
        "--trainer.max_steps=3",
        "--trainer.limit_val_batches=1",
        "--trainer.logger=false",
    ]
    cli = build_cli(args)
    ckpt = tmp / "tiny.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    return cli, ckpt


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """A flat folder: shorter (at 22.05 kHz), equal, three times longer (stereo), not audio."""
    folder = tmp_path_factory.mktemp("mine")
    rng = np.random.default_rng(0)
    sf.write(folder / "short.wav", 0.1 * rng.standard_normal(6000), 22050)
    sf.write(folder / "equal.wav", 0.1 * rng.standard_normal(_samples(T)), SR)
    sf.write(folder / "long.wav", 0.1 * rng.standard_normal((_samples(3 * T), 2)), SR)
    (folder / "broken.wav").write_bytes(b"RIFF not really a wave file")
    single = tmp_path_factory.mktemp("one") / "single.flac"
    sf.write(single, 0.1 * rng.standard_normal(_samples(2 * T)), SR)
    return folder, single


def test_checkpoint_carries_inference_settings(trained):
    cli, ckpt = trained
    saved = torch.load(ckpt, weights_only=False)[RECORD_KEY]
    data = cli.datamodule
    assert saved["class_names"] == list(data.class_names) and len(saved["class_names"]) == 3
    assert saved["features"] == data.features.to_dict()
    assert saved["multi_label"] is False
    assert saved["merge"] == [2, 2] and saved["train_merge"] == [0, 0]


def test_api_and_cli_agree_on_a_folder_and_a_file(trained, clips, tmp_path, capsys):
    cli, ckpt = trained
    folder, single = clips
    classifier = fastast_pl.AudioClassifier.from_pretrained(ckpt, device="cpu")
    assert classifier.model.merge_schedule().r == [2, 2]  # the schedule it was evaluated with
    preds = classifier.predict([folder, single], top_k=2, on_bad_audio="skip")
    by_name = {Path(p.source).name: p for p in preds}
    assert sorted(by_name) == ["equal.wav", "long.wav", "short.wav", "single.flac"]
    # 3T frames, hop T/2 -> windows at 0, 32, 64, 96, 128; 2T frames -> 0, 32, 64
    assert [by_name[n].windows for n in ("short.wav", "equal.wav", "long.wav", "single.flac")] == [
        1,
        1,
        5,
        3,
    ]
    names = cli.datamodule.class_names
    for p in preds:
        assert [c.label for c in p.top_k] == [names[c.index] for c in p.top_k]
        assert p.top_k[0].score >= p.top_k[1].score
        torch.testing.assert_close(p.scores.sum(), torch.tensor(1.0))

    out = tmp_path / "preds.csv"
    code = main(
        ["classify", str(ckpt), str(folder), str(single), "--top-k", "2", "--out", str(out)]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "broken.wav" in err and "left out" in err
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["path"]).name for r in rows] == [
        "equal.wav",
        "long.wav",
        "short.wav",
        "single.flac",
    ]
    for row in rows:
        pred = by_name[Path(row["path"]).name]
        for k, hit in enumerate(pred.top_k, start=1):
            assert row[f"label_{k}"] == hit.label
            assert float(row[f"score_{k}"]) == pytest.approx(hit.score, abs=2e-6)
    # --on-bad-audio raise stops at the broken file, naming it
    code = main(["classify", str(ckpt), str(folder), "--on-bad-audio", "raise"])
    assert code == 2 and "broken.wav" in capsys.readouterr().err


def test_scores_match_the_training_pipeline(trained, clips):
    """Equal/short clips: the eval dataset's features through the module; long clip: the
    windows of the whole normalised fbank, softmax per window, mean over windows."""
    cli, ckpt = trained
    folder, _ = clips
    module = cli.model.eval()
    module.model.set_merge(2)
    classifier = fastast_pl.AudioClassifier.from_pretrained(ckpt, device="cpu")
    features = cli.datamodule.features
    for name in ("equal.wav", "short.wav"):
        dataset = AudioDataset([Clip(folder / name, (0,))], 3, features)
        with torch.no_grad():
            want = module(dataset[0]["fbank"][None]).softmax(-1)[0]
        (got,) = classifier.predict(folder / name, top_k=3)
        torch.testing.assert_close(got.scores, want, atol=1e-6, rtol=1e-5)
    wave = load_audio(folder / "long.wav", features.sample_rate)
    full = normalize(compute_fbank(wave, features), features.mean, features.std)  # (3T, F)
    assert full.shape[0] == 3 * T
    windows = torch.stack([full[s : s + T] for s in (0, 32, 64, 96, 128)])  # (5, T, F)
    with torch.no_grad():
        want = module(windows).softmax(-1).mean(0)
    (got,) = classifier.predict(folder / "long.wav", top_k=3, batch_size=2)
    torch.testing.assert_close(got.scores, want, atol=1e-6, rtol=1e-5)
    (got_max,) = classifier.predict(folder / "long.wav", aggregate="max", hop=0.64)
    assert got_max.windows == 3  # windows at 0, 64, 128 frames
    with torch.no_grad():
        want_max = module(windows[[0, 2, 4]]).softmax(-1).amax(0)
    torch.testing.assert_close(got_max.scores, want_max, atol=1e-6, rtol=1e-5)


def test_older_checkpoints_say_what_must_be_given(trained, clips, tmp_path, caplog):
    _, ckpt = trained
    folder, _ = clips
    checkpoint = torch.load(ckpt, weights_only=False)
    no_names = dict(checkpoint)
    no_names[RECORD_KEY] = dict(checkpoint[RECORD_KEY], class_names=None)
    torch.save(no_names, tmp_path / "no_names.ckpt")
    with caplog.at_level(logging.WARNING, logger="fastast_pl"):
        classifier = fastast_pl.AudioClassifier.from_pretrained(tmp_path / "no_names.ckpt")
    assert "no class names" in caplog.text
    (pred,) = classifier.predict(folder / "equal.wav", top_k=3)
    assert sorted(c.label for c in pred.top_k) == ["0", "1", "2"]

    old = {k: v for k, v in checkpoint.items() if k != RECORD_KEY}
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match=r"feature settings.*features=\{'sample_rate'"):
        fastast_pl.AudioClassifier.from_pretrained(tmp_path / "old.ckpt")
    given = {k: checkpoint[RECORD_KEY]["features"][k] for k in ("sample_rate", "mean", "std")}
    classifier = fastast_pl.AudioClassifier.from_pretrained(tmp_path / "old.ckpt", features=given)
    assert classifier.features.target_length == T and classifier.features.num_mel_bins == F
    assert classifier.model.merge_schedule().r == [2, 2]  # eval_merge from the hyper-parameters


def test_waveform_layout_samples_channels_is_refused(trained, clips):
    _, ckpt = trained
    folder, _ = clips
    classifier = fastast_pl.AudioClassifier.from_pretrained(ckpt, device="cpu")
    w, rate = sf.read(folder / "equal.wav", dtype="float32")  # (N,)
    assert rate == SR
    (mono,) = classifier.predict(w, top_k=3)
    (stereo,) = classifier.predict(np.stack([w, w]), top_k=3)  # (2, N): channels first
    torch.testing.assert_close(stereo.scores, mono.scores)
    with pytest.raises(
        ValueError, match=rf"\(channels, samples\), got shape \({len(w)}, 2\).*array\.T"
    ):
        classifier.predict(np.stack([w, w]).T)  # (N, 2): soundfile's layout
    with pytest.raises(ValueError, match=r"shape \(9, 20000\)"):  # more than 8 channels
        classifier.predict(torch.zeros(9, 20000))


def test_clip_shorter_than_one_window_is_bad_audio(trained, clips, tmp_path, caplog):
    _, ckpt = trained
    folder, _ = clips
    tiny = tmp_path / "tiny.wav"
    sf.write(tiny, 0.1 * np.random.default_rng(1).standard_normal(160), SR)  # 10 ms < 25 ms
    classifier = fastast_pl.AudioClassifier.from_pretrained(ckpt, device="cpu")
    with pytest.raises(AudioDecodeError, match=r"tiny\.wav.*shorter than one 25.0 ms window"):
        classifier.predict(tiny)  # the API's default: raise
    with caplog.at_level(logging.WARNING, logger="fastast_pl"):
        preds = classifier.predict([tiny, folder / "equal.wav"], on_bad_audio="skip")
    assert [Path(p.source).name for p in preds] == ["equal.wav"]
    assert "tiny.wav" in caplog.text and "left out" in caplog.text


def test_int16_waveform_is_scaled_like_its_wav_file(trained, tmp_path, caplog):
    _, ckpt = trained
    pcm = write_tone_pcm16(tmp_path / "tone.wav")
    samples, rate = sf.read(pcm, dtype="int16")  # (N,) int16, as a user may hold it
    assert rate == SR and samples.dtype == np.int16
    classifier = fastast_pl.AudioClassifier.from_pretrained(ckpt, device="cpu")
    (from_file,) = classifier.predict(pcm, top_k=3)
    with caplog.at_level(logging.INFO, logger="fastast_pl"):
        (from_array,) = classifier.predict(samples, top_k=3)
        (from_tensor,) = classifier.predict(torch.from_numpy(samples.astype(np.int32) << 16))
    assert "dtype torch.int16 scaled to [-1, 1]" in caplog.text
    assert from_array.top_k[0].index == from_file.top_k[0].index == from_tensor.top_k[0].index
    torch.testing.assert_close(from_array.scores, from_file.scores)
    torch.testing.assert_close(from_tensor.scores, from_file.scores)
    with pytest.raises(ValueError, match=r"dtype torch.uint8 has no known full scale"):
        classifier.predict(np.full(SR, 128, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"peak amplitude is 20\d\d.*at most 1.5"):
        classifier.predict(samples.astype(np.float32) / 8.0)  # int16 values cast, not scaled


def write_tone_pcm16(path: Path) -> Path:
    t = np.arange(SR) / SR
    sf.write(path, 0.5 * np.sin(2 * np.pi * 700 * t), SR, subtype="PCM_16")
    return path
