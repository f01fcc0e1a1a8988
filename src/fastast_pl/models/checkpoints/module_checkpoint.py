"""A Lightning checkpoint of one of our LightningModules, checked against the module it is for.

``--ckpt_path`` hands a file to Lightning, which restores it deep inside ``Trainer.fit`` /
``test``: a bad file then fails with torch's own message (no path) or a ``load_state_dict``
size mismatch, or, for another module's checkpoint, LightningCLI quietly builds that other
module. Everything is checked here first, before any work: the file reads, it is a
Lightning checkpoint, of the configured module class, for the data's number of classes, with
the model's keys and shapes. Only names and shapes are kept (no tensors).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fastast_pl.models.checkpoints.files import read_lightning
from fastast_pl.models.checkpoints.record import CheckpointRecord, record_of

#: What ``--ckpt_path`` expects, for error messages.
EXPECTED = "Expected a Lightning checkpoint (.ckpt) written by `python -m fastast_pl fit`."


@dataclass(frozen=True)
class ModuleCheckpoint:
    """What a Lightning checkpoint says about the module it was saved from."""

    path: Path
    class_path: str | None  # the record's module (LightningCLI's _class_path without a record)
    num_classes: int | None
    shapes: dict[str, tuple[int, ...]]
    callbacks: dict[str, Any] = field(default_factory=dict)  # each callback's saved state
    record: CheckpointRecord | None = None  # what it says about its model and data


def read_module_checkpoint(path: str | os.PathLike) -> ModuleCheckpoint:
    """Read ``path`` (memory-mapped); raise naming the file unless it is a Lightning checkpoint."""
    path = Path(path)
    raw = read_lightning(path, mmap=True)
    state = raw.get("state_dict")
    if not isinstance(state, Mapping):
        keys = [str(k) for k in list(raw)[:8]]
        raise ValueError(
            f"{path}: not a Lightning checkpoint (no 'state_dict' entry; first keys {keys}). "
            f"{EXPECTED} To start training from other weights, use "
            f"--model.init_args.init_from={path} instead."
        )
    record = record_of(raw, path)
    callbacks = raw.get("callbacks") if isinstance(raw.get("callbacks"), Mapping) else {}
    return ModuleCheckpoint(
        path=path,
        class_path=record.module,
        num_classes=record.num_classes,
        shapes={str(k): tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)},
        callbacks=dict(callbacks),
        record=record,
    )


def _name(class_path: str) -> str:
    return class_path.rsplit(".", 1)[-1]


def check_module_class(ckpt: ModuleCheckpoint, expected: str | None) -> None:
    """Raise unless the checkpoint was saved from the module class the config names."""
    if not ckpt.class_path or not expected:
        return  # saved outside LightningCLI: the state-dict check below still applies
    same = ckpt.class_path == expected if "." in expected else _name(ckpt.class_path) == expected
    if same:
        return
    hint = ""
    if _name(ckpt.class_path) == "TeacherModule":
        hint = (
            " A TeacherModule checkpoint is given to a student as "
            "model.init_args.teacher_checkpoint of a DistillationModule."
        )
    raise ValueError(
        f"{ckpt.path} is a checkpoint of {ckpt.class_path}, but the config's model is "
        f"{expected}: expected a {_name(expected)} checkpoint. Pass the config the checkpoint "
        f"was trained with (its model.class_path is {ckpt.class_path}).{hint}"
    )


def check_module_state(
    ckpt: ModuleCheckpoint,
    model_state: Mapping[str, torch.Tensor],
    num_classes: int | None,
    strict: bool = True,
) -> None:
    """Raise unless the checkpoint's weights load into a module with ``model_state``.

    ``num_classes`` is the data's (linked into the model); the checkpoint's comes from its
    hyper-parameters.
    """
    if ckpt.num_classes is not None and num_classes is not None and ckpt.num_classes != num_classes:
        raise ValueError(
            f"{ckpt.path}: the checkpoint was trained for {ckpt.num_classes} classes "
            f"(its record's num_classes), but the data has {num_classes} (data.num_classes). "
            f"Evaluate or resume it on data with the same {ckpt.num_classes} classes, or start "
            f"a new run from its weights with --model.init_args.init_from={ckpt.path} "
            "(the head is then re-initialised)."
        )
    shapes = [
        f"{k}: {ckpt.shapes[k]} in the checkpoint, {tuple(v.shape)} in the model"
        for k, v in model_state.items()
        if k in ckpt.shapes and ckpt.shapes[k] != tuple(v.shape)
    ]
    missing = [k for k in model_state if k not in ckpt.shapes] if strict else []
    unexpected = [k for k in ckpt.shapes if k not in model_state] if strict else []
    if shapes or missing or unexpected:
        raise ValueError(
            f"{ckpt.path}: its state dict does not fit the configured model "
            f"({len(missing)} keys missing: {missing[:6]}; {len(unexpected)} unexpected: "
            f"{unexpected[:6]}; shape mismatches: {shapes[:3]}). Expected the state dict of "
            "this model, e.g. a checkpoint written by `fit` with the same config."
        )
