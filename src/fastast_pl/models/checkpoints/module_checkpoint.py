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
    entries: frozenset[str] = frozenset()  # its top-level keys (e.g. the RNG states' entry)


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
        entries=frozenset(str(k) for k in raw),
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


#: Feature settings that may differ between a checkpoint and the data it meets: training-time
#: dither is augmentation (evaluation never dithers), not part of what the model expects.
FEATURES_FREE_TO_DIFFER = frozenset({"dither"})


def record_differences(
    ckpt: ModuleCheckpoint,
    class_names: list[str] | None,
    features: Mapping[str, Any] | None,
    architecture: Mapping[str, Any] | None,
) -> dict[str, str]:
    """Each item the checkpoint's record and the configured data/model disagree on, as
    ``{"features.mean": "checkpoint -4.27, data -5.0", ...}``; nothing where either side
    does not say (a checkpoint without a record)."""
    record = ckpt.record
    if record is None or record.version is None:
        return {}
    out: dict[str, str] = {}
    theirs, ours = record.class_names, class_names
    # (another number of classes is check_module_state's, with its own advice)
    if theirs is not None and ours is not None and len(theirs) == len(ours):
        at = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if str(a) != str(b)), None)
        if at is not None:
            out["class_names"] = f"class {at}: checkpoint {theirs[at]!r}, data {ours[at]!r}"
    for prefix, saved, given, free in (
        ("features", record.features, features, FEATURES_FREE_TO_DIFFER),
        ("arch", record.arch, architecture, frozenset()),
    ):
        if saved is None or given is None:
            continue
        for key in sorted((set(saved) | set(given)) - free):
            if saved.get(key) != given.get(key):
                what = "data" if prefix == "features" else "model"
                out[f"{prefix}.{key}"] = f"checkpoint {saved.get(key)!r}, {what} {given.get(key)!r}"
    return out


def check_record(
    ckpt: ModuleCheckpoint,
    class_names: list[str] | None,
    features: Mapping[str, Any] | None,
    architecture: Mapping[str, Any] | None,
    allowed: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Raise naming every item (class names, a feature setting, an architecture field) the
    checkpoint was trained with that the data or model differs in, unless ``allowed`` names
    it (or its group: ``features``, ``arch``)."""
    differences = record_differences(ckpt, class_names, features, architecture)
    left = {
        k: v for k, v in differences.items() if k not in allowed and k.split(".")[0] not in allowed
    }
    if left:
        items = "; ".join(f"{k}: {v}" for k, v in left.items())
        raise ValueError(
            f"{ckpt.path}: the checkpoint was trained with other settings than the data/model "
            f"configured now ({items}). Its results would not be those of the checkpoint. Run it "
            "with the settings it records, or, where the difference is meant, name the items "
            f"with --allow_ckpt_differences '[{', '.join(left)}]' (a new head on other classes: "
            f"start from its weights with --model.init_args.init_from={ckpt.path} instead)."
        )


def check_same_splits(ckpt: ModuleCheckpoint, data_identity: Mapping[str, Any] | None) -> None:
    """Raise unless the data's splits hold the clips they held when the checkpoint's run
    started (its record's ``data.splits``): a resumed fit must not train on clips it once
    validated on, as a folder source that gained files would reshuffle them."""
    record = ckpt.record
    saved = ((record.data or {}) if record is not None else {}).get("splits")
    now = (data_identity or {}).get("splits")
    if not saved or not now:
        return
    changed = [
        f"{name}: {saved[name]['clips']} clips then, "
        f"{(now.get(name) or {}).get('clips', 0)} now"
        + (" (other clips)" if (now.get(name) or {}).get("clips") == saved[name]["clips"] else "")
        for name in sorted(saved)
        if saved[name] != now.get(name)
    ]
    if changed:
        raise ValueError(
            f"{ckpt.path}: the data's splits are not the ones this run started with "
            f"({'; '.join(changed)}): the data source lists other files now, so resuming would "
            "mix training and evaluation clips. Resume on the data as it was, or start a new "
            f"run from these weights with --model.init_args.init_from={ckpt.path}."
        )
