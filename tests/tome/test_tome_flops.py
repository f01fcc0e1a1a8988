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
    resolve_schedule,
    schedule_for_flops_reduction,
    tome_state,
    training_flops,
    vit_flops,
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
