"""Merge schedules: every accepted form, the cap, every error, and YAML parsing."""

from __future__ import annotations

import pytest

from fastast_pl.tome import MergeSchedule, resolve_schedule, validate_merge_spec


def test_int_is_constant_and_capped_later():
    s = resolve_schedule(16, num_tokens=197, depth=12, num_prefix_tokens=1)
    # 196 mergeable tokens: 16 per layer until fewer than 32 mergeable remain, then half.
    assert s.r[:11] == [16] * 11
    assert s.tokens[11] == 197 - 176 and s.r[11] == (21 - 1) // 2
    assert s.tokens == [197 - sum(s.r[:i]) for i in range(13)]
    assert len(s.tokens) == 13 and len(s.r) == 12


def test_list_is_zero_padded():
    s = resolve_schedule([4, 2], num_tokens=30, depth=4, num_prefix_tokens=2)
    assert s.r == [4, 2, 0, 0] and s.tokens == [30, 26, 24, 24, 24]


def test_ratio_shapes():
    const = resolve_schedule(MergeSchedule(ratio=0.1), 102, 4, 2)
    assert const.r == [10, 9, 8, 7]  # floor(0.1 * mergeable tokens present)
    late = resolve_schedule(MergeSchedule(ratio=0.1, shape="late"), 102, 4, 2)
    assert late.r == [0, 0, 10, 9]
    dec = resolve_schedule(MergeSchedule(ratio=0.15, shape="decreasing"), 102, 4, 2)
    # per-layer ratios 0.3, 0.2, 0.1, 0.0
    assert dec.r == [30, 14, 5, 0]
    per_layer = resolve_schedule(MergeSchedule(ratio=[0.2, 0.0, 0.25]), 102, 4, 2)
    assert per_layer.r == [20, 0, 20, 0]


def test_overrides_ratio_and_r():
    spec = MergeSchedule(ratio=0.1, ratio_overrides={1: 0.2}, r_overrides={3: 5})
    s = resolve_schedule(spec, 102, 4, 2)
    assert s.r == [10, 18, 7, 5]
    s = resolve_schedule(MergeSchedule(ratio_overrides={3: 0.2}), 102, 4, 2)
    assert s.r == [0, 0, 0, 20]
    # a ratio of 0 may be written as an int; the key says what a value is
    s = resolve_schedule(MergeSchedule(ratio=0.1, ratio_overrides={0: 0}), 102, 4, 2)
    assert s.r == [0, 10, 9, 8]


def test_dict_spec_is_a_schedule():
    s = resolve_schedule({"ratio": 0.1, "shape": "late"}, 102, 4, 2)
    assert s.r == [0, 0, 10, 9]


def test_ast_sized_schedule_validates():
    s = resolve_schedule(100, num_tokens=1214, depth=12, num_prefix_tokens=2)
    assert s.tokens[-1] == 1214 - sum(s.r) and s.r[0] == 100 and s.tokens[0] == 1214


