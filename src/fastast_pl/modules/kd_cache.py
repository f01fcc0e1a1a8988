"""On-disk cache of a frozen teacher's logits per clip, so distillation epochs cost only the student.

Valid only while the teacher sees the same input for a clip in every epoch, i.e. when the
training data has no random augmentation of the fbank (SpecAugment, mixup, dither): the
datamodule's ``training_augmentations()`` says before the run what would break that, and
each batch's ``augmented`` flag says it per clip (docs/architecture.md, "Batches").

One file per split, ``<dir>/teacher_logits_<split>.pt``, holding a key and the logits
computed so far. The file's key hashes the teacher checkpoint (absolute path, size,
mtime), the feature settings, the split and any extra identity of the data; a file with
another key is rebuilt from scratch. Each entry is keyed by what its clip is, never by its
row number in the split: the audio file's fingerprint (a hash of its bytes), or, for data
without files, a hash of the teacher's input. Each row is stored with a checksum of its
bytes, checked on load: an edited or corrupted row is dropped and recomputed, not served. Adding, removing or reordering clips thus
leaves every other clip's entry valid, and an edited file is a miss. Entries are filled
lazily (clips not yet stored are computed by the teacher) and the file is written (temp
file + ``os.replace``, atomic) at the end of each epoch.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor

from fastast_pl.models.checkpoints.files import load_torch
from fastast_pl.utils.io import atomic_write

log = logging.getLogger(__name__)

CacheStatus = Literal["hit", "miss", "rebuild"]


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


def fbank_keys(fbank: Tensor) -> list[str]:
    """Content keys of a ``(B, T, F)`` batch of teacher inputs: a BLAKE2b hash of each row's
    bytes (for data without files to fingerprint)."""
    rows = fbank.detach().float().cpu().contiguous().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).hexdigest() for row in rows]


def batch_clip_keys(batch: dict[str, Any]) -> list[str]:
    """What each clip of ``batch`` is, independent of its row number: the batch's
    ``clip_key`` (``AudioDataset`` puts the audio file's fingerprint there), else, for data
    without files, a hash of the teacher's input itself."""
    keys = batch.get("clip_key")
    if keys is not None:
        return list(keys)
    return fbank_keys(batch["fbank"])


def _row_checksum(row: Tensor) -> str:
    """BLAKE2b of one stored (C,) float32 logits row's bytes."""
    data = row.detach().float().cpu().contiguous().numpy().tobytes()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class TeacherLogitsCache:
    """Teacher logits of one split's clips, kept on disk, keyed by what each clip is.

    ``status`` after construction: ``"hit"`` (file found with this key), ``"miss"`` (no
    file yet) or ``"rebuild"`` (file found with another key, format or width, or
    unreadable: started afresh). Entries of a found file that are not finite rows of
    ``num_classes`` are dropped (recomputed on use) and reported in one warning.
    """

    def __init__(self, directory: str | Path, split: str, key: str, num_classes: int) -> None:
        self.path = Path(directory) / f"teacher_logits_{split}.pt"
        self.key = key
        self.num_classes = num_classes
        self.entries: dict[str, Tensor] = {}  # clip key -> (C,) logits
        self._new: dict[str, Tensor] = {}  # stored since the last sync
        self.bad = 0
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
        clips, logits = saved.get("clips"), saved.get("logits")
        checksums = saved.get("checksums")
        if (
            saved.get("key") != self.key
            or not isinstance(clips, list)
            or not isinstance(logits, Tensor)
            or logits.dim() != 2
            or logits.shape[1] != self.num_classes
            or logits.shape[0] != len(clips)
            or not isinstance(checksums, list)
            or len(checksums) != len(clips)
        ):
            log.info(
                "teacher-logits cache %s is for another teacher/data or format; rebuilding it",
                self.path,
            )
            return "rebuild"
        finite = torch.isfinite(logits.float()).all(dim=1)  # (N,)
        rows = logits.float()
        for clip, row, ok, checksum in zip(clips, rows, finite.tolist(), checksums):
            if ok and isinstance(clip, str) and _row_checksum(row) == checksum:
                self.entries[clip] = row
            else:
                self.bad += 1
        if self.bad:
            log.warning(
                "teacher-logits cache %s: %d bad entries (NaN/inf, malformed or not matching "
                "their checksum: edited or corrupted) dropped and "
                "recomputed by the teacher, %d kept",
                self.path, self.bad, len(self.entries),
            )  # fmt: skip
            self.dirty = True
        return "hit"

    def __len__(self) -> int:
        """Number of clips whose logits are stored."""
        return len(self.entries)

    def lookup(self, keys: Sequence[str]) -> tuple[Tensor, Tensor]:
        """B clip keys -> ((B, C) stored logits, zeros where absent; (B,) bool: stored?)."""
        out = torch.zeros(len(keys), self.num_classes)
        found = torch.zeros(len(keys), dtype=torch.bool)
        for i, key in enumerate(keys):
            row = self.entries.get(key)
            if row is not None:
                out[i], found[i] = row, True
        return out, found

    def store(self, keys: Sequence[str], logits: Tensor) -> None:
        """Store (B, C) logits for B clip keys."""
        for key, row in zip(keys, logits.detach().float().cpu()):
            self.entries[key] = self._new[key] = row.clone()
        self.dirty = bool(keys) or self.dirty

    def sync(self) -> None:
        """Merge what every DDP rank stored since the last sync (each filled its own clips)."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            self._new = {}
            return
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, self._new)
        for new in gathered:
            self.entries.update(new)
            self.dirty = self.dirty or bool(new)
        self._new = {}

    def save(self) -> None:
        """Write the table atomically (temp file in the same directory + os.replace)."""
        clips = list(self.entries)
        logits = (
            torch.stack([self.entries[c] for c in clips])
            if clips
            else torch.zeros(0, self.num_classes)
        )  # (N, C)
        with atomic_write(self.path) as fh:
            checksums = [_row_checksum(row) for row in logits]
            torch.save(
                {"key": self.key, "clips": clips, "logits": logits, "checksums": checksums}, fh
            )
        self.dirty = False
