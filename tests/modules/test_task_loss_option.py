"""`loss: bce` on single-label data (AST Speech Commands, run_sc.sh loss=BCE): BCE on the
one-hot targets while accuracy stays the metric (docs/recipes.md, Speech Commands)."""

from __future__ import annotations

import math

import pytest
import torch

from fastast_pl.models.arch import ASTArch
from fastast_pl.modules.base import ClassificationModule
from fastast_pl.modules.student import StudentModule

TINY = ASTArch(size="tiny", embed_dim=32, depth=1, num_heads=2, fstride=8, tstride=8)


def _bce_written_out(logits: torch.Tensor, target: torch.Tensor) -> float:
    """mean over clips and classes of -(y log s(z) + (1 - y) log(1 - s(z)))."""
    total = 0.0
    for zs, ys in zip(logits.tolist(), target.tolist(), strict=True):
        for z, y in zip(zs, ys, strict=True):
            s = 1.0 / (1.0 + math.exp(-z))
            total += -(y * math.log(s) + (1 - y) * math.log(1 - s))
    return total / logits.numel()


def _ce_written_out(logits: torch.Tensor, target: torch.Tensor) -> float:
    total = 0.0
    for zs, ys in zip(logits.tolist(), target.tolist(), strict=True):
        log_norm = math.log(sum(math.exp(z) for z in zs))
        total += -sum(y * (z - log_norm) for z, y in zip(zs, ys, strict=True))
    return total / logits.shape[0]


def test_bce_on_single_label_data_matches_the_formula():
    torch.manual_seed(0)
    logits = torch.randn(4, 5)
    target = torch.nn.functional.one_hot(torch.tensor([0, 3, 1, 4]), 5).float()
    bce = ClassificationModule(num_classes=5, multi_label=False, loss="bce")
    assert bce.task_loss(logits, target).item() == pytest.approx(_bce_written_out(logits, target))
    ce = ClassificationModule(num_classes=5, multi_label=False)  # default: CE on single-label
    assert ce.task_loss(logits, target).item() == pytest.approx(_ce_written_out(logits, target))
    # mixup's soft targets too
    soft = 0.3 * target + 0.7 * target.roll(1, dims=0)
    assert bce.task_loss(logits, soft).item() == pytest.approx(_bce_written_out(logits, soft))


def test_bce_keeps_accuracy_as_the_metric():
    module = StudentModule(num_classes=3, target_length=32, num_mel_bins=32, ast=TINY, loss="bce")
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    module.metrics["val"].update(logits, torch.eye(3))  # argmax right for clips 0 and 1
    assert module.metrics["val"].compute()["val/acc"].item() == pytest.approx(2 / 3)
    batch = {"fbank": torch.randn(2, 32, 32), "target": torch.eye(3)[:2]}
    loss = module.training_loss(batch, module(batch["fbank"]))["loss"]
    expected = _bce_written_out(module(batch["fbank"]).detach(), batch["target"])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_bad_loss_settings_are_named():
    with pytest.raises(ValueError, match="loss"):
        ClassificationModule(num_classes=3, loss="focal")
    with pytest.raises(ValueError, match="multi-label"):
        ClassificationModule(num_classes=3, multi_label=True, loss="ce")


def test_a_module_with_its_own_training_loss_refuses_the_option():
    """DistillationModule optimises CMKD's loss (losses.py): `loss` there would be ignored."""

    class OwnLoss(ClassificationModule):
        def training_loss(self, batch, logits):
            return {"loss": logits.sum()}

    with pytest.raises(ValueError, match="OwnLoss trains with its own loss"):
        OwnLoss(num_classes=3, loss="bce")
    OwnLoss(num_classes=3)  # "auto" is fine
