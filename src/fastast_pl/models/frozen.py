"""Any trained model the project can build, loaded as a frozen distillation teacher.

CMKD distils from a CNN teacher; FastAST (Behera et al. 2024) also distils from a
transformer. A teacher checkpoint is either a TeacherModule checkpoint (a ``.ckpt``
whose record, ``checkpoints/record.py``, names the CNN teacher) or any AST checkpoint that
``ASTModel.from_pretrained`` reads (our Lightning/plain checkpoints, official AST
releases, HF transformers directories). Both come back as a ``FrozenTeacher``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from fastast_pl.models.ast import ASTModel
from fastast_pl.models.checkpoints import load_fitted, pretrained_arguments, read_lightning
from fastast_pl.models.checkpoints.files import read_json
from fastast_pl.models.checkpoints.hub import resolve_source
from fastast_pl.models.checkpoints.metadata import id2label_names, named_classes
from fastast_pl.models.checkpoints.record import CheckpointRecord, record_of, verify_state
from fastast_pl.models.checkpoints.teacher import load_teacher
from fastast_pl.models.teacher import FrozenTeacher, TeacherInfo

log = logging.getLogger(__name__)


def _hf_names(path: Path) -> list[str] | None:
    """The class names an HF transformers directory's ``config.json`` gives (``id2label``,
    HF's ``LABEL_i`` placeholders meaning none); None for other files."""
    config = resolve_source(path) / "config.json"
    if not config.is_file():
        return None
    return named_classes(id2label_names(read_json(config).get("id2label"), config))


def _lightning_record(path: Path) -> CheckpointRecord | None:
    """The record of one of our ``.ckpt`` files, its weights checked; None for other files."""
    if path.suffix != ".ckpt" or not path.is_file():
        return None
    raw = read_lightning(path, mmap=True)
    record = record_of(raw, path)
    verify_state(raw, record)
    return record


def load_frozen_teacher(
    path: str | os.PathLike, *, target_length: int | None = None
) -> FrozenTeacher:
    """The teacher stored at ``path``, frozen, on the CPU.

    A TeacherModule checkpoint gives its CNN teacher. Anything else is read as an AST
    teacher by ``ASTModel.from_pretrained``: its own head and classes (a checkpoint
    without an audio head, e.g. ImageNet DeiT, is refused), run without Token Merging,
    and fitted to ``target_length`` frames when given (positional embedding cut or
    interpolated, as AST does). Its label kind and feature settings are known only from our
    Lightning checkpoints' record (None otherwise, and then not checked); its class names
    from that record or an HF directory's ``id2label``. A record's weight checksum is
    checked: edited weights are refused.
    """
    path = Path(path)
    record = _lightning_record(path)
    if record is not None and record.is_teacher:
        return FrozenTeacher(*load_teacher(path))
    overrides: dict[str, object] = {"merge": 0}
    if target_length is not None:
        overrides["input_tdim"] = target_length
    ckpt, arguments = pretrained_arguments(path, overrides)
    if ckpt.num_classes is None:
        raise ValueError(
            f"teacher checkpoint {str(path)!r} ({ckpt.format}) has no audio classification "
            "head; expected a TeacherModule checkpoint or a trained AST (one with a head)"
        )
    model = ASTModel(**arguments)
    load_fitted(model, ckpt)
    info = TeacherInfo(
        num_classes=model.num_classes,
        multi_label=None if record is None else record.multi_label,
        target_length=model.input_tdim,
        num_mel_bins=model.input_fdim,
        feature_config=None if record is None else record.features,
        arch=dataclasses.asdict(model.arch),
        path=str(path),
        kind="ast",
        class_names=record.class_names if record is not None else _hf_names(path),
        data=None if record is None else record.data,
    )
    log.info("%s: %s AST checkpoint as a frozen teacher (%d classes)", path, ckpt.format,
             info.num_classes)  # fmt: skip
    return FrozenTeacher(model, info)
