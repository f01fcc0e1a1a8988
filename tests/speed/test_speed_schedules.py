"""The timing engine's bookkeeping and the per-schedule speed of an AST.

No assertion on how fast anything is (speed is measured by the benchmark, never in unit
tests): these check what is timed, how rounds interleave and that equal schedules share
one measurement.
"""

from __future__ import annotations

import pytest
import torch

from fastast_pl.models.arch import ASTArch
from fastast_pl.models.ast import ASTModel
from fastast_pl.speed.engine import Variant, interleaved_times, rounds, spread
from fastast_pl.speed.schedules import TimingSettings, build_model, model_spec, time_schedules
from fastast_pl.tome.flops import vit_flops


def _tiny(merge=0) -> ASTModel:
    torch.manual_seed(0)
    arch = ASTArch(embed_dim=32, depth=2, num_heads=2, patch_size=16, fstride=16, tstride=16)
    return ASTModel(5, 64, 32, arch, merge=merge).eval()


def test_rounds_rotate_the_order_and_every_variant_runs_once_per_round():
    calls = []
    variants = [
        Variant("m", name, 1.0, [], [], 1.0, lambda x, n=name: calls.append(n)) for name in "abc"
    ]
    assert [[v.schedule for v in rnd] for rnd in rounds(variants, 3)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
    ]
    timings = interleaved_times(variants, torch.zeros(1), torch.device("cpu"), 2, 4, "cpu")
    assert all(len(t) == 4 for t in timings.times.values())
    assert len(calls) == 3 * (1 + 1 + 4)  # first call, one more warm-up round, 4 timed rounds
    with pytest.raises(ValueError, match="clock"):
        interleaved_times(variants, torch.zeros(1), torch.device("cpu"), 1, 1, "sundial")


def test_spread_is_clips_per_second_at_median_slowest_and_fastest_call():
    got = spread([0.5, 0.25, 1.0], clips=4)
    assert got == {"clips_per_s": 8.0, "clips_per_s_min": 4.0, "clips_per_s_max": 16.0}


def test_model_spec_rebuilds_the_same_architecture():
    model = _tiny()
    rebuilt = build_model(model_spec(model))
    assert model_spec(rebuilt) == model_spec(model)
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(
        p.numel() for p in model.parameters()
    )
    with pytest.raises(ValueError, match="model spec"):
        build_model({"arch": {}})


def test_equal_schedules_share_one_measurement_and_r0_is_the_reference():
    model = _tiny(merge=[1, 1])
    settings = TimingSettings(batch_size=2, rounds=2, warmup=1)
    # 10 tokens: r=3 is capped to [3, 2] in layer 1, the same schedule as [3, 2]
    r0, a, b, c, d = time_schedules(model, [0, [3, 2], [3, 2], 3, [1, 0]], settings)
    assert a is b and c is a  # one measurement for one (resolved) schedule
    assert d is not a and d.r == (1, 0)
    assert r0.speedup == r0.speedup_min == r0.speedup_max == 1.0  # paired with itself
    assert r0.flop_ratio == 1.0 and a.r == (3, 2)
    assert a.tokens == tuple(model.merge_schedule([3, 2]).tokens)
    assert a.gmacs == pytest.approx(vit_flops(a.tokens, 32) / 2 / 1e9)
    assert a.flop_ratio == pytest.approx(vit_flops(r0.tokens, 32) / vit_flops(a.tokens, 32))
    assert a.clips_per_s_min <= a.clips_per_s <= a.clips_per_s_max
    assert a.speedup_min <= a.speedup <= a.speedup_max
    assert model.merge == [1, 1]  # the model's own schedule is back
    assert "2 random clips per batch" in settings.describe()
