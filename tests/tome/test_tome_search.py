"""The relaxed schedule search (tome.relax, tome.search) on tiny timm DeiTs."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.models.deit import VisionTransformerDistilled

from fastast_pl.tome import apply_tome, resolve_schedule
from fastast_pl.tome.relax import RateRelaxation, relax, unrelax
from fastast_pl.tome.search import search_schedule

IMG, PATCH, DIM, DEPTH = 32, 4, 32, 6
TOKENS = (IMG // PATCH) ** 2 + 2  # 64 patches + cls + dist


def make_model(seed: int = 0) -> VisionTransformerDistilled:
    torch.manual_seed(seed)
    model = VisionTransformerDistilled(
        img_size=IMG, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=4, num_classes=5
    )
    with torch.no_grad():  # a spread of logits, so that the distillation loss has a gradient
        model.head.weight.mul_(50)
        model.head_dist.weight.mul_(50)
    return model.eval()


def batches(n: int = 3, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, IMG, IMG, generator=g) for _ in range(n)]


def hand_flops(tokens: list[int], dim: int) -> int:
    """Written out from the paper count (2 FLOPs per multiply-add, mlp_ratio 4): attention
    on n tokens 2*(3nC^2 + nC^2 + 2n^2C) = 8nC^2 + 4n^2C, the MLP after the merge 16n'C^2."""
    return sum(
        8 * n * dim * dim + 4 * n * n * dim + 16 * n_out * dim * dim
        for n, n_out in zip(tokens, tokens[1:])
    )


def peaked(schedule: list[int]) -> RateRelaxation:
    relaxation = RateRelaxation(DEPTH, TOKENS, 2, init_r=0)
    with torch.no_grad():
        for layer, r in enumerate(schedule):
            relaxation.logits[layer, r] += 100.0
    return relaxation


def test_relaxed_forward_is_the_merged_model():
    """With its forward values, the relaxed model is apply_tome with the mode schedule,
    capping included (layer 3 asks for more than is left)."""
    model, x = make_model(), batches(1)[0]
    relaxation = peaked([9, 0, 14, 30, 3, 2])
    state = relax(model, relaxation)
    relaxed = model(x)
    assert state.schedule == [9, 0, 14, 20, 3, 2]  # 43 tokens left at layer 3: (43 - 2) // 2
    unrelax(model)
    expected = resolve_schedule([9, 0, 14, 30, 3, 2], TOKENS, DEPTH, 2)
    assert expected.r == state.schedule
    merged = apply_tome(copy.deepcopy(model), r=[9, 0, 14, 30, 3, 2])(x)
    torch.testing.assert_close(relaxed, merged, atol=1e-5, rtol=1e-5)


def test_gradient_reaches_the_rates_of_every_layer_but_the_last():
    """Merging in the last block happens after its attention, and the MLP is per token: it
    cannot change prefix-pooled logits, so only that layer's rate gets no gradient."""
    model, x = make_model(), batches(1)[0]
    relaxation = RateRelaxation(DEPTH, TOKENS, 2, init_r=6)
    relax(model, relaxation)
    model(x).logsumexp(-1).sum().backward()
    grads = relaxation.logits.grad.abs().sum(-1)
    assert (grads[:-1] > 0).all()
    assert grads[-1] == 0


def test_hard_expected_flops_are_the_analytic_flops():
    relaxation = peaked([9, 0, 14, 30, 3, 2])
    relaxation.hard = True
    tokens = [TOKENS]
    for r in relaxation.schedule():
        tokens.append(tokens[-1] - r)
    assert relaxation.expected_tokens().tolist() == tokens
    assert relaxation.expected_flops(DIM).item() == hand_flops(tokens, DIM)


def test_search_reaches_the_target_exactly_counted_and_leaves_the_weights():
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    logged = []
    result = search_schedule(model, batches(), 0.5, steps=24, seed=3, on_step=logged.append)
    assert len(logged) == 24 and logged[-1].temperature == 0.0  # ends in the hard phase
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [p.requires_grad for p in model.parameters()] == flags
    assert not model.training
    assert not any(type(b).__name__.startswith("Relaxed") for b in model.blocks)
    resolved = resolve_schedule(result.schedule, TOKENS, DEPTH, 2)
    assert resolved.r == result.schedule  # nothing capped: the schedule means what it says
    full = hand_flops([TOKENS] * (DEPTH + 1), DIM)
    analytic = hand_flops(resolved.tokens, DIM) / full
    assert result.flops_fraction == pytest.approx(analytic, rel=1e-12)
    assert result.expected_flops_fraction == pytest.approx(analytic, rel=1e-9)
    assert abs(analytic / 0.5 - 1) <= 0.03


def test_search_is_seeded():
    first = search_schedule(make_model(), batches(), 0.6, steps=10, seed=5)
    again = search_schedule(make_model(), batches(), 0.6, steps=10, seed=5)
    assert first.schedule == again.schedule
    assert [s.distill_loss for s in first.history] == [s.distill_loss for s in again.history]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"flops": 0.0}, "fraction"), ({"flops": 1.5}, "fraction"), ({"steps": 0}, "steps")],
)
def test_bad_arguments_are_named(kwargs, match):
    args = {"flops": 0.5, "steps": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        search_schedule(make_model(), batches(1), args["flops"], args["steps"])


def test_refuses_a_model_with_tome_applied():
    model = apply_tome(make_model(), r=2)
    with pytest.raises(ValueError, match="remove_tome"):
        relax(model, RateRelaxation(DEPTH, TOKENS, 2, init_r=2))
