"""Feature cache: hits, misses, invalidation, atomic writes."""

from __future__ import annotations

import os

import pytest
import torch

from fastast_pl.data.cache import FeatureCache
from fastast_pl.data.clips import Clip
from fastast_pl.data.dataset import AudioDataset
from fastast_pl.data.features import FeatureConfig

from helpers.audio import raw_reference, reference_fbank, tone, write


def _files(tmp_path, n=3):
    return [
        write(tmp_path / "audio" / f"{i}.wav", tone(0.3, 16000, 300 * (i + 1)), 16000)
        for i in range(n)
    ]


def _run(paths, config, cache_root, train=False):
    cache = FeatureCache(cache_root, config)
    ds = AudioDataset([Clip(p, (0,)) for p in paths], 1, config, cache=cache, train=train)
    items = [ds[i]["fbank"] for i in range(len(ds))]
    return cache, items


def test_miss_then_hit_with_identical_features(tmp_path):
    paths = _files(tmp_path)
    config = FeatureConfig(target_length=50)
    cache, first = _run(paths, config, tmp_path / "cache")
    assert (cache.misses, cache.hits) == (3, 0)
    cache2, second = _run(paths, config, tmp_path / "cache")  # a new process would see this
    assert (cache2.misses, cache2.hits) == (3 - 3, 3)
    for p, a, b in zip(paths, first, second):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(b, reference_fbank(p, 50), rtol=1e-4, atol=1e-4)
    leftovers = [f for f in (tmp_path / "cache").rglob("*") if f.name.startswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize(
    "change",
    [{"num_mel_bins": 64}, {"target_length": 40}, {"frame_shift": 20.0}, {"sample_rate": 8000}],
)
def test_changing_a_feature_setting_misses(tmp_path, change):
    paths = _files(tmp_path, 1)
    _run(paths, FeatureConfig(target_length=50), tmp_path / "cache")
    cache, _ = _run(paths, FeatureConfig(**{"target_length": 50, **change}), tmp_path / "cache")
    assert (cache.misses, cache.hits) == (1, 0)


def test_normalization_stats_reuse_cache_but_apply(tmp_path):
    paths = _files(tmp_path, 1)
    _run(paths, FeatureConfig(target_length=50), tmp_path / "cache")
    cache, items = _run(
        paths, FeatureConfig(target_length=50, mean=-1.0, std=3.0), tmp_path / "cache"
    )
    assert cache.hits == 1
    torch.testing.assert_close(
        items[0], (raw_reference(paths[0], 50) + 1.0) / 6.0, rtol=1e-4, atol=1e-4
    )


def test_modified_audio_file_misses(tmp_path):
    paths = _files(tmp_path, 1)
    config = FeatureConfig(target_length=50)
    _run(paths, config, tmp_path / "cache")
    write(paths[0], tone(0.5, 16000, 1234.0), 16000)  # new content, size and mtime
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    cache, items = _run(paths, config, tmp_path / "cache")
    assert (cache.misses, cache.hits) == (1, 0)
    torch.testing.assert_close(items[0], reference_fbank(paths[0], 50), rtol=1e-4, atol=1e-4)


def test_training_with_dither_bypasses_cache(tmp_path):
    paths = _files(tmp_path, 1)
    config = FeatureConfig(target_length=50, dither=1.0)
    cache, _ = _run(paths, config, tmp_path / "cache", train=True)
    assert (cache.misses, cache.hits) == (0, 0)
    assert not (tmp_path / "cache").exists()


def test_workers_filling_the_same_entries_at_once(tmp_path):
    from torch.utils.data import DataLoader

    path = _files(tmp_path, 1)[0]
    config = FeatureConfig(target_length=50)
    ds = AudioDataset(
        [Clip(path, (0,))] * 8, 1, config, cache=FeatureCache(tmp_path / "cache", config)
    )
    loader = DataLoader(ds, batch_size=1, num_workers=2, multiprocessing_context="fork")
    reference = reference_fbank(path, 50)
    for batch in loader:
        torch.testing.assert_close(batch["fbank"][0], reference, rtol=1e-4, atol=1e-4)
    entries = [p for p in (tmp_path / "cache").rglob("*.npy")]
    assert len(entries) == 1 and not entries[0].name.startswith(".tmp")


@pytest.mark.parametrize("damage", ["empty", "wrong_width", "garbage"])
def test_damaged_entry_is_recomputed_and_reported(tmp_path, caplog, damage):
    import logging

    import numpy as np

    paths = _files(tmp_path, 2)
    config = FeatureConfig(target_length=50, num_mel_bins=32)
    cache, _ = _run(paths, config, tmp_path / "cache")
    entry = cache.entry_path(paths[0])
    if damage == "empty":
        entry.write_bytes(b"")
    elif damage == "wrong_width":
        np.save(entry, np.zeros((28, 64), np.float32))  # another mel-bin count
    else:
        entry.write_bytes(b"\x93NUMPY junk")
    with caplog.at_level(logging.WARNING, logger="fastast_pl.data.cache"):
        cache2, items = _run(paths, config, tmp_path / "cache")
    assert (cache2.hits, cache2.misses, cache2.bad) == (1, 1, 1)
    torch.testing.assert_close(
        items[0], reference_fbank(paths[0], 50, 32), rtol=1e-4, atol=1e-4
    )  # recomputed, with the right width
    assert "feature cache entry" in caplog.text and str(entry) in caplog.text
    assert "recomputing" in caplog.text
    cache3, _ = _run(paths, config, tmp_path / "cache")  # the rewritten entry is good again
    assert (cache3.hits, cache3.bad) == (2, 0)


def test_edited_entry_fails_its_checksum_and_is_recomputed(tmp_path, caplog):
    """A well-formed entry with other numbers (what a bit flip or an edit leaves): before
    checksums it was served as the clip's features."""
    import io
    import logging

    import numpy as np

    paths = _files(tmp_path, 1)
    config = FeatureConfig(target_length=50, num_mel_bins=32)
    cache, _ = _run(paths, config, tmp_path / "cache")
    entry = cache.entry_path(paths[0])
    data = entry.read_bytes()
    body = io.BytesIO(data[:-32])
    edited = np.load(body) + 3.0  # the same shape, dtype and finiteness
    out = io.BytesIO()
    np.save(out, edited)
    entry.write_bytes(out.getvalue() + data[-32:])  # the old checksum kept
    with caplog.at_level(logging.WARNING, logger="fastast_pl.data.cache"):
        cache2, items = _run(paths, config, tmp_path / "cache")
    assert (cache2.hits, cache2.bad) == (0, 1) and "checksum" in caplog.text
    torch.testing.assert_close(items[0], reference_fbank(paths[0], 50, 32), rtol=1e-4, atol=1e-4)


def test_audio_replaced_at_the_same_size_and_mtime_misses(tmp_path):
    paths = _files(tmp_path, 1)
    config = FeatureConfig(target_length=50)
    _run(paths, config, tmp_path / "cache")
    st = os.stat(paths[0])
    write(paths[0], tone(0.3, 16000, 1234.0), 16000)  # other content, the same length
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(paths[0]).st_size == st.st_size
    cache, items = _run(paths, config, tmp_path / "cache")
    assert (cache.misses, cache.hits) == (1, 0)
    torch.testing.assert_close(items[0], reference_fbank(paths[0], 50), rtol=1e-4, atol=1e-4)
