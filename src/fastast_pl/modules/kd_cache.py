"""On-disk cache of a frozen teacher's logits per clip, so distillation epochs cost only the student.

Valid only while the teacher sees the same input for a clip in every epoch, i.e. when the
training data has no random augmentation of the fbank (SpecAugment, mixup, dither);
`teacher_input_augmentations` says what would break that.

One file per split, ``<dir>/teacher_logits_<split>.pt``, holding a key and the table of
logits filled so far. The key hashes the teacher checkpoint (absolute path, size, mtime),
the feature settings, the split and any extra identity of the data (e.g. its size). A
file with another key is rebuilt from scratch. Rows are looked up by ``batch["index"]``
and filled lazily: rows not yet in the table are computed by the teacher and stored, and
the table is written (temp file + ``os.replace``, atomic) at the end of each epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor

from fastast_pl.data.augment import AugmentConfig
from fastast_pl.data.features import FeatureConfig
from fastast_pl.models.checkpoints.files import load_torch
from fastast_pl.utils.io import atomic_write

log = logging.getLogger(__name__)

CacheStatus = Literal["hit", "miss", "rebuild"]


def teacher_input_augmentations(datamodule: Any) -> list[str]:
    """What makes the datamodule's training fbanks differ from epoch to epoch, as
    ``"name=value"``: its ``augment`` (AugmentConfig) and a training dither in its
    ``features`` (FeatureConfig). An empty list means the teacher's input is the same every
    epoch; a datamodule without those two cannot say, and is listed as unknown."""
    augment, features = getattr(datamodule, "augment", None), getattr(datamodule, "features", None)
    if not (isinstance(augment, AugmentConfig) and isinstance(features, FeatureConfig)):
        return [f"unknown ({type(datamodule).__name__} has no AugmentConfig and FeatureConfig)"]
    found = augment.active()
    if features.dither:
        found.append(f"dither={features.dither}")
    return found


def cache_key(
    teacher_checkpoint: str | Path,
    feature_config: dict[str, Any] | None,
    split: str,
    extra: dict[str, Any] | None = None,
) -> str:
    """SHA-256 of the teacher checkpoint's identity, the feature settings, split and extras."""
    path = Path(teacher_checkpoint).resolve()
    stat = path.stat()
    blob = json.dumps(
        {
            "teacher": str(path),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "features": feature_config,
            "split": split,
            "extra": extra or {},
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class TeacherLogitsCache:
    """A (num_clips, num_classes) table of teacher logits for one split, kept on disk.

    ``status`` after construction: ``"hit"`` (file found with this key), ``"miss"`` (no
    file yet) or ``"rebuild"`` (file found with another key or unreadable: started afresh).
    """

    def __init__(self, directory: str | Path, split: str, key: str, num_classes: int) -> None:
        self.path = Path(directory) / f"teacher_logits_{split}.pt"
        self.key = key
        self.num_classes = num_classes
        self.logits = torch.zeros(0, num_classes)
        self.filled = torch.zeros(0, dtype=torch.bool)
        self.dirty = False
        self.status: CacheStatus = self._load()

    def _load(self) -> CacheStatus:
        if not self.path.is_file():
            return "miss"
        try:
            saved = load_torch(
                self.path, expected="Expected a teacher-logits cache table.", trusted=False
            )
        except Exception as err:  # a truncated or foreign file is rebuilt, not fatal
            log.warning("teacher-logits cache %s unreadable (%s); rebuilding it", self.path, err)
            return "rebuild"
        if saved.get("key") != self.key or saved["logits"].shape[1:] != (self.num_classes,):
            log.info(
                "teacher-logits cache %s is for another teacher/data; rebuilding it", self.path
            )
            return "rebuild"
        self.logits, self.filled = saved["logits"].float(), saved["filled"].bool()
        return "hit"

    def __len__(self) -> int:
        """Number of clips whose logits are stored."""
        return int(self.filled.sum())

    def _grow(self, size: int) -> None:
        if size <= self.filled.numel():
            return
        size = max(size, 2 * self.filled.numel())
        logits = torch.zeros(size, self.num_classes)
        filled = torch.zeros(size, dtype=torch.bool)
        logits[: self.logits.shape[0]] = self.logits
        filled[: self.filled.numel()] = self.filled
        self.logits, self.filled = logits, filled

    def lookup(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) clip indices -> ((B, C) stored logits, (B,) bool: stored?)."""
        index = index.long().cpu()
        self._grow(int(index.max()) + 1 if index.numel() else 0)
        return self.logits[index], self.filled[index]

    def store(self, index: Tensor, logits: Tensor) -> None:
        """Store (B, C) logits for (B,) clip indices."""
        index = index.long().cpu()
        self._grow(int(index.max()) + 1 if index.numel() else 0)
        self.logits[index] = logits.detach().float().cpu()
        self.filled[index] = True
        self.dirty = True

    def sync(self) -> None:
        """Merge the tables of all DDP ranks (each rank filled its own shard of clips)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        size = torch.tensor([self.filled.numel()], device=backend_device)
        dist.all_reduce(size, op=dist.ReduceOp.MAX)
        self._resize(int(size.item()))
        filled = self.filled.to(backend_device, torch.uint8)
        logits = (self.logits * self.filled[:, None]).to(backend_device)
        count = filled.clone().float()
        dist.all_reduce(filled, op=dist.ReduceOp.MAX)
        dist.all_reduce(logits, op=dist.ReduceOp.SUM)
        dist.all_reduce(count, op=dist.ReduceOp.SUM)
        # Clips seen by several ranks (padded samplers) hold the same logits: average.
        self.logits = (logits / count.clamp(min=1)[:, None]).cpu()
        self.filled = filled.bool().cpu()
        self.dirty = True

    def _resize(self, size: int) -> None:
        """Grow or trim the table to exactly `size` rows (same size on every rank)."""
        self._grow(size)
        self.logits, self.filled = self.logits[:size], self.filled[:size]

    def save(self) -> None:
        """Write the table atomically (temp file in the same directory + os.replace)."""
        with atomic_write(self.path) as fh:
            torch.save({"key": self.key, "logits": self.logits, "filled": self.filled}, fh)
        self.dirty = False
