"""Evaluation metrics of the AST papers (accuracy, mAP, d-prime) on torchmetrics.

torchmetrics keeps the state of every metric and synchronises it across DDP ranks, and the
DataModule hands every evaluation clip to exactly one rank, so a validation epoch on 8 GPUs
gives the same acc/mAP/d-prime as on one.
"""

from __future__ import annotations

import logging
import math
import warnings

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MultilabelAccuracy,
    MultilabelAUROC,
    MultilabelAveragePrecision,
)

log = logging.getLogger(__name__)


class _OverPresentClasses:
    """Macro average over the classes that have a positive clip in what was evaluated.

    torchmetrics scores a class without positives as 0 (AP) or 1 (recall) with a warning,
    which silently pulls a macro mean down or up; AST's evaluation sets contain every class,
    where both agree. Here such classes are left out of the mean and reported once.
    """

    name = "metric"

    def _macro(self, per_class: Tensor, target_sum: Tensor) -> Tensor:
        present = target_sum > 0
        if not bool(present.all()):
            missing = (~present).nonzero().flatten().tolist()
            log.warning(
                "%s: %d of %d classes have no positive clip in this evaluation %s; the macro "
                "mean is over the other %d", self.name, len(missing), present.numel(),
                missing[:10], int(present.sum()),
            )  # fmt: skip
        if not bool(present.any()):
            return torch.tensor(float("nan"))
        return per_class[present].mean()

    def _per_class(self, compute) -> Tensor:
        with warnings.catch_warnings():  # the classes concerned are reported by _macro
            warnings.filterwarnings(
                "ignore", message=".*(No positive samples|recall is undefined).*"
            )
            return compute()

    def _target_sum(self) -> Tensor:
        target = self.target if isinstance(self.target, Tensor) else torch.cat(self.target)
        return (target > 0).sum(dim=0)


class MeanAveragePrecision(_OverPresentClasses, MultilabelAveragePrecision):
    """Macro mAP over the classes present (its state syncs under DDP)."""

    name = "mAP"

    def __init__(self, num_labels: int) -> None:
        super().__init__(num_labels=num_labels, average="none")

    def compute(self) -> Tensor:
        return self._macro(self._per_class(super().compute), self._target_sum())


def d_prime(auc: Tensor) -> Tensor:
    """Sensitivity index d' = sqrt(2) * Phi^-1(AUC), the AudioSet convention.

    Phi^-1(p) = sqrt(2) * erfinv(2p - 1), hence d' = 2 * erfinv(2 AUC - 1).
    """
    return 2.0 * torch.erfinv(2.0 * auc.clamp(0.0, 1.0) - 1.0)


class DPrime(_OverPresentClasses, MultilabelAUROC):
    """Macro d-prime over the classes present, from their macro ROC AUC (syncs under DDP)."""

    name = "d_prime"

    def __init__(self, num_labels: int) -> None:
        super().__init__(num_labels=num_labels, average="none")

    def compute(self) -> Tensor:
        return d_prime(self._macro(self._per_class(super().compute), self._target_sum()))


def accuracy_metric(num_classes: int, multi_label: bool) -> Metric:
    """Top-1 accuracy (single-label, on class indices) or micro accuracy at 0.5 (multi-label)."""
    if multi_label:
        return MultilabelAccuracy(num_labels=num_classes, average="micro")
    return MulticlassAccuracy(num_classes=num_classes, average="micro")


class ClassificationMetrics(MetricCollection):
    """acc, mAP and d_prime for single-label (one-hot) or multi-label (multi-hot) targets.

    `update(logits (B, C), target (B, C))`: targets may be soft (mixup); single-label
    accuracy compares with their argmax, the ranking metrics with their support (> 0.5 for
    multi-label, argmax for single-label).
    """

    def __init__(self, num_classes: int, multi_label: bool, prefix: str = "") -> None:
        if num_classes < 2:
            raise ValueError(
                f"num_classes must be at least 2 for classification, got {num_classes}"
            )
        super().__init__(
            {
                "acc": accuracy_metric(num_classes, multi_label),
                "mAP": MeanAveragePrecision(num_labels=num_classes),
                "d_prime": DPrime(num_labels=num_classes),
            },
            prefix=prefix,
            compute_groups=False,
        )
        self.multi_label = multi_label
        self.num_classes = num_classes

    def update(self, logits: Tensor, target: Tensor) -> None:  # type: ignore[override]
        logits = logits.detach().float()
        if self.multi_label:
            probs = torch.sigmoid(logits)
            hard = (target > 0.5).long()  # (B, C)
            self["acc"].update(probs, hard)
        else:
            probs = torch.softmax(logits, dim=-1)
            labels = target.argmax(dim=-1)  # (B,)
            hard = torch.nn.functional.one_hot(labels, self.num_classes)  # (B, C)
            self["acc"].update(probs, labels)
        self["mAP"].update(probs, hard)
        self["d_prime"].update(probs, hard)


def chance_accuracy(num_classes: int) -> float:
    """Accuracy of uniform guessing, to say how far above chance a model is."""
    return 1.0 / num_classes if num_classes > 0 else math.nan
