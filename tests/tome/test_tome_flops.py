"""Analytic FLOPs vs torch's FlopCounterMode on a real patched model; FLOPs-target search."""

from __future__ import annotations

import pytest
import torch
from timm.models.deit import VisionTransformerDistilled
from torch.utils import flop_counter

from fastast_pl.tome import (
    MergeSchedule,
    apply_tome,
    flops_ratio,
    plan_schedules,
    resolve_schedule,
    schedule_for_flops_reduction,
    tome_state,
    training_flops,
    vit_flops,
    vit_macs,
)

DIM, HEADS, DEPTH = 32, 4, 3


def counted_block_flops(r, bsz: int = 2) -> tuple[int, list[int]]:
    """FLOPs torch counts inside model.blocks for one example, and the tokens seen."""
    torch.manual_seed(0)
    model = VisionTransformerDistilled(
        img_size=32, patch_size=4, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, num_classes=3
    ).eval()
    apply_tome(model, r=r)

    # CPU SDPA runs as flash_attention_for_cpu, which torch's counter does not list: count it
    # with torch's own SDPA formula (the one it uses for the CUDA kernels).
    def cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa_flops}
    counter = flop_counter.FlopCounterMode(display=False, custom_mapping=mapping)
    with counter, torch.no_grad():
        model(torch.randn(bsz, 3, 32, 32))
    counts = counter.get_flop_counts()
    total = sum(
        sum(counts[f"VisionTransformerDistilled.blocks.{i}"].values()) for i in range(DEPTH)
    )
    assert total % bsz == 0
    return total // bsz, tome_state(model).tokens_seen


