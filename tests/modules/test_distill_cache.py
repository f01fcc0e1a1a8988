"""Teacher-logits cache: miss / hit / rebuild, atomic writes, keys, and its use in distillation."""

from __future__ import annotations

import logging
import os

import lightning as L
import pytest
import torch

from fastast_pl.modules.distill import DistillationModule
from fastast_pl.modules.kd_cache import (
    TeacherLogitsCache,
    cache_key,
    fbank_keys,
)
from fastast_pl.modules.teacher import TeacherModule

from helpers.distill import (
    T,
    TinyDataModule,
    teacher_copy,
    tiny_student,
    tiny_trainer,
)

FEATURES = {"num_mel_bins": 32, "target_length": 64, "mean": -4.27}


def test_cache_miss_store_save_hit_and_rebuild(tmp_path) -> None:
    cache = TeacherLogitsCache(tmp_path, "train", "key-a", num_classes=3)
    assert cache.status == "miss" and len(cache) == 0
    logits = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    cache.store(["clip5", "clip1"], logits)
    stored, found = cache.lookup(["clip1", "clip2", "clip5"])
    assert found.tolist() == [True, False, True]
    assert torch.equal(stored[[0, 2]], logits[[1, 0]])
    cache.save()
    assert [p.name for p in tmp_path.iterdir()] == ["teacher_logits_train.pt"]  # no temp left

    again = TeacherLogitsCache(tmp_path, "train", "key-a", num_classes=3)
    assert again.status == "hit" and len(again) == 2
    stored, found = again.lookup(["clip5", "clip1"])
    assert found.all() and torch.equal(stored, logits)

    other = TeacherLogitsCache(tmp_path, "train", "key-b", num_classes=3)
    assert other.status == "rebuild" and len(other) == 0

    (tmp_path / "teacher_logits_train.pt").write_bytes(b"truncated")
    broken = TeacherLogitsCache(tmp_path, "train", "key-a", num_classes=3)
    assert broken.status == "rebuild" and len(broken) == 0


def test_edited_rows_fail_their_checksum(tmp_path, caplog) -> None:
    """Finite, well-shaped rows with other numbers (an edit or a bit flip) are not served."""
    cache = TeacherLogitsCache(tmp_path, "train", "k", num_classes=3)
    cache.store(["a", "b", "c"], torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8, 9]]))
    cache.save()
    path = tmp_path / "teacher_logits_train.pt"
    saved = torch.load(path, weights_only=True)
    saved["logits"][1, 0] = 4.5
    torch.save(saved, path)
    with caplog.at_level(logging.WARNING, logger="fastast_pl.modules.kd_cache"):
        again = TeacherLogitsCache(tmp_path, "train", "k", num_classes=3)
    stored, found = again.lookup(["a", "b", "c"])
    assert found.tolist() == [True, False, True] and again.bad == 1
    assert "checksum" in caplog.text


def test_failed_write_leaves_the_old_file(tmp_path, monkeypatch) -> None:
    cache = TeacherLogitsCache(tmp_path, "train", "k", num_classes=2)
    cache.store(["clip0"], torch.tensor([[1.0, 2.0]]))
    cache.save()
    cache.store(["clip1"], torch.tensor([[3.0, 4.0]]))

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        cache.save()
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["teacher_logits_train.pt"]
    assert len(TeacherLogitsCache(tmp_path, "train", "k", num_classes=2)) == 1


def test_key_follows_checkpoint_features_and_split(tmp_path) -> None:
    ckpt = tmp_path / "teacher.ckpt"
    ckpt.write_bytes(b"abc")
    key = cache_key(ckpt, FEATURES, "train")
    assert key == cache_key(ckpt, dict(FEATURES), "train")
    assert key != cache_key(ckpt, {**FEATURES, "mean": -4.0}, "train")
    assert key != cache_key(ckpt, FEATURES, "val")
    assert key != cache_key(ckpt, FEATURES, "train", extra={"clips": 10})
    stat = ckpt.stat()
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert key != cache_key(ckpt, FEATURES, "train")  # retrained teacher -> new key


def test_augmentations_are_detected() -> None:
    assert TinyDataModule().training_augmentations() == []
    found = TinyDataModule(freqm=4, mixup=0.5).training_augmentations()
    assert found == ["freqm=4", "mixup=0.5"]


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    return teacher_copy(tmp_path_factory.mktemp("teacher"))