@pytest.mark.parametrize(
    "spec,match",
    [
        (-1, r"r=-1 at layer 0"),
        ([3, -2], r"r=-2 at layer 1"),
        ([1, 1, 1, 1, 1], r"5 entries .* depth 4"),
        (50, r"r=50 at layer 0 is impossible.*at most 49"),
        ([0, 0, 60], r"r=60 at layer 2 is impossible"),
        (MergeSchedule(ratio=0.5), r"ratio=0.5 at layer all"),
        (MergeSchedule(ratio=-0.1), r"ratio=-0.1"),
        (MergeSchedule(ratio=[0.1, 0.7]), r"ratio=0.7 at layer 1"),
        (MergeSchedule(ratio=[0.1] * 5), r"5 entries .* depth 4"),
        (MergeSchedule(ratio=0.3, shape="decreasing"), r"at layer 0"),
        (MergeSchedule(ratio=0.1, shape="wavy"), r"shape='wavy'"),
        (MergeSchedule(ratio=[0.1], shape="late"), r"shape='late' with a per-layer ratio list"),
        (MergeSchedule(ratio_overrides={4: 0.1}), r"ratio_overrides key 4"),
        (MergeSchedule(r_overrides={-1: 2}), r"r_overrides key -1"),
        (MergeSchedule(ratio_overrides={1: 0.6}), r"ratio_overrides\[1\]=0.6: expected a ratio"),
        (MergeSchedule(r_overrides={1: -3}), r"r_overrides\[1\]=-3: expected an int r"),
        (MergeSchedule(r_overrides={1: 99}), r"r=99 at layer 1 is impossible"),
        # a value of the other kind is refused, naming the key it belongs in
        (MergeSchedule(r_overrides={1: 0.3}), r"r_overrides\[1\]=0.3.*belongs in ratio_overrides"),
        (MergeSchedule(ratio_overrides={1: 4}), r"ratio_overrides\[1\]=4.*belongs in r_overrides"),
        (MergeSchedule(ratio_overrides={1: 0.1}, r_overrides={1: 2}), r"\[1\] are in both"),
        ({"ratio": 0.1, "overrides": {1: 0.2}}, r"unknown keys \['overrides'\]"),
        ({"ratio": 0.1, "speed": 2}, r"unknown keys \['speed'\]"),
        (0.1, r"merge=0.1 .*MergeSchedule\(ratio=0.1\)"),
        ("8", r"merge='8'"),
        (True, r"merge=True"),
    ],
)
def test_errors_name_value_and_layer(spec, match):
    with pytest.raises(ValueError, match=match):
        resolve_schedule(spec, num_tokens=100, depth=4, num_prefix_tokens=2)


def test_validate_without_token_count():
    validate_merge_spec(MergeSchedule(ratio=0.2, r_overrides={0: 3}), depth=3)
    with pytest.raises(ValueError, match="depth 3"):
        validate_merge_spec([1, 2, 3, 4], depth=3)
    with pytest.raises(ValueError, match="num_tokens=1"):
        resolve_schedule(0, num_tokens=1, depth=3, num_prefix_tokens=2)


def test_yaml_parsing_with_jsonargparse(tmp_path, capsys):
    from jsonargparse import ArgumentParser

    from fastast_pl.tome import MergeSpec

    parser = ArgumentParser()
    parser.add_argument("--config", action="config")
    parser.add_argument("--merge", type=MergeSpec, default=0)

    def parse(text: str):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        return parser.instantiate_classes(parser.parse_args(["--config", str(path)])).merge

    assert parse("merge: 8\n") == 8
    assert parse("merge: [8, 8, 4]\n") == [8, 8, 4]
    sched = parse(
        "merge:\n  ratio: 0.1\n  shape: decreasing\n  ratio_overrides: {3: 0.2}\n"
        "  r_overrides: {5: 7}\n"
    )
    assert isinstance(sched, MergeSchedule)
    assert sched.ratio == 0.1 and sched.shape == "decreasing"
    assert sched.ratio_overrides == {3: 0.2} and sched.r_overrides == {5: 7}
    resolved = resolve_schedule(sched, 102, 6, 2)
    assert resolved.r[3] == int(0.2 * (resolved.tokens[3] - 2)) and resolved.r[5] == 7
    per_layer = parse("merge: {ratio: [0.1, 0.2]}\n")
    assert per_layer.ratio == [0.1, 0.2]
    # A sweep overrides one field on the command line.
    args = parser.parse_args(["--merge.ratio=0.15", "--merge.shape=late"])
    assert parser.instantiate_classes(args).merge == MergeSchedule(ratio=0.15, shape="late")
    # a YAML value of the wrong kind is an error naming its key, at parse or at resolve time
    with pytest.raises(SystemExit):
        parse("merge: {ratio: 0.1, r_overrides: {1: 0.3}}\n")
    assert 'key "r_overrides"' in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"ratio_overrides\[1\]=4.0.*belongs in r_overrides"):
        resolve_schedule(parse("merge: {ratio: 0.1, ratio_overrides: {1: 4}}\n"), 102, 4, 2)


