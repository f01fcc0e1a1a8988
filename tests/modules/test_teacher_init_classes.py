"""``TeacherModule(init_from=...)`` of a TeacherModule checkpoint trained for other classes of
the same count (other names or order): its pooling head would map class k's scores to
another class, so it starts fresh (warned), as a head of another shape does; the backbone
is kept. A head of the data's own classes is kept."""

from __future__ import annotations

import logging

import torch

from fastast_pl.modules.teacher import TeacherModule

from helpers.distill import (
    FAST_OPTIM,
    TINY_TEACHER,
    F,
    T,
    TinyDataModule,
    tiny_trainer,
    train_teacher,
)


class NamedData(TinyDataModule):
    def __init__(self, names: list[str]) -> None:
        super().__init__(num_classes=len(names))
        self.class_names = names


def _start(tmp_path, ckpt, names: list[str]) -> TeacherModule:
    """A TeacherModule started from ``ckpt``, through fit's setup (no step) on ``names``."""
    module = TeacherModule(
        num_classes=4,
        target_length=T,
        num_mel_bins=F,
        teacher=TINY_TEACHER,
        optim=FAST_OPTIM,
        init_from=str(ckpt),
    )
    trainer = tiny_trainer(tmp_path, limit_train_batches=0, limit_val_batches=0)
    trainer.fit(module, datamodule=NamedData(names))
    return module


def test_init_from_head_of_other_classes_starts_fresh(tmp_path, caplog) -> None:
    ckpt = train_teacher(tmp_path, NamedData(["c0", "c1", "c2", "c3"]))
    source = TeacherModule.load_frozen(ckpt)
    head = {k: v.clone() for k, v in source.teacher.head.state_dict().items()}
    same = _start(tmp_path, ckpt, ["c0", "c1", "c2", "c3"])
    for k, v in same.model.head.state_dict().items():
        assert torch.equal(v, head[k]), k  # the data's own classes: the head is kept
    with caplog.at_level(logging.WARNING, logger="fastast_pl.modules.teacher"):
        swapped = _start(tmp_path, ckpt, ["c1", "c0", "c2", "c3"])
    assert (
        "its pooling head was trained for other classes (class 0: 'c0' there, 'c1' in the data)"
        in caplog.text
    )
    assert not torch.equal(swapped.model.head.cla.weight, head["cla.weight"])
    stem = source.teacher.backbone.conv_stem.weight
    assert torch.equal(swapped.model.backbone.conv_stem.weight, stem)  # the backbone is kept