def _distill(root, teacher_ckpt, dm, epochs=1, **kwargs) -> DistillationModule:
    L.seed_everything(0, verbose=False)
    module = tiny_student(
        str(teacher_ckpt),
        cache_teacher_logits=True,
        teacher_cache_dir=str(root / "cache"),
        **kwargs,
    )
    tiny_trainer(root, max_epochs=epochs, limit_val_batches=0).fit(module, datamodule=dm)
    return module


def test_distillation_fills_then_reads_the_cache(tmp_path, teacher_ckpt) -> None:
    dm = TinyDataModule(num_classes=4)  # 16 training clips, no augmentation
    first = _distill(tmp_path, teacher_ckpt, dm, epochs=2)
    assert first.cache_counts == {"misses": 16, "hits": 16}  # epoch 1 fills, epoch 2 reads

    # The stored rows are the frozen teacher's logits of those clips.
    key = cache_key(teacher_ckpt, dm.feature_config(), "train", extra=_identity(dm))
    cache = TeacherLogitsCache(tmp_path / "cache", "train", key, 4)
    assert cache.status == "hit" and len(cache) == 16
    frozen = TeacherModule.load_frozen(teacher_ckpt)
    expected = frozen(dm.train_set.fbank)
    stored, found = cache.lookup(fbank_keys(dm.train_set.fbank))
    assert found.all()
    torch.testing.assert_close(stored, expected, rtol=1e-5, atol=1e-5)

    second = _distill(tmp_path, teacher_ckpt, dm)  # a new run: every clip is a hit
    assert second.cache_counts == {"misses": 0, "hits": 16}


def test_clips_marked_augmented_bypass_the_cache(tmp_path, teacher_ckpt) -> None:
    """A batch's ``augmented`` clips are distilled against the teacher's output on what the
    student sees, never against (or into) the stored logits of the clean clip."""
    dm = TinyDataModule(num_classes=4)
    module = _distill(tmp_path, teacher_ckpt, dm)
    assert module._cache is not None
    x = dm.train_set.fbank[:2] + 1.0  # (2, T, F): not the clips the cache holds
    keys = fbank_keys(dm.train_set.fbank[:2])  # ... but keyed as those clips
    stored_before, _ = module._cache.lookup(keys)
    batch = {"fbank": x, "clip_key": keys, "augmented": torch.tensor([True, False])}
    used = module.teacher_logits(batch)
    truth = module.teacher(x)
    torch.testing.assert_close(used[0], truth[0])  # augmented: computed on its input
    torch.testing.assert_close(used[1], stored_before[1])  # clean: read from the cache
    stored_after, _ = module._cache.lookup(keys)
    assert torch.equal(stored_after, stored_before)  # nothing of the augmented clip stored


