"""The teacher checkpoint: a TeacherModule's Lightning ``.ckpt`` read into a CNN teacher.

``TeacherModule.on_save_checkpoint`` stores what a student needs to check compatibility
before training (classes, label kind, feature settings, architecture) under
``TEACHER_CKPT_KEY``; this module is the reading side.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from fastast_pl.models.checkpoints.files import load_state_dict_named, read_lightning
from fastast_pl.models.teacher import CNNTeacher, TeacherInfo

#: Checkpoint entry holding the teacher's data-linked settings.
TEACHER_CKPT_KEY = "fastast_teacher"


def read_teacher_checkpoint(path: str | os.PathLike) -> tuple[TeacherInfo, dict[str, Tensor]]:
    """Teacher settings and model weights (without the ``model.`` prefix) of a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"teacher checkpoint {str(path)!r} does not exist; train one with "
            "`python -m fastast_pl fit --config experiments/<dataset>/teacher.yaml`"
        )
    checkpoint = read_lightning(path)
    saved = checkpoint.get(TEACHER_CKPT_KEY)
    if saved is None:
        raise ValueError(
            f"{str(path)!r} is not a TeacherModule checkpoint: no {TEACHER_CKPT_KEY!r} entry "
            f"(found {sorted(checkpoint)[:8]}). Pass a checkpoint written by `fit` of a "
            "TeacherModule."
        )
    state = {
        k.removeprefix("model."): v
        for k, v in checkpoint["state_dict"].items()
        if k.startswith("model.")
    }
    info = TeacherInfo(
        num_classes=int(saved["num_classes"]),
        multi_label=bool(saved["multi_label"]),
        target_length=int(saved["target_length"]),
        num_mel_bins=int(saved["num_mel_bins"]),
        feature_config=saved.get("feature_config"),
        arch=dict(saved["arch"]),
        path=str(path),
    )
    return info, state


def load_teacher(path: str | os.PathLike) -> tuple[CNNTeacher, TeacherInfo]:
    """The trained ``CNNTeacher`` of a TeacherModule checkpoint (CPU) and its settings.

    The ImageNet file the teacher started from is not needed (nor read): the trained
    weights replace it.
    """
    info, state = read_teacher_checkpoint(path)
    arch = dict(info.arch, pretrained_path=None)
    teacher = CNNTeacher(num_classes=info.num_classes, input_fdim=info.num_mel_bins, **arch)
    load_state_dict_named(teacher, state, path, f"a TeacherModule's CNN ({arch.get('backbone')})")
    return teacher, info