# ToMe's (r, inflect) form (Bolya et al. 2023; tome/utils.py parse_r): per layer l of L,
# r_l = trunc(a + (b - a) * l / (L - 1)) with a = trunc(r * (1 - inflect)), b = 2r - a.
# inflect 0 is the constant schedule, -1 the paper's "decreasing" one, +1 increasing.
@pytest.mark.parametrize(
    "spec,depth,expected",
    [
        ((8, 0.0), 12, [8] * 12),  # ToMe: "(r, 0) is as providing a constant r"
        # ToMe: "(r, -1) is ... the decreasing schedule": a = 16, b = 0, step -16/11
        ((8, -1.0), 12, [16, 14, 13, 11, 10, 8, 7, 5, 4, 2, 1, 0]),
        ((8, 1.0), 12, [0, 1, 2, 4, 5, 7, 8, 10, 11, 13, 14, 16]),  # a = 0, b = 16
        ((6, 0.5), 4, [3, 5, 7, 9]),  # a = trunc(3.0) = 3, b = 9, step 2
        ((5, -0.5), 3, [7, 5, 3]),  # a = trunc(7.5) = 7, b = 3, step -2
        ((4, -1.0), 1, [4]),  # one layer: r itself (ToMe divides by L - 1 = 0)
    ],
)
def test_r_inflect_form_follows_tome(spec, depth, expected):
    from fastast_pl.tome.schedule import InflectSchedule

    resolved = resolve_schedule(spec, num_tokens=200, depth=depth, num_prefix_tokens=1)
    assert resolved.r == expected
    assert resolve_schedule(InflectSchedule(*spec), 200, depth, 1).r == expected
    assert resolve_schedule({"r": spec[0], "inflect": spec[1]}, 200, depth, 1).r == expected


def test_r_inflect_form_is_validated():
    with pytest.raises(ValueError, match=r"inflect=1\.5.*\[-1, 1\]"):
        validate_merge_spec((8, 1.5), depth=4)
    with pytest.raises(ValueError, match="r=-2"):
        validate_merge_spec((-2, 0.0), depth=4)
    with pytest.raises(ValueError, match=r"\(r, inflect\)"):
        validate_merge_spec((8, 0.0, 1.0), depth=4)
    # (10, -1) asks 20 tokens of layer 0; 30 patch tokens allow at most 15.
    with pytest.raises(ValueError, match="r=20 at layer 0 is impossible"):
        resolve_schedule((10, -1.0), num_tokens=31, depth=4, num_prefix_tokens=1)


def test_r_inflect_yaml_parsing_with_jsonargparse(tmp_path):
    from jsonargparse import ArgumentParser

    from fastast_pl.tome import MergeSpec
    from fastast_pl.tome.schedule import InflectSchedule

    parser = ArgumentParser()
    parser.add_argument("--config", action="config")
    parser.add_argument("--merge", type=MergeSpec, default=0)
    path = tmp_path / "c.yaml"
    path.write_text("merge: {r: 8, inflect: -1.0}\n")
    merge = parser.instantiate_classes(parser.parse_args(["--config", str(path)])).merge
    assert merge == InflectSchedule(r=8, inflect=-1.0)
    assert resolve_schedule(merge, 200, 12, 1).r[:3] == [16, 14, 13]


def test_an_r_capped_at_a_later_layer_is_reported_not_silent(caplog, monkeypatch):
    """r=40 on 4 layers of 107 tokens (2 prefix): 52 mergeable, so layer 0 merges 40; layer 1
    has 67 - 2 = 65 left -> at most 32; layer 2: 35 - 2 = 33 -> 16; layer 3: 19 - 2 = 17 -> 8."""
    import fastast_pl.tome.schedule as schedule_module

    monkeypatch.setattr(schedule_module, "_WARNED", set())  # reported once per process
    with caplog.at_level("WARNING", logger="fastast_pl.tome.schedule"):
        resolved = resolve_schedule(40, num_tokens=107, depth=4, num_prefix_tokens=2)
        resolve_schedule(40, num_tokens=107, depth=4, num_prefix_tokens=2)  # once, not twice
    assert resolved.r == [40, 32, 16, 8]
    assert resolved.capped == (1, 2, 3)
    warnings = [r for r in caplog.records if "capped" in r.getMessage()]
    assert len(warnings) == 1 and "[1, 2, 3]" in warnings[0].getMessage()