@pytest.mark.parametrize("r", [0, [6, 4, 2], 9])
def test_vit_flops_match_torch_counter(r):
    counted, tokens = counted_block_flops(r)
    assert counted == vit_flops(tokens, DIM, 4.0, include_matching=True, head_dim=DIM // HEADS)


def test_flops_ratio_matches_counted_ratio():
    base, _ = counted_block_flops(0)
    merged, tokens = counted_block_flops(8)
    schedule = resolve_schedule(8, 66, DEPTH, 2)
    assert schedule.tokens == tokens
    got = flops_ratio(schedule, DIM, include_matching=True, head_dim=DIM // HEADS)
    assert got == pytest.approx(base / merged, rel=1e-12)
    assert flops_ratio(resolve_schedule(0, 66, DEPTH, 2), DIM) == 1.0


@pytest.mark.parametrize("target", [1.25, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("shape", ["constant", "decreasing"])
def test_schedule_for_ast_sized_targets(target, shape):
    spec = schedule_for_flops_reduction(target, 1214, 12, 2, 768, shape=shape)
    if shape == "constant":
        assert isinstance(spec, int)
    else:
        assert isinstance(spec, MergeSchedule) and spec.shape == "decreasing"
    achieved = flops_ratio(resolve_schedule(spec, 1214, 12, 2), 768)
    assert achieved == pytest.approx(target, rel=0.01)


def test_schedule_for_tiny_model_counted():
    spec = schedule_for_flops_reduction(1.5, 66, DEPTH, 2, DIM)
    base, _ = counted_block_flops(0)
    merged, _ = counted_block_flops(spec)
    assert base / merged == pytest.approx(1.5, rel=0.08)  # r moves in whole tokens


def test_schedule_search_errors():
    with pytest.raises(ValueError, match="target_ratio=0.9"):
        schedule_for_flops_reduction(0.9, 1214, 12, 2, 768)
    with pytest.raises(ValueError, match="'late' reaches at most"):
        schedule_for_flops_reduction(3.0, 1214, 12, 2, 768, shape="late")


@pytest.mark.parametrize("r", [0, [6, 4, 2]])
def test_training_flops_match_torch_counter_forward_and_backward(r):
    """Forward + backward of the blocks, counted by torch, is ``training_flops``: 3x the
    forward's matrix products plus the forward-only matching. SDPA's math kernel spells
    attention out as counted bmm ops, with their backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    model = VisionTransformerDistilled(
        img_size=32, patch_size=4, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, num_classes=3
    ).train()
    apply_tome(model, r=r)
    counter = flop_counter.FlopCounterMode(display=False)
    with counter, sdpa_kernel(SDPBackend.MATH):
        model(torch.randn(1, 3, 32, 32)).sum().backward()
    counts = counter.get_flop_counts()
    counted = sum(
        sum(counts[f"VisionTransformerDistilled.blocks.{i}"].values()) for i in range(DEPTH)
    )
    tokens = tome_state(model).tokens_seen
    forward = vit_flops(tokens, DIM, 4.0)
    expected = training_flops(tokens, DIM, 4.0, include_matching=True, head_dim=DIM // HEADS)
    assert counted == expected
    assert expected >= 3 * forward and (r == 0) == (expected == 3 * forward)


def test_gmacs_are_half_of_what_torch_counts():
    """GMACs (1 per multiply-add, fvcore's and the papers' unit) against FlopCounterMode,
    which counts 2 FLOPs per multiply-add."""
    for r in (0, [6, 4, 2]):
        counted, tokens = counted_block_flops(r)
        matching = vit_flops(tokens, DIM, 4.0, True, DIM // HEADS) - vit_flops(tokens, DIM)
        assert 2 * vit_macs(tokens, DIM) == counted - matching


def _by_hand(tokens, dim):
    """Block FLOPs written out: attention on tokens[l] (qkv 3NC^2, scores and AV 2N^2C,
    proj NC^2), MLP on tokens[l + 1] (8NC^2); 2 per multiply-add."""
    return sum(
        2 * (4 * n * dim * dim + 2 * n * n * dim) + 2 * 8 * m * dim * dim
        for n, m in zip(tokens[:-1], tokens[1:])
    )


def test_weighted_schedule_reaches_the_target_in_the_shape_of_the_weights():
    r = schedule_for_flops_reduction(1.4, 202, 4, 2, 64, weights=[0.0, 1.0, 0.5, 0.0])
    assert r[0] == 0 and r[3] == 0 and r[1] > r[2] > 0
    tokens = [202]
    for r_l in r:
        tokens.append(tokens[-1] - r_l)
    ratio = _by_hand([202] * 5, 64) / _by_hand(tokens, 64)
    assert ratio >= 1.4
    fewer = [202, 202, 202 - (r[1] - 1)]  # one token less merged in layer 1: below the target
    fewer += [fewer[-1] - r[2], fewer[-1] - r[2]]
    assert _by_hand([202] * 5, 64) / _by_hand(fewer, 64) < 1.4
    with pytest.raises(ValueError, match="out of reach"):
        schedule_for_flops_reduction(5.0, 202, 4, 2, 64, weights=[1.0, 0, 0, 0])
    with pytest.raises(ValueError, match="4 numbers >= 0"):
        schedule_for_flops_reduction(1.4, 202, 4, 2, 64, weights=[1.0, 1.0])


def test_plan_schedules_lists_r0_then_one_schedule_per_target():
    plans = plan_schedules([1.5, 2.0], 1214, 12, 2, 768)
    assert [p.name for p in plans] == ["r=0", "1.5x", "2x"]
    assert plans[0].spec == 0 and plans[0].flop_ratio == 1.0 and not any(plans[0].r)
    for plan in plans[1:]:
        assert plan.spec == schedule_for_flops_reduction(plan.target, 1214, 12, 2, 768)
        assert plan.flop_ratio == pytest.approx(plan.target, rel=0.01)
        assert plan.flop_ratio == pytest.approx(
            _by_hand([1214] * 13, 768) / _by_hand(plan.tokens, 768), rel=1e-12
        )


def test_planning_warns_only_about_the_schedules_it_picks(caplog, monkeypatch):
    """The search scores every constant r, most of them capped at later layers; only a
    picked schedule that is capped itself is worth a warning (there were 20+ per plan)."""
    import fastast_pl.tome.schedule as schedule_module

    monkeypatch.setattr(schedule_module, "_WARNED", set())
    with caplog.at_level("WARNING", logger="fastast_pl.tome.schedule"):
        plans = plan_schedules([1.5, 2.0], 1214, 12, 2, 768)
    capped = [r for r in caplog.records if "capped" in r.getMessage()]
    picked = [p for p in plans if resolve_schedule(p.spec, 1214, 12, 2, warn=False).capped]
    assert len(capped) == len(picked) <= 2
