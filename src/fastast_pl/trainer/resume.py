"""ResumeRNGState: a resumed run draws the same random numbers as an uninterrupted one.

Lightning checkpoints hold the weights, optimiser, LR scheduler and loop counters, but not
the random number generators. Shuffling (``RandomSampler`` draws its seed from the global
torch generator at every epoch), SpecAugment masks and mixup weights all come from them, so
without this callback a run restarted from ``last.ckpt`` continues on different data order
and augmentations and ends with different weights.

The callback stores the Python, NumPy, torch (and CUDA) generator states of every rank in
each checkpoint and puts them back on resume: once when the checkpoint is loaded and once
more after the sanity-check validation (which draws from the torch generator when it builds
its DataLoader), so the first training epoch after the restart starts from exactly the
state the interrupted run had after its checkpoint.

Exact resumption needs end-of-epoch checkpoints (the recipes' ``ModelCheckpoint`` saves
after validation): a checkpoint taken mid-epoch restarts that epoch's DataLoader from its
beginning (Lightning warns about it), which no RNG state can undo.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.distributed as dist

from fastast_pl.models.checkpoints.module_checkpoint import ModuleCheckpoint

log = logging.getLogger(__name__)

KEY = "fastast_rng_states"


def collect_rng_states() -> dict[str, Any]:
    """The current states of Python's, NumPy's, torch's (and CUDA's) global generators.

    Only tensors, ints, floats and strings, so ``torch.load(weights_only=True)`` (what
    Lightning uses to read hyper-parameters from ``--ckpt_path``) still loads the checkpoint.
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),  # (624,) uint32 values
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore states made by :func:`collect_rng_states`."""
    random.setstate(states["python"])
    npy = states["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def warn_inexact_resume(checkpoint: ModuleCheckpoint, callbacks: list[pl.Callback]) -> None:
    """Say, before a resumed fit, when its continuation cannot match the uninterrupted run:
    the checkpoint holds no RNG states, or this run has no ``ResumeRNGState`` to restore them
    (a checkpoint without them, resumed with the callback, is reported by the callback)."""
    restores = any(isinstance(cb, ResumeRNGState) for cb in callbacks)
    saved = KEY in checkpoint.entries
    if restores and saved:
        return
    if not restores:
        why = (
            "this run has no ResumeRNGState callback to restore the RNG states it holds"
            if saved
            else "it holds no RNG states and this run has no ResumeRNGState callback"
        )
        log.warning(
            "resuming from %s: the continuation will not be exact (%s), so data order, "
            "augmentation and mixup draw other numbers than an uninterrupted run. Add "
            "`- class_path: fastast_pl.trainer.resume.ResumeRNGState` to trainer.callbacks "
            "(docs/reliability.md)",
            checkpoint.path,
            why,
        )


class ResumeRNGState(pl.Callback):
    """Save every rank's generator states in checkpoints; restore them on resume."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        states = collect_rng_states()
        per_rank: list[Any] = [states]
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            per_rank = [None] * trainer.world_size
            dist.all_gather_object(per_rank, states)  # every rank dumps the checkpoint
        checkpoint[KEY] = {"world_size": trainer.world_size, "states": per_rank}

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        saved = checkpoint.get(KEY)
        if saved is None:
            log.warning(
                "checkpoint has no RNG states (%s): the continuation will not be exact (data "
                "order, augmentation and mixup draw other numbers than an uninterrupted run)",
                KEY,
            )
            return
        states = saved["states"]
        rank = trainer.global_rank
        if saved["world_size"] != trainer.world_size or rank >= len(states):
            log.warning(
                "checkpoint RNG states are from %d rank(s), this run has %d: rank %d takes rank 0's",
                saved["world_size"], trainer.world_size, rank,
            )  # fmt: skip
            rank = 0
        self._pending = states[rank]
        set_rng_states(self._pending)

    def on_sanity_check_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:  # undo the sanity check's draws
            set_rng_states(self._pending)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._pending = None
