"""The built-in synthetic dataset: determinism, readability, ownership of its directory."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from fastast_pl.data.synthetic import (
    CLASS_NAMES,
    META_FILE,
    SyntheticConfig,
    check_synthetic,
    ensure_synthetic,
    generate_synthetic,
    synthesize_clip,
)

SMALL = SyntheticConfig(num_classes=5, clips_per_class=4, clip_seconds=0.25)


def _wavs(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.wav"))


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    generate_synthetic(a, SMALL)
    generate_synthetic(b, SMALL)
    assert _wavs(a) == _wavs(b) and len(_wavs(a)) == 20
    for rel in _wavs(a):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert (a / "synthetic.csv").read_bytes() == (b / "synthetic.csv").read_bytes()


def test_different_seed_gives_different_audio(tmp_path):
    generate_synthetic(tmp_path / "a", SMALL)
    generate_synthetic(tmp_path / "b", SyntheticConfig(**{**SMALL.to_dict(), "seed": 1}))
    rel = _wavs(tmp_path / "a")[0]
    assert (tmp_path / "a" / rel).read_bytes() != (tmp_path / "b" / rel).read_bytes()


def test_files_are_readable_and_labelled(tmp_path):
    manifest = generate_synthetic(tmp_path, SMALL)
    rows = list(csv.DictReader(manifest.open()))
    assert len(rows) == 20
    assert {r["label"] for r in rows} == set(CLASS_NAMES[:5])
    for split in ("train", "val", "test"):
        per_class = {r["label"] for r in rows if r["split"] == split}
        assert per_class == set(CLASS_NAMES[:5]), split  # every class in every split
    peaks = []
    for r in rows:
        data, sr = sf.read(str(tmp_path / r["path"]))
        assert sr == 16000 and data.shape == (4000,)
        assert np.isfinite(data).all() and 0 < np.abs(data).max() <= 1
        peaks.append(np.abs(data).max())
    assert max(peaks) / min(peaks) > 2  # levels are randomised, not one per class


def test_generation_is_fast_enough_for_the_demo(tmp_path):
    import time

    start = time.perf_counter()
    generate_synthetic(
        tmp_path, SyntheticConfig(num_classes=8, clips_per_class=25, clip_seconds=1.0)
    )
    assert time.perf_counter() - start < 20  # ~1 s on a laptop core; generous for CI


def test_existing_directory_with_other_settings_is_regenerated(tmp_path, caplog):
    ensure_synthetic(tmp_path, SMALL)
    other = SyntheticConfig(**{**SMALL.to_dict(), "clips_per_class": 3, "num_classes": 6})
    with pytest.raises(ValueError, match="other settings.*clips_per_class"):
        check_synthetic(tmp_path, other)
    with caplog.at_level("WARNING"):
        ensure_synthetic(tmp_path, other)
    assert "other settings" in caplog.text
    assert len(_wavs(tmp_path)) == 18  # no clips of the old generation are left over
    assert json.loads((tmp_path / META_FILE).read_text())["config"] == other.to_dict()
    check_synthetic(tmp_path, other)


def test_refuses_a_non_empty_directory_it_does_not_own(tmp_path):
    (tmp_path / "my_thesis.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty"):
        ensure_synthetic(tmp_path, SMALL)
    assert (tmp_path / "my_thesis.txt").read_text() == "precious"
    assert not (tmp_path / "audio").exists()


def test_foreign_meta_file_is_not_trusted(tmp_path):
    (tmp_path / META_FILE).write_text(json.dumps({"generator": "someone else"}))
    with pytest.raises(ValueError, match="not written by"):
        ensure_synthetic(tmp_path, SMALL)


@pytest.mark.parametrize(
    "field,value",
    [("num_classes", 1), ("num_classes", 9), ("clips_per_class", 2), ("clip_seconds", 0.0)],
)
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        SyntheticConfig(**{field: value})


def test_classes_differ_in_structure_not_in_level(tmp_path):
    """A nearest-centroid classifier on level-free spectro-temporal statistics beats chance
    clearly, while one on the clip's mean log-mel level (loudness) stays near chance."""
    import torch
    from torchaudio.compliance import kaldi

    config = SyntheticConfig(num_classes=8, clips_per_class=20, clip_seconds=1.0)
    manifest = generate_synthetic(tmp_path, config)
    rows = list(csv.DictReader(manifest.open()))
    feats, level, label, split = [], [], [], []
    for r in rows:
        data, sr = sf.read(str(tmp_path / r["path"]), dtype="float32")
        wav = torch.from_numpy(data).unsqueeze(0)
        fb = kaldi.fbank(
            wav - wav.mean(),
            sample_frequency=sr,
            num_mel_bins=64,
            htk_compat=True,
            use_energy=False,
            window_type="hanning",
            dither=0.0,
        )  # (frames, 64)
        mean = fb.mean(0)
        feats.append(
            torch.cat([mean - mean.mean(), fb.std(0), (fb[1:] - fb[:-1]).abs().mean(0)]).numpy()
        )
        level.append([float(fb.mean())])
        label.append(CLASS_NAMES.index(r["label"]))
        split.append(r["split"])
    label, split = np.array(label), np.array(split)

    def nearest_centroid_accuracy(x):
        x = np.asarray(x)
        train, test = split == "train", split != "train"
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
        x = (x - mu) / sd
        centroids = np.stack([x[train & (label == c)].mean(0) for c in range(8)])
        pred = ((x[test][:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
        return (pred == label[test]).mean()

    assert nearest_centroid_accuracy(feats) >= 0.4  # chance: 0.125
    assert nearest_centroid_accuracy(level) <= 0.3


def test_concurrent_generation_gives_one_complete_dataset(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=ensure_synthetic, args=(tmp_path / "syn", SMALL)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    check_synthetic(tmp_path / "syn", SMALL)
    generate_synthetic(tmp_path / "ref", SMALL)
    assert _wavs(tmp_path / "syn") == _wavs(tmp_path / "ref")
    for rel in _wavs(tmp_path / "ref"):
        assert (tmp_path / "syn" / rel).read_bytes() == (tmp_path / "ref" / rel).read_bytes()


def test_min_clip_seconds_gives_variable_lengths_and_keeps_fixed_clips(tmp_path):
    fixed = SyntheticConfig(num_classes=2, clips_per_class=6, clip_seconds=2.0, seed=3)
    varied = SyntheticConfig(
        num_classes=2, clips_per_class=6, clip_seconds=2.0, min_clip_seconds=0.5, seed=3
    )
    lengths = [len(synthesize_clip(varied, c, j)) / 16000 for c in range(2) for j in range(6)]
    assert all(0.5 <= s <= 2.0 for s in lengths) and len(set(lengths)) == len(lengths)
    assert "min_clip_seconds" not in fixed.to_dict()  # datasets written before it still match
    assert len(synthesize_clip(fixed, 1, 2)) == 32000
    with pytest.raises(ValueError, match="min_clip_seconds"):
        SyntheticConfig(clip_seconds=1.0, min_clip_seconds=2.0)
