"""ClassificationModule: what every fastast-pl LightningModule shares.

The student, the teacher and the distillation differ only in the model they run and the
loss they optimise; the data contract (dict batches), the task loss, the metrics and the
AST optimiser recipe live here once. Speed is not measured here: a clips/s figure timed
inside an evaluation loop depends on the batch, the loader and the machine's load; it is
measured per merge schedule by ``fastast_pl.speed`` (``benchmark``, ``report``, the demo).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import torch
from torch import Tensor

from fastast_pl.losses import masked_task_loss
from fastast_pl.metrics import ClassificationMetrics, accuracy_metric
from fastast_pl.models.checkpoints.record import RECORD_KEY, make_record
from fastast_pl.utils.numbers import check_number

log = logging.getLogger(__name__)

Batch = dict[str, Tensor]
#: The record's name of what the datamodule offers under another name.
_RECORD_NAMES = {"feature_config": "features", "data_identity": "data"}


@dataclass
class OptimConfig:
    """Adam with linear warm-up and step decay: the AST recipe (Gong et al. 2021).

    Args:
        lr: Peak learning rate (AST: 1e-5 for AudioSet, 1e-5 ESC-50 from AudioSet weights).
        weight_decay: Adam weight decay (AST: 5e-7).
        betas: Adam betas (AST: 0.95, 0.999).
        warmup_steps: Optimiser steps of linear warm-up from 0 to `lr` (AST: 1000 on AudioSet; 0 disables).
        decay_start_epoch: First epoch at which the LR is multiplied by `decay_factor` (AST AudioSet: 2, ESC-50: 5).
        decay_every: Epochs between further decays (AST: 1).
        decay_factor: Multiplier per decay (AST AudioSet: 0.5, ESC-50: 0.85); 1.0 disables decay.
    """

    lr: float = 1e-4
    weight_decay: float = 5e-7
    betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 0
    decay_start_epoch: int = 2
    decay_every: int = 1
    decay_factor: float = 0.5

    def __post_init__(self) -> None:
        check_number("optim.lr", self.lr, above=0)
        check_number("optim.weight_decay", self.weight_decay, at_least=0)
        for k, beta in enumerate(self.betas):
            check_number(f"optim.betas[{k}]", beta, at_least=0, below=1)
        check_number("optim.warmup_steps", self.warmup_steps, at_least=0, integer=True)
        check_number("optim.decay_start_epoch", self.decay_start_epoch, at_least=0, integer=True)
        check_number("optim.decay_every", self.decay_every, at_least=1, integer=True)
        check_number("optim.decay_factor", self.decay_factor, above=0, at_most=1)

    def lr_factor(self, step: int, epoch: int) -> float:
        """Multiplier of `lr` at optimiser step `step` (0-based) in epoch `epoch` (0-based)."""
        warmup = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        decays = (
            0
            if epoch < self.decay_start_epoch
            else (epoch - self.decay_start_epoch) // self.decay_every + 1
        )
        return warmup * self.decay_factor**decays


class ClassificationModule(L.LightningModule):
    """Base LightningModule: task loss, metrics per stage, optimiser.

    Subclasses build their network in `__init__` and implement `forward(fbank) -> logits`;
    they may override `training_loss` (distillation does).

    Args:
        num_classes: Number of classes (linked from the data; never type it twice).
        target_length: Input frames T of the fbank (linked from the data).
        num_mel_bins: Mel bins F of the fbank (linked from the data).
        multi_label: True for multi-label data (BCE, sigmoid), False for single-label (CE, softmax).
        optim: Optimiser and LR schedule.
        loss: Task loss: "auto" (BCE for multi-label, CE for single-label), "ce", or "bce"
            (BCE on the one-hot targets of single-label data, as AST trains Speech Commands:
            run_sc.sh loss=BCE; accuracy stays the metric). Subclasses that replace
            ``training_loss`` (distillation: CMKD's loss in losses.py) accept only "auto".
    """

    LOSSES = ("auto", "ce", "bce")

    def __init__(
        self,
        num_classes: int = 527,
        target_length: int = 1024,
        num_mel_bins: int = 128,
        multi_label: bool = False,
        optim: OptimConfig | None = None,
        loss: Literal["auto", "ce", "bce"] = "auto",
    ) -> None:
        super().__init__()
        if loss not in self.LOSSES:
            raise ValueError(f"model loss must be one of {self.LOSSES}, got {loss!r}")
        if multi_label and loss == "ce":
            raise ValueError("model loss='ce' needs single-label data; multi-label data uses BCE")
        if loss != "auto" and type(self).training_loss is not ClassificationModule.training_loss:
            raise ValueError(
                f"{type(self).__name__} trains with its own loss (training_loss); "
                f"model loss={loss!r} would be ignored there: leave it at 'auto'"
            )
        self.loss = loss
        self.num_classes = num_classes
        self.target_length = target_length
        self.num_mel_bins = num_mel_bins
        self.multi_label = multi_label
        self.optim = optim or OptimConfig()
        self.metrics = torch.nn.ModuleDict(
            {
                stage: ClassificationMetrics(num_classes, multi_label, prefix=f"{stage}/")
                for stage in ("val", "test")
            }
        )
        self.train_acc = accuracy_metric(num_classes, multi_label)

    #: Whether unlabeled training clips (``data.unlabeled``) teach this module: they have
    #: no task target, so only a teacher's targets do (DistillationModule).
    learns_from_unlabeled = False

    def setup(self, stage: str) -> None:
        """Warn before fitting on unlabeled clips that cannot teach this module anything."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        train = getattr(datamodule, "datasets", {}).get("train")
        unlabeled = len(train) - train.num_labeled if hasattr(train, "num_labeled") else 0
        if stage == "fit" and unlabeled and not self.learns_from_unlabeled:
            log.warning(
                "data.unlabeled gives %d unlabeled training clip(s), but %s trains on labels only: "
                "their task loss is masked out, so they cost steps and teach nothing (a "
                "teacher teaches them: DistillationModule)",
                unlabeled,
                type(self).__name__,
            )

    def differing_class(self, classes: list[str]) -> tuple[int, str, str, bool] | None:
        """(index, ``classes``' name, the data's name, whether ``classes`` are the data's in
        another order) of the first class where a head loaded from ``init_from`` (trained for
        ``classes``) differs from the data's classes; None where they agree, the data names
        none, or ``--ckpt_path`` replaces the weights."""
        trainer = self._trainer
        if trainer is None or getattr(trainer, "ckpt_path", None):
            return None
        names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
        if names is None:
            return None
        theirs, ours = [str(c) for c in classes], [str(c) for c in names]
        at = next((i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b), None)
        return None if at is None else (at, theirs[at], ours[at], sorted(theirs) == sorted(ours))

    # ----------------------------------------------------------------- losses
    def task_loss(self, logits: Tensor, target: Tensor, labeled: Tensor | None = None) -> Tensor:
        """CE for single-label (soft targets allowed, for mixup), BCE for multi-label or
        with ``loss="bce"`` (mean over clips and classes, as torch's BCEWithLogitsLoss),
        over the clips ``labeled`` marks (None: all; unlabeled audio has no target)."""
        return masked_task_loss(logits, target, self.multi_label or self.loss == "bce", labeled)

    def training_loss(self, batch: Batch, logits: Tensor) -> dict[str, Tensor]:
        """Parts of the training loss; "loss" is optimised, every part is logged."""
        return {"loss": self.task_loss(logits, batch["target"], batch.get("labeled"))}

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        logits = self(batch["fbank"])
        parts = self.training_loss(batch, logits)
        self._check_finite(parts, batch, batch_idx)
        bs = batch["fbank"].shape[0]
        for name, value in parts.items():
            key = "train/loss" if name == "loss" else f"train/loss_{name}"
            self.log(key, value, prog_bar=name == "loss", batch_size=bs)
        labeled = batch.get("labeled")
        if labeled is None:
            self._update_train_acc(logits, batch["target"])
        else:  # counts per epoch; accuracy on the clips that have labels
            for kind, count in (("labeled", labeled.sum()), ("unlabeled", (~labeled).sum())):
                self.log(
                    f"train/clips_{kind}",
                    count.float(),
                    on_step=False,
                    on_epoch=True,
                    reduce_fx="sum",
                    batch_size=bs,
                )
            if labeled.any():
                self._update_train_acc(logits[labeled], batch["target"][labeled])
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=bs)
        return parts["loss"]

    def _check_finite(self, parts: dict[str, Tensor], batch: Batch, batch_idx: int) -> None:
        """Stop training at a NaN/inf loss, naming the step, the batch and its clips: an
        optimiser step on it would make every weight NaN, and the run would go on to score
        NaN as numbers."""
        bad = [name for name, value in parts.items() if not torch.isfinite(value).all()]
        if not bad:
            return
        clips = batch.get("index")
        clips = clips.tolist()[:8] if isinstance(clips, Tensor) else "unknown"
        values = ", ".join(f"{name}={parts[name].detach().float().cpu().tolist()}" for name in bad)
        raise FloatingPointError(
            f"non-finite training loss ({values}) at global step {self.global_step}, epoch "
            f"{self.current_epoch}, batch {batch_idx} (clip indices {clips}; the inputs are "
            f"{'finite' if torch.isfinite(batch['fbank']).all() else 'NOT finite'}). Check "
            "the learning rate, the feature mean/std and the data of these clips."
        )

    def _update_train_acc(self, logits: Tensor, target: Tensor) -> None:
        if self.multi_label:
            self.train_acc.update(torch.sigmoid(logits.detach()), (target > 0.5).long())
        else:
            self.train_acc.update(logits.detach().softmax(-1), target.argmax(-1))

    def _eval_step(self, batch: Batch, stage: str) -> Tensor:
        fbank = batch["fbank"]
        logits = self(fbank)
        loss = self.task_loss(logits, batch["target"])
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=stage == "val",
            batch_size=fbank.shape[0],
            sync_dist=True,
        )
        self.metrics[stage].update(logits, batch["target"])
        return logits

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        logits = self(batch["fbank"])
        probs = torch.sigmoid(logits) if self.multi_label else logits.softmax(-1)
        return {"index": batch["index"], "probs": probs}

    # ------------------------------------------------------- epoch boundaries
    def on_validation_epoch_end(self) -> None:
        self.log_and_reset(self.metrics["val"], prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self.log_and_reset(self.metrics["test"], prog_bar=True)

    def log_and_reset(self, metrics: ClassificationMetrics, prog_bar: bool = False) -> bool:
        """Log a metric collection's epoch values and reset it; False if it saw no batch."""
        if metrics["acc"].update_count == 0:  # sanity check skipped or empty split
            return False
        if self._trainer is not None and self.trainer.sanity_checking:
            # A couple of batches to test the loop, not an evaluation (Lightning drops what
            # is logged there): no metric, and no warning about classes they happen to lack.
            metrics.reset()
            return False
        for name, value in metrics.compute().items():  # already synced across ranks by torchmetrics
            self.log(name, value, prog_bar=prog_bar and name.endswith("/acc"))
        metrics.reset()
        return True

    # ------------------------------------------------------------ checkpoints
    def merge_metadata(self) -> tuple[list[int] | None, list[int] | None]:
        """(evaluation, training) merge schedules as r per layer; None for unmerged models."""
        return None, None

    def architecture(self) -> dict[str, Any]:
        """The network's architecture for the checkpoint record (``kind`` "ast" or "cnn")."""
        raise NotImplementedError(f"{type(self).__name__} must say its architecture()")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Write the checkpoint's one record (``fastast_pl.models.checkpoints.record``): class
        names, feature settings and data identity from the trainer's datamodule (else those
        of the checkpoint this module was loaded from), sizes, label kind, architecture,
        merge schedules and the checksum of the weights."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        loaded = getattr(self, "_loaded_record", None) or {}

        def from_data(name: str) -> Any:
            value = getattr(datamodule, name, None)
            value = value() if callable(value) else value
            return value if value is not None else loaded.get(_RECORD_NAMES.get(name, name))

        merge, train_merge = self.merge_metadata()
        checkpoint[RECORD_KEY] = make_record(
            module=f"{type(self).__module__}.{type(self).__qualname__}",
            class_names=from_data("class_names"),
            num_classes=self.num_classes,
            multi_label=self.multi_label,
            target_length=self.target_length,
            num_mel_bins=self.num_mel_bins,
            features=from_data("feature_config"),
            arch=self.architecture(),
            merge=merge,
            train_merge=train_merge,
            data=from_data("data_identity"),
            state=checkpoint["state_dict"],
        )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # kept for a later save without a datamodule (e.g. a Trainer given bare loaders)
        self._loaded_record = dict(checkpoint.get(RECORD_KEY) or {})

    # -------------------------------------------------------------- optimiser
    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters the optimiser updates (a frozen teacher is not among them)."""
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        cfg = self.optim
        optimizer = torch.optim.Adam(
            self.trainable_parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas
        )

        def factor(step: int) -> float:
            return cfg.lr_factor(step, self.current_epoch)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
