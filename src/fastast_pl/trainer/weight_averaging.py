"""Weight averaging over a window of epochs, as AST and PSLA average their epoch snapshots.

AST (egs/audioset: epochs 6-25 balanced, 1-5 full) and PSLA (epochs 41-60 balanced, 16-30
full) average the weights saved at the end of each epoch of a window with equal weight.
Lightning's ``WeightAveraging`` keeps such a running equal-weight mean (torch's
``AveragedModel`` default); this subclass only limits its updates to the window and keeps
the live weights in use before the window starts.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import WeightAveraging

log = logging.getLogger(__name__)


class EpochWindowAveraging(WeightAveraging):
    """Equal-weight average of the end-of-epoch weights of epochs ``first_epoch..last_epoch``.

    Epochs are counted from 1, as AST and PSLA count them: PSLA's balanced AudioSet
    averaging of epochs 41-60 is ``EpochWindowAveraging(first_epoch=41, last_epoch=60)``.
    Buffers (BatchNorm statistics) are averaged too, as the papers average whole state
    dicts. Validation inside the window, the final weights after ``fit`` and the
    checkpoints' ``state_dict`` are the average so far (Lightning's behaviour); before the
    first update the current weights are validated and kept (a window ``fit`` never
    reaches leaves the trained weights alone, with a warning).

    A module that builds submodules in ``setup`` (a DistillationModule loads its frozen
    teacher there, after Lightning's callback copied the module) is copied again when fit
    starts; the frozen teacher's average is the teacher itself.

    Args:
        first_epoch: First averaged epoch (1-based, inclusive).
        last_epoch: Last averaged epoch (inclusive); None = to the end of training.
        kwargs: Passed to ``WeightAveraging`` (``device``, ``use_buffers``, ``avg_fn``...).
    """

    def __init__(self, first_epoch: int = 1, last_epoch: int | None = None, **kwargs: Any) -> None:
        if first_epoch < 1:
            raise ValueError(f"EpochWindowAveraging: first_epoch={first_epoch}; expected >= 1")
        if last_epoch is not None and last_epoch < first_epoch:
            raise ValueError(
                f"EpochWindowAveraging: last_epoch={last_epoch} is before first_epoch={first_epoch}"
            )
        super().__init__(**kwargs)
        self.first_epoch = first_epoch
        self.last_epoch = last_epoch

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """Update at the end of each epoch in the window (``epoch_idx`` is 0-based), never per step."""
        if epoch_idx is None:
            return False
        epoch = epoch_idx + 1
        return epoch >= self.first_epoch and (self.last_epoch is None or epoch <= self.last_epoch)

    def _has_average(self) -> bool:
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Copy the module again if it built submodules in ``setup()`` after the callback
        copied it (DistillationModule's frozen teacher), keeping any average restored from a
        checkpoint; parameters and buffers would otherwise be paired out of order."""
        assert self._average_model is not None  # created by WeightAveraging.setup
        earlier = self._average_model
        if not set(pl_module.state_dict()) - set(earlier.module.state_dict()):
            return
        WeightAveraging.setup(self, trainer, pl_module, "fit")
        if int(earlier.n_averaged) > 0:  # resumed inside the window: keep the average so far
            self._average_model.module.load_state_dict(earlier.module.state_dict(), strict=False)
            self._average_model.n_averaged.copy_(earlier.n_averaged)
        log.info(
            "EpochWindowAveraging: %s built submodules in setup(); copied it again",
            type(pl_module).__name__,
        )

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._has_average():
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._has_average():
            super().on_validation_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._has_average():
            super().on_train_end(trainer, pl_module)
            return
        log.warning(
            "EpochWindowAveraging: training ended before epoch %d, nothing was averaged; the "
            "trained weights are kept",
            self.first_epoch,
        )

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._has_average():  # before the window the checkpoint holds the live weights
            super().on_save_checkpoint(trainer, pl_module, checkpoint)
