"""Evaluation metrics of the AST papers (accuracy, mAP, d-prime) on torchmetrics.

torchmetrics keeps the state of every metric and synchronises it across DDP ranks, and the
DataModule hands every evaluation clip to exactly one rank, so a validation epoch on 8 GPUs
gives the same acc/mAP/d-prime as on one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MultilabelAccuracy,
    MultilabelAUROC,
    MultilabelAveragePrecision,
)


def d_prime(auc: Tensor) -> Tensor:
    """Sensitivity index d' = sqrt(2) * Phi^-1(AUC), the AudioSet convention.

    Phi^-1(p) = sqrt(2) * erfinv(2p - 1), hence d' = 2 * erfinv(2 AUC - 1).
    """
    return 2.0 * torch.erfinv(2.0 * auc.clamp(0.0, 1.0) - 1.0)


class DPrime(MultilabelAUROC):
    """Macro d-prime over classes, from the macro ROC AUC (its state syncs under DDP)."""

    def compute(self) -> Tensor:
        return d_prime(super().compute())


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
                "mAP": MultilabelAveragePrecision(num_labels=num_classes, average="macro"),
                "d_prime": DPrime(num_labels=num_classes, average="macro"),
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
