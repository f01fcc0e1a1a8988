"""The teacher checkpoint: a TeacherModule's Lightning ``.ckpt`` read into a CNN teacher.

What a student checks before training (classes, label kind, feature settings,
architecture) is the checkpoint's record (``record.py``), written by every module of ours.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor

from fastast_pl.models.checkpoints.files import load_state_dict_named, read_lightning
from fastast_pl.models.checkpoints.record import (
    RECORD_KEY,
    CheckpointRecord,
    old_version_note,
    record_of,
    verify_state,
)
from fastast_pl.models.teacher import CNNTeacher, TeacherInfo


def teacher_info(record: CheckpointRecord, kind: str = "cnn") -> TeacherInfo:
    """A teacher's view of a checkpoint record (sizes must be there: our modules write them)."""
    arch = {k: v for k, v in (record.arch or {}).items() if k != "kind"}
    return TeacherInfo(
        num_classes=int(record.num_classes),  # type: ignore[arg-type]
        multi_label=record.multi_label,
        target_length=int(record.target_length),  # type: ignore[arg-type]
        num_mel_bins=int(record.num_mel_bins),  # type: ignore[arg-type]
        feature_config=record.features,
        arch=arch,
        path=str(record.path),
        kind=kind,
        class_names=record.class_names,
        data=record.data,
    )


def _read_teacher(path: Path) -> tuple[CheckpointRecord, dict[str, Any]]:
    """The record and the raw dict of a TeacherModule checkpoint; raise naming what is wrong."""
    if not path.is_file():
        raise FileNotFoundError(
            f"teacher checkpoint {str(path)!r} does not exist; train one with "
            "`python -m fastast_pl fit --config experiments/<dataset>/teacher.yaml`"
        )
    checkpoint = read_lightning(path)
    record = record_of(checkpoint, path)
    if record.version is None or not record.is_teacher:
        if record.version is None:
            note = old_version_note(checkpoint)
            why = f"no {RECORD_KEY!r} record" + (f"; {note}" if note else "")
        else:
            why = f"its {RECORD_KEY!r} record is of {record.module}"
        raise ValueError(
            f"{str(path)!r} is not a TeacherModule checkpoint: {why} (found entries "
            f"{sorted(checkpoint)[:8]}). Pass a checkpoint written by `fit` of a TeacherModule."
        )
    return record, checkpoint


def _model_state(checkpoint: dict[str, Any]) -> dict[str, Tensor]:
    """The CNN's weights, without the module's ``model.`` prefix."""
    return {
        k.removeprefix("model."): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith("model.")
    }


def read_teacher_checkpoint(path: str | os.PathLike) -> tuple[TeacherInfo, dict[str, Tensor]]:
    """Teacher settings and model weights (without the ``model.`` prefix) of a checkpoint,
    the weights checked against the record's checksum."""
    record, checkpoint = _read_teacher(Path(path))
    verify_state(checkpoint, record)
    return teacher_info(record), _model_state(checkpoint)


def load_teacher(path: str | os.PathLike) -> tuple[CNNTeacher, TeacherInfo]:
    """The trained ``CNNTeacher`` of a TeacherModule checkpoint (CPU) and its settings.

    The ImageNet file the teacher started from is not needed (nor read): the trained
    weights replace it. Weights that do not fit the CNN are named key by key; weights
    that fit but differ from the record's checksum (edited after saving) are refused.
    """
    record, checkpoint = _read_teacher(Path(path))
    info = teacher_info(record)
    arch = dict(info.arch, pretrained_path=None)
    teacher = CNNTeacher(num_classes=info.num_classes, input_fdim=info.num_mel_bins, **arch)
    what = f"a TeacherModule's CNN ({arch.get('backbone')})"
    load_state_dict_named(teacher, _model_state(checkpoint), path, what)
    verify_state(checkpoint, record)
    return teacher, info
