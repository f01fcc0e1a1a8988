"""Distillation on unlabeled audio: unlabeled clips come in the batch with labeled=False, get
the teacher's targets only (task loss masked out), and the log counts both kinds."""

from __future__ import annotations

import json
import logging

import lightning as L
import pytest
import torch

from fastast_pl.data.clips import Clip
from fastast_pl.data.unlabeled import UnlabeledConfig, withhold_labels
from fastast_pl.losses import cmkd_loss

from helpers.audio import tone, write
from helpers.distill import folder_datamodule, teacher_copy, tiny_student, tiny_trainer


def test_task_term_averages_over_labeled_clips_only() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    target = torch.eye(3)[[0, 2, 1, 0]]
    labeled = torch.tensor([True, False, True, False])
    out = cmkd_loss(student, teacher, target, False, kd_lambda=0.3, labeled=labeled)
    # Written out: CE over rows 0 and 2; KL(softmax(t) || softmax(s)) over all 4 rows.
    log_s = student.log_softmax(-1)
    task = -(target * log_s).sum(-1)[[0, 2]].mean()
    p_t = teacher.softmax(-1)
    kd = (p_t * (p_t.log() - log_s)).sum(-1).mean()
    torch.testing.assert_close(out["task"], task)
    torch.testing.assert_close(out["kd"], kd)
    torch.testing.assert_close(out["loss"], 0.7 * task + 0.3 * kd)
    everything = cmkd_loss(student, teacher, target, False, kd_lambda=0.3)
    all_marked = cmkd_loss(student, teacher, target, False, 0.3, labeled=torch.ones(4).bool())
    torch.testing.assert_close(all_marked["loss"], everything["loss"])
    none = cmkd_loss(student, teacher, target, False, 0.3, labeled=torch.zeros(4).bool())
    assert float(none["task"]) == 0.0 and none["loss"].requires_grad is False  # no grad inputs
    torch.testing.assert_close(none["loss"], 0.3 * kd)


def test_labels_withheld_per_class_and_seeded() -> None:
    clips = [Clip(f"c{c}_{i}.wav", (c,)) for c in range(3) for i in range(8)]
    kept, withheld = withhold_labels(clips, 0.25, seed=0)
    assert sorted(c.labels[0] for c in kept) == [0, 0, 1, 1, 2, 2]  # a quarter of each class
    assert len(withheld) == 18 and not set(kept) & set(withheld)
    assert withhold_labels(clips, 0.25, seed=0)[0] == kept
    assert withhold_labels(clips, 0.25, seed=1)[0] != kept
    with pytest.raises(ValueError, match="labeled_fraction"):
        UnlabeledConfig(labeled_fraction=0.0)


def _data(root, per_class: int = 2, unlabeled: int = 6):
    """train/ and val/ class folders (4 classes, real WAVs) and a folder of unlabeled WAVs."""
    for c in range(4):
        for i in range(per_class):
            write(
                root / "train" / f"c{c}" / f"{i}.wav",
                tone(0.5, 16000, 200 + 900 * c, seed=i),
                16000,
            )
        write(root / "val" / f"c{c}" / "0.wav", tone(0.5, 16000, 250 + 900 * c, seed=9), 16000)
    for i in range(unlabeled):
        write(
            root / "pool" / f"sub{i % 2}" / f"u{i}.wav",
            tone(0.5, 16000, 300 + 500 * i, seed=i),
            16000,
        )
    return root


def test_unlabeled_clips_come_marked_with_empty_targets(tmp_path) -> None:
    root = _data(tmp_path / "data")
    manifest = tmp_path / "more.json"
    manifest.write_text(json.dumps({"data": [{"wav": str(root / "val" / "c0" / "0.wav")}]}))
    dm = folder_datamodule(root, UnlabeledConfig(folder=str(root / "pool"), manifest=str(manifest)))
    dm.setup("fit")
    train = dm.datasets["train"]
    assert (train.num_labeled, len(train)) == (8, 15)  # 8 labeled + 6 in the folder + 1 listed
    batches = list(dm.train_dataloader())
    labeled = torch.cat([b["labeled"] for b in batches])
    index = torch.cat([b["index"] for b in batches])
    target = torch.cat([b["target"] for b in batches])
    assert torch.equal(labeled, index < 8)
    assert (target[~labeled] == 0).all() and (target[labeled].sum(-1) == 1).all()
    assert next(iter(dm.val_dataloader()))["labeled"].all()
    assert "unlabeled" in dm.data_identity()  # another pool -> another teacher-logits cache


def test_distillation_trains_on_an_unlabeled_folder(tmp_path, caplog) -> None:
    root = _data(tmp_path / "data")
    dm = folder_datamodule(root, UnlabeledConfig(folder=str(root / "pool")))
    L.seed_everything(0, verbose=False)
    module = tiny_student(str(teacher_copy(tmp_path)))
    seen: list[tuple[torch.Tensor, torch.Tensor, dict]] = []
    original = module.training_loss

    def spy(batch, logits):
        parts = original(batch, logits)
        seen.append((batch["labeled"].clone(), batch["target"].clone(), parts))
        return parts

    module.training_loss = spy
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    with caplog.at_level(logging.INFO, logger="fastast_pl.data.unlabeled"):
        trainer.fit(module, datamodule=dm)
    assert "training clips: 8 labeled, 6 unlabeled" in caplog.text
    metrics = trainer.callback_metrics
    assert (float(metrics["train/clips_labeled"]), float(metrics["train/clips_unlabeled"])) == (
        8,
        6,
    )
    flags = torch.cat([f for f, _, _ in seen])
    assert int(flags.sum()) == 8 and int((~flags).sum()) == 6
    assert all(torch.isfinite(p["loss"]) for _, _, p in seen)
    only_unlabeled = [p for f, _, p in seen if not f.any()]
    for parts in only_unlabeled:  # no label at all: the teacher's term alone
        assert float(parts["task"]) == 0.0
        torch.testing.assert_close(parts["loss"], module.kd_lambda * parts["kd"])
