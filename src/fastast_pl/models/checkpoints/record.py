"""The one record a checkpoint of ours carries about itself, and its one reader.

Every LightningModule of the project writes it (``ClassificationModule.on_save_checkpoint``)
under ``RECORD_KEY`` in each checkpoint it saves; inference, the frozen teacher, the
``--ckpt_path`` checks and the tools all read it through ``record_of`` / ``read_record``::

    {"version": 2,
     "module": "fastast_pl.modules.student.StudentModule",   # class path of the module
     "class_names": ["dog", ...] | None,                      # by class index
     "num_classes": 50, "multi_label": False,
     "target_length": 1024, "num_mel_bins": 128,              # the model's input size
     "features": {...} | None,                # the datamodule's feature_config() (all settings)
     "arch": {"kind": "ast", "size": ..., "embed_dim": ..., ...}   # ASTArch, resolved
           | {"kind": "cnn", "backbone": ..., ...},                 # TeacherArch
     "merge": [r per layer] | None,           # the schedule evaluated with (eval_merge)
     "train_merge": [r per layer] | None,     # the schedule trained with
     "data": {"source": ..., "augment": ..., "seed": ...} | None,  # data_identity()
     "state_checksum": "sha256:..." | None}   # of the module's weights, see ``state_checksum``

Plain values only (``models/`` never imports ``data/``). A Lightning checkpoint without the
record (saved by a module of another project, or before version 1) is read from what
Lightning itself stores (``hyper_parameters``: sizes, architecture, merge), with
``version=None``; the version-1 entries (``fastast_inference``, ``fastast_teacher``) are no
longer read, and a checkpoint holding only those says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fastast_pl.models.arch import ARCHS, ASTArch, arch_dims
from fastast_pl.models.checkpoints.files import read_lightning
from fastast_pl.models.checkpoints.formats import field_of
from fastast_pl.utils.io import atomic_write

log = logging.getLogger(__name__)

#: Checkpoint entry holding the record (see the module docstring).
RECORD_KEY = "fastast"
RECORD_VERSION = 2
#: The entries version 1 wrote, recognised only to say that they are not read any more.
VERSION_1_KEYS = ("fastast_inference", "fastast_teacher")


@dataclass(frozen=True)
class CheckpointRecord:
    """What a checkpoint says about the model and the data it was trained on.

    None where the checkpoint does not say. ``version`` is None for a Lightning
    checkpoint without a record (read from its hyper-parameters).
    """

    path: Path
    version: int | None
    module: str | None = None
    class_names: list[str] | None = None
    num_classes: int | None = None
    multi_label: bool | None = None
    target_length: int | None = None
    num_mel_bins: int | None = None
    features: dict[str, Any] | None = None
    arch: dict[str, Any] | None = None
    merge: list[int] | None = None
    train_merge: list[int] | None = None
    data: dict[str, Any] | None = None
    state_checksum: str | None = None

    @property
    def arch_kind(self) -> str | None:
        """ "ast" or "cnn" (the CNN teacher); None where the checkpoint does not say."""
        return None if self.arch is None else self.arch.get("kind")

    @property
    def is_teacher(self) -> bool:
        """A TeacherModule checkpoint (the CNN teacher)."""
        return self.arch_kind == "cnn" or str(self.module or "").endswith("TeacherModule")


def make_record(
    *,
    module: str,
    class_names: Sequence[str] | None,
    num_classes: int,
    multi_label: bool,
    target_length: int,
    num_mel_bins: int,
    features: Mapping[str, Any] | None,
    arch: Mapping[str, Any],
    merge: list[int] | None = None,
    train_merge: list[int] | None = None,
    data: Mapping[str, Any] | None = None,
    state: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """The ``RECORD_KEY`` entry (plain, picklable values); ``arch`` names its ``kind``."""
    if arch.get("kind") not in ("ast", "cnn"):
        raise ValueError(f"record arch must say kind 'ast' or 'cnn', got {arch.get('kind')!r}")
    return {
        "version": RECORD_VERSION,
        "module": module,
        "class_names": None if class_names is None else [str(n) for n in class_names],
        "num_classes": int(num_classes),
        "multi_label": bool(multi_label),
        "target_length": int(target_length),
        "num_mel_bins": int(num_mel_bins),
        "features": None if features is None else dict(features),
        "arch": dict(arch),
        "merge": None if merge is None else [int(r) for r in merge],
        "train_merge": None if train_merge is None else [int(r) for r in train_merge],
        "data": None if data is None else dict(data),
        "state_checksum": None if state is None else state_checksum(state),
    }


def ast_arch_record(arch: ASTArch) -> dict[str, Any]:
    """An ``ASTArch`` as the record's ``arch`` (resolved, so sizes are spelt out)."""
    return {"kind": "ast", **dataclasses.asdict(arch.resolved())}