def test_changed_teacher_rebuilds_the_cache(tmp_path, teacher_ckpt) -> None:
    dm = TinyDataModule(num_classes=4)
    _distill(tmp_path, teacher_ckpt, dm)
    stat = teacher_ckpt.stat()
    os.utime(teacher_ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    rebuilt = _distill(tmp_path, teacher_ckpt, dm)
    assert rebuilt._cache is not None and rebuilt._cache.status == "rebuild"
    assert rebuilt.cache_counts == {"misses": 16, "hits": 0}


def test_augmentation_turns_the_cache_off(tmp_path, teacher_ckpt, caplog) -> None:
    dm = TinyDataModule(num_classes=4, timem=8)
    with caplog.at_level(logging.WARNING, logger="fastast_pl.modules.distill"):
        module = _distill(tmp_path, teacher_ckpt, dm)
    assert module._cache is None
    assert module.cache_counts == {"misses": 0, "hits": 0}
    assert "not caching teacher logits" in caplog.text and "timem=8" in caplog.text
    assert not (tmp_path / "cache").exists()


def _identity(dm) -> dict:
    from fastast_pl.modules.distill import _data_identity

    return _data_identity(dm)


# ------------------------------------------------------- entries keyed by content, not row


def _folder(root, per_class=2):
    """train/ and val/ class folders of short real WAVs, 4 classes (the teacher's)."""
    import numpy as np
    import soundfile as sf

    for split, n in (("train", per_class), ("val", 1)):
        for c in range(4):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng(100 * c + 10 * i + (split == "val"))
                t = np.arange(8000) / 16000  # 0.5 s; tones far apart -> distinct logits
                freq = 150 + 900 * c + 300 * i + 50 * (split == "val")
                wave = (0.1 + 0.2 * i) * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(
                    8000
                )
                wave = wave.astype(np.float32)
                sf.write(str(folder / f"c{c}_{i}.wav"), wave, 16000)
    return root


TOL = 1e-6  # teacher logits of one clip, batched differently


def _audio_dm(root):
    from fastast_pl.data.datamodule import AudioDataModule, LoaderConfig
    from fastast_pl.data.features import FeatureConfig
    from fastast_pl.data.sources import FolderSource

    features = FeatureConfig(num_mel_bins=32, target_length=T, mean=-4.27, std=4.57)
    return AudioDataModule(
        FolderSource(str(root)), features=features, loader=LoaderConfig(batch_size=4)
    )


def _distill_and_compare(root, teacher_ckpt, dm) -> tuple[DistillationModule, float]:
    """Fit one epoch with the cache; return the module and the largest difference between
    the teacher logits a batch was distilled against and the teacher's output on it."""
    L.seed_everything(0, verbose=False)
    module = tiny_student(
        str(teacher_ckpt), cache_teacher_logits=True, teacher_cache_dir=str(root / "cache")
    )
    worst, truths = [0.0], []
    original = module.teacher_logits

    def spy(batch):
        used = original(batch)
        truth = module.teacher(batch["fbank"])
        worst[0] = max(worst[0], float((used - truth).abs().max()))
        truths.append(truth)
        return used

    module.teacher_logits = spy
    tiny_trainer(root, max_epochs=1, limit_val_batches=0).fit(module, datamodule=dm)
    every = torch.cat(truths)  # (N, C): the clips differ enough for a shift to show
    assert float(torch.cdist(every, every).max()) > 100 * TOL
    return module, worst[0]


def test_adding_a_clip_never_shifts_the_cached_logits(tmp_path, teacher_ckpt, caplog) -> None:
    data = _folder(tmp_path / "data")
    first, worst = _distill_and_compare(tmp_path, teacher_ckpt, _audio_dm(data))
    assert first.cache_counts == {"misses": 8, "hits": 0} and worst < TOL
    # One new clip that sorts first: every later clip's row number moves by one.
    import shutil

    shutil.copyfile(data / "val" / "c1" / "c1_0.wav", data / "train" / "c0" / "c0_00.wav")
    with caplog.at_level(logging.INFO, logger="fastast_pl.modules.kd_cache"):
        second, worst = _distill_and_compare(tmp_path, teacher_ckpt, _audio_dm(data))
    assert worst < TOL  # each clip distilled against its own teacher output
    assert second.cache_counts == {"misses": 1, "hits": 8}


def test_bad_entries_are_recomputed_and_reported_once(tmp_path, teacher_ckpt, caplog) -> None:
    data = _folder(tmp_path / "data")
    _distill_and_compare(tmp_path, teacher_ckpt, _audio_dm(data))
    path = tmp_path / "cache" / "teacher_logits_train.pt"
    saved = torch.load(path, weights_only=True)
    saved["logits"][[0, 3]] = float("nan")  # two damaged rows
    torch.save(saved, path)
    with caplog.at_level(logging.WARNING, logger="fastast_pl.modules.kd_cache"):
        module, worst = _distill_and_compare(tmp_path, teacher_ckpt, _audio_dm(data))
    assert worst < TOL and module.cache_counts == {"misses": 2, "hits": 6}
    reports = [r.getMessage() for r in caplog.records if "bad entr" in r.getMessage()]
    assert len(reports) == 1 and "2 bad entries" in reports[0] and "6 kept" in reports[0]


def _sync_worker(rank: int, world: int, port: int, directory: str) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    cache = TeacherLogitsCache(directory, "train", "k", num_classes=2)
    cache.store([f"clip{rank}"], torch.full((1, 2), float(rank)))
    cache.sync()
    assert sorted(cache.entries) == ["clip0", "clip1"]
    assert cache.entries["clip1"].tolist() == [1.0, 1.0]
    if rank == 0:
        cache.save()
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_ranks_merge_what_each_stored(tmp_path) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_sync_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    merged = TeacherLogitsCache(tmp_path, "train", "k", num_classes=2)
    assert merged.status == "hit" and len(merged) == 2
