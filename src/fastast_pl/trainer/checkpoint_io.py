"""AtomicCheckpointIO: a checkpoint file is either complete or absent, never half-written.

Lightning's ``TorchCheckpointIO`` saves through an fsspec transaction. For local paths fsspec
writes to a temporary file made by ``tempfile.mkstemp()`` (the system temp directory) and
then ``shutil.move``s it into place. When the temp directory and the checkpoint directory
are on different file systems (the usual case on a cluster: node-local ``/tmp``, shared
checkpoint storage), ``shutil.move`` falls back to copying into the final path, and a job
killed during that copy (preemption, time limit) leaves a truncated ``last.ckpt`` that the
restarted job then fails to load.

This plugin writes the bytes to a temporary file *in the destination directory*, flushes
and fsyncs it, and ``os.replace``s it onto the final name (atomic on POSIX within one file
system). Remote URLs (``s3://`` ...) are left to Lightning's own save.

Use it with ``trainer.plugins: [{class_path: fastast_pl.trainer.checkpoint_io.AtomicCheckpointIO}]``
(the machine configs in ``experiments/machines/`` do).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from fastast_pl.utils.io import TMP_PREFIX, atomic_write_bytes

__all__ = ["TMP_PREFIX", "AtomicCheckpointIO", "atomic_torch_save"]


def _is_local(path: str | os.PathLike) -> bool:
    text = str(path)
    return "://" not in text or text.startswith("file://")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` such that ``path`` is never observed half-written."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)  # serialise first: a failure here touches no file
    atomic_write_bytes(Path(str(path).removeprefix("file://")), buffer.getbuffer())


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic (temp file + fsync + os.replace)."""

    def save_checkpoint(
        self,
        checkpoint: dict[str, Any],
        path: str | os.PathLike,
        storage_options: Any | None = None,
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                "AtomicCheckpointIO.save_checkpoint got storage_options="
                f"{storage_options!r}; it takes none (as Lightning's TorchCheckpointIO)"
            )
        if not _is_local(path):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, path)