def state_checksum(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state dict's tensors.

    Written with the weights and checked where a checkpoint is loaded as a teacher, so a
    checkpoint whose tensors were edited after saving is refused rather than used.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def verify_state(checkpoint: Mapping[str, Any], record: CheckpointRecord) -> None:
    """Raise unless the checkpoint's ``state_dict`` is the one its record was written with."""
    if record.state_checksum is None:
        return
    found = state_checksum(checkpoint["state_dict"])
    if found != record.state_checksum:
        raise ValueError(
            f"{record.path}: the weights do not match the checksum recorded when the checkpoint "
            f"was saved ({RECORD_KEY}.state_checksum {record.state_checksum[:19]}..., the file's "
            f"weights give {found[:19]}...): the file was edited or corrupted after saving. "
            "Use the original file, or retrain."
        )


def read_record(path: str | os.PathLike) -> CheckpointRecord:
    """The record of the Lightning checkpoint at ``path`` (memory-mapped, weights not read)."""
    path = Path(path)
    return record_of(read_lightning(path, mmap=True), path)


def record_of(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> CheckpointRecord:
    """The record of a loaded Lightning checkpoint dict; raise on a version this code cannot read."""
    path = Path(path)
    saved = checkpoint.get(RECORD_KEY)
    if isinstance(saved, Mapping):
        version = saved.get("version")
        if version != RECORD_VERSION:
            raise ValueError(
                f"{path}: checkpoint record {RECORD_KEY!r} has version {version!r}; this "
                f"fastast_pl reads version {RECORD_VERSION}"
                + (" (upgrade fastast_pl)" if isinstance(version, int) and version > 2 else "")
            )
        fields = {f.name for f in dataclasses.fields(CheckpointRecord)} - {"path"}
        return CheckpointRecord(path=path, **{k: saved.get(k) for k in fields})
    return _from_hyper_parameters(checkpoint, path)


def store_eval_schedule(source: str, out: Path, schedule: list[int]) -> None:
    """Write to ``out`` a copy of the fastast-pl ``.ckpt`` ``source`` whose record (``merge``:
    the evaluation schedule) and ``eval_merge`` hyper-parameter carry ``schedule``."""
    if not Path(source).is_file() or Path(source).suffix != ".ckpt":
        raise ValueError(
            f"--save-checkpoint needs a fastast-pl .ckpt as --checkpoint, got {source}; "
            "use the YAML snippet with other checkpoints"
        )
    checkpoint = read_lightning(source)
    if record_of(checkpoint, source).version is None:  # raises on a record it cannot read
        raise ValueError(f"{source} carries no {RECORD_KEY!r} record (saved by another version)")
    checkpoint[RECORD_KEY]["merge"] = list(schedule)
    hparams = checkpoint.get("hyper_parameters")
    if isinstance(hparams, dict) and "eval_merge" in hparams:
        hparams["eval_merge"] = list(schedule)
    with atomic_write(out, "wb") as fh:
        torch.save(checkpoint, fh)


def old_version_note(checkpoint: Mapping[str, Any]) -> str:
    """A sentence for checkpoints written with the version-1 entries; "" otherwise."""
    found = [k for k in VERSION_1_KEYS if k in checkpoint]
    if not found or RECORD_KEY in checkpoint:
        return ""
    return (
        f"it carries the version-1 entries {found}, which this fastast_pl no longer reads "
        f"(it reads {RECORD_KEY!r} version {RECORD_VERSION}): retrain it with this version, or "
        "give the settings explicitly"
    )


def _from_hyper_parameters(checkpoint: Mapping[str, Any], path: Path) -> CheckpointRecord:
    """What Lightning's own ``hyper_parameters`` say, for a checkpoint without a record."""
    note = old_version_note(checkpoint)
    if note:
        log.warning("%s: %s", path, note)
    hp = checkpoint.get("hyper_parameters") or {}
    if not isinstance(hp, Mapping):
        hp = {}

    def integer(name: str) -> int | None:
        value = hp.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    merge = hp.get("eval_merge") if hp.get("eval_merge") is not None else hp.get("merge")
    class_path = hp.get("_class_path")
    multi_label = hp.get("multi_label")
    return CheckpointRecord(
        path=path,
        version=None,
        module=str(class_path) if class_path else None,
        num_classes=integer("num_classes"),
        multi_label=multi_label if isinstance(multi_label, bool) else None,
        target_length=integer("target_length"),
        num_mel_bins=integer("num_mel_bins"),
        arch=_ast_arch_of(hp),
        merge=merge,
        train_merge=hp.get("merge"),
    )


def _ast_arch_of(hp: Mapping[str, Any]) -> dict[str, Any] | None:
    """The AST architecture fields the hyper-parameters name (an ``ASTArch`` or its dict)."""
    if "ast" not in hp:
        return None
    ast = field_of(hp, "ast") or ASTArch()  # StudentModule builds ASTArch() from ast=None
    out: dict[str, Any] = {"kind": "ast"}
    for f in dataclasses.fields(ASTArch):
        value = field_of(ast, f.name)
        if value is not None:
            out[f.name] = value
    size = out.get("size")
    if isinstance(size, str) and size in ARCHS:
        dims = arch_dims(size, out.get("embed_dim"), out.get("depth"), out.get("num_heads"))
        out.update(embed_dim=dims[0], depth=dims[1], num_heads=dims[2])
    return out
