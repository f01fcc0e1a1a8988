"""Metrics against independent references: hand counts, stdlib normal quantiles."""

from statistics import NormalDist

import pytest
import torch
import torch.nn.functional as F

from fastast_pl.metrics import ClassificationMetrics, chance_accuracy, d_prime


@pytest.mark.parametrize("auc", [0.5, 0.6, 0.75, 0.9, 0.99])
def test_d_prime_is_sqrt2_times_normal_quantile_of_auc(auc):
    expected = 2**0.5 * NormalDist().inv_cdf(auc)
    assert d_prime(torch.tensor(auc, dtype=torch.float64)).item() == pytest.approx(
        expected, abs=1e-9
    )


def test_single_label_accuracy_counts_argmax_hits():
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [5.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 0, 2])  # hits: rows 0 and 1
    metrics = ClassificationMetrics(3, multi_label=False, prefix="val/")
    metrics.update(logits, F.one_hot(labels, 3).float())
    values = metrics.compute()
    assert values["val/acc"].item() == pytest.approx(0.5)


def test_soft_targets_count_their_argmax():
    logits = torch.tensor([[0.0, 4.0], [4.0, 0.0]])
    soft = torch.tensor([[0.3, 0.7], [0.6, 0.4]])  # mixup-style targets, argmax 1 and 0
    metrics = ClassificationMetrics(2, multi_label=False)
    metrics.update(logits, soft)
    assert metrics.compute()["acc"].item() == 1.0


def test_perfect_ranking_gives_map_one_and_large_d_prime():
    target = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]).float()
    logits = torch.where(target > 0, 5.0, -5.0) + 0.01 * torch.randn(4, 3)
    metrics = ClassificationMetrics(3, multi_label=True)
    metrics.update(logits, target)
    values = metrics.compute()
    assert values["mAP"].item() == pytest.approx(1.0)
    assert values["acc"].item() == pytest.approx(1.0)
    assert values["d_prime"].item() > 3.0


def test_multi_label_map_matches_hand_computed_average_precision():
    # One class, scores ranked: pos, neg, pos -> precisions at the positives 1/1 and 2/3.
    scores = torch.tensor([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    metrics = ClassificationMetrics(2, multi_label=True)
    metrics.update(scores, target)
    ap_class0 = (1.0 + 2.0 / 3.0) / 2
    # Class 1 scores all three clips equally: the tied block counts at once, so its AP is
    # the positive rate, 1/3.
    ap_class1 = 1.0 / 3.0
    values = metrics.compute()
    assert values["mAP"].item() == pytest.approx((ap_class0 + ap_class1) / 2, abs=1e-6)


def test_bad_class_count_and_chance():
    with pytest.raises(ValueError, match="num_classes"):
        ClassificationMetrics(1, multi_label=False)
    assert chance_accuracy(8) == 0.125


def _average_precision(scores: list[float], positives: list[int]) -> float:
    """AP written out: mean over positives of the precision at their rank (no ties here)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    hits, total = 0, 0.0
    for rank, i in enumerate(order, start=1):
        if positives[i]:
            hits += 1
            total += hits / rank
    return total / hits


def test_map_and_d_prime_leave_out_classes_without_positives(caplog):
    """Class 2 never occurs: torchmetrics would count its AP as 0 and pull mAP down."""

    probs = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.3, 0.4, 0.3]])
    target = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0], [1.0, 0, 0]])
    metrics = ClassificationMetrics(3, multi_label=True)
    metrics.update(torch.logit(probs), target)
    with caplog.at_level("WARNING", logger="fastast_pl.metrics"):
        result = metrics.compute()
    expected = [
        _average_precision(probs[:, c].tolist(), target[:, c].long().tolist()) for c in (0, 1)
    ]
    assert float(result["mAP"]) == pytest.approx(sum(expected) / 2)
    assert torch.isfinite(result["d_prime"])
    messages = [r.getMessage() for r in caplog.records]
    assert any("1 of 3 classes have no positive clip" in m and "[2]" in m for m in messages)
