"""Balanced sampling: weights, draw frequencies, DDP shares."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from fastast_pl.data.sampling import DistributedWeightedSampler, balanced_weights


def test_balanced_weights_formula():
    labels = [(0,), (0,), (0, 1), (2,), ()]
    w = balanced_weights(labels, 3)
    # counts: class0 = 3, class1 = 1, class2 = 1
    expected = [1 / 3, 1 / 3, 1 / 3 + 1, 1.0, 1 / 3]  # unlabeled clip: smallest positive weight
    torch.testing.assert_close(w, torch.tensor(expected, dtype=torch.float64))


def test_rare_class_is_drawn_as_often_as_the_common_one():
    labels = [(0,)] * 90 + [(1,)] * 10
    sampler = DistributedWeightedSampler(balanced_weights(labels, 2), num_samples=20000, seed=3)
    draws = list(sampler)
    assert len(draws) == 20000
    rare = sum(1 for i in draws if i >= 90) / len(draws)
    assert rare == pytest.approx(0.5, abs=0.03)
    per_clip = Counter(draws)
    common_mean = sum(per_clip[i] for i in range(90)) / 90
    rare_mean = sum(per_clip[i] for i in range(90, 100)) / 10
    assert rare_mean / common_mean == pytest.approx(9.0, rel=0.15)


def test_ranks_split_one_global_draw():
    weights = balanced_weights([(i % 4,) for i in range(50)] + [(4,)] * 3, 5)
    samplers = [
        DistributedWeightedSampler(weights, num_replicas=3, rank=r, seed=7) for r in range(3)
    ]
    for s in samplers:
        s.set_epoch(2)
    shares = [list(s) for s in samplers]
    assert [len(x) for x in shares] == [18, 18, 18]  # ceil(53 / 3)
    global_order = samplers[0].global_order().tolist()
    interleaved = [shares[i % 3][i // 3] for i in range(54)]
    assert interleaved == global_order  # positions are disjoint and cover the epoch
    again = DistributedWeightedSampler(weights, num_replicas=3, rank=1, seed=7)
    again.set_epoch(2)
    assert list(again) == shares[1]  # deterministic per epoch
    again.set_epoch(3)
    assert list(again) != shares[1]  # and different the next epoch


def test_without_replacement_ranks_get_disjoint_clips():
    weights = balanced_weights([(0,)] * 30 + [(1,)] * 6, 2)
    shares = [
        set(DistributedWeightedSampler(weights, num_replicas=4, rank=r, replacement=False))
        for r in range(4)
    ]
    for a in range(4):
        for b in range(a + 1, 4):
            assert not shares[a] & shares[b]
    assert set().union(*shares) == set(range(36))


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank"):
        DistributedWeightedSampler([1.0, 1.0], num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="not all zero"):
        DistributedWeightedSampler([0.0, 0.0])
