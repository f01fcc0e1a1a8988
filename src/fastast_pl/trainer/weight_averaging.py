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

    The module must own all its submodules when ``fit`` starts: a DistillationModule loads
    its teacher in ``setup`` (after this callback copies the module), so it is refused
    with an error rather than averaged misaligned.

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
        assert self._average_model is not None  # created by WeightAveraging.setup
        copied = set(self._average_model.module.state_dict())
        extra = sorted(set(pl_module.state_dict()) - copied)
        if extra:
            raise ValueError(
                f"EpochWindowAveraging: {type(pl_module).__name__} gained {len(extra)} weights "
                f"after the callback copied it (e.g. {extra[:3]}); it cannot average a module "
                "that builds submodules in setup() (DistillationModule's teacher)"
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
