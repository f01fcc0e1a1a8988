"""Per-layer merge schedules: every accepted form of ``merge:`` turned into one canonical list.

Accepted forms (``MergeSpec``):

- ``int`` r: merge r tokens in every layer (ToMe's constant schedule);
- ``list[int]``: r per layer; a list shorter than the depth is zero-padded;
- ``MergeSchedule``: merge *ratios* (fractions of the mergeable tokens present at a layer),
  a named shape and per-layer overrides, ratios in ``ratio_overrides`` and absolute r in
  ``r_overrides`` (two keys, so a YAML ``1`` and ``1.0`` cannot mean different things); a
  plain dict with its fields is accepted too;
- ``InflectSchedule`` (or a tuple ``(r, inflect)``, or a dict ``{r, inflect}``): ToMe's
  ``(r, inflect)`` form, a straight line of r per layer with mean about r, tilted by
  ``inflect`` in [-1, 1] (0 constant, -1 ToMe's "decreasing schedule", +1 increasing).
  A tuple is this form, a list is per-layer r, as in ToMe's ``parse_r``.

Validation rules (all raise ``ValueError`` naming the value and the layer):

- negative r, ratios outside ``[0, 0.5)``, layer indices outside the model, lists longer
  than the depth, unknown shapes and wrong types are errors;
- a layer in both ``ratio_overrides`` and ``r_overrides``, an r that is not an int and a
  ratio outside ``[0, 0.5)`` are errors naming the key;
- an explicit r (int, list entry or ``r_overrides`` value) larger than half the mergeable tokens of
  the *input*, ``(num_tokens - num_prefix_tokens) // 2``, can never be met at any layer and
  is an error at config time;
- an r that is possible on the input but exceeds what is left at a later layer (because
  earlier layers already merged tokens) is capped to ``(N_l - prefix) // 2``, as in ToMe's
  reference; ``ResolvedSchedule.r`` holds the capped values actually used, ``.capped`` the
  layers concerned, and a WARNING says so once per schedule (not silently).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Literal, Union

SHAPES = ("constant", "decreasing", "late")
_EPS = 1e-9  # so that ratio * tokens hitting an integer is not floored one below by rounding


log = logging.getLogger(__name__)


@dataclass
class MergeSchedule:
    """Merge ratios per layer, for configs and sweeps.

    Args:
        ratio: Fraction of the mergeable (non-prefix) tokens present at a layer that this
            layer merges, ``r_l = floor(ratio_l * (N_l - num_prefix_tokens))``; a float for
            every layer or a per-layer list (zero-padded to the depth). Must lie in ``[0, 0.5)``.
        shape: How a float ratio is spread over layers: "constant" (``ratio`` at every
            layer); "decreasing" (linear from ``2 * ratio`` at the first layer to 0 at the
            last, so the mean per-layer ratio stays ``ratio``, needs ``ratio < 0.25``; it
            merges more early, where it saves most, and so removes somewhat more tokens in
            total than "constant"); "late" (``ratio`` only in the second half of the layers,
            ``l >= depth // 2``, 0 before). A list ``ratio`` must use "constant".
        ratio_overrides: Layer index -> ratio replacing that layer's ratio after the shape
            is applied (e.g. ``{0: 0.0, 11: 0.3}``).
        r_overrides: Layer index -> absolute r (tokens merged) for that layer instead of a
            ratio (e.g. ``{0: 64}``). A layer may appear in only one of the two.
    """

    ratio: float | list[float] = 0.0
    shape: Literal["constant", "decreasing", "late"] = "constant"
    ratio_overrides: dict[int, float] | None = None
    r_overrides: dict[int, int] | None = None


@dataclass
class InflectSchedule:
    """ToMe's ``(r, inflect)`` schedule (Bolya et al. 2023, ``tome/utils.py`` ``parse_r``).

    Layer l of L merges ``trunc(a + (b - a) * l / (L - 1))`` tokens, with
    ``a = trunc(r * (1 - inflect))`` and ``b = 2r - a``: a line from a (first layer) to b
    (last layer) whose mean is about r. ``inflect`` 0 gives r everywhere, -1 ToMe's
    "decreasing schedule" (2r down to 0), +1 the increasing one. Computed exactly (on the
    decimal value of ``inflect``) rather than in floating point; with one layer it is [r].

    Args:
        r: Mean tokens merged per layer (>= 0).
        inflect: Tilt in [-1, 1].
    """

    r: int = 0
    inflect: float = 0.0


MergeSpec = Union[int, list[int], MergeSchedule, InflectSchedule]  # noqa: UP007 (runtime alias for jsonargparse)


@dataclass(frozen=True)
class ResolvedSchedule:
    """Canonical schedule: ``r[l]`` tokens merged in layer l (after capping) and
    ``tokens[l]`` tokens entering layer l (``tokens[depth]``: leaving the last layer)."""

    r: list[int]
    tokens: list[int]
    num_prefix_tokens: int
    capped: tuple[int, ...] = ()  # layers whose explicit r was reduced to what was left

    @property
    def depth(self) -> int:
        return len(self.r)


# A per-layer entry before resolution: ("r", int) absolute or ("ratio", float).
_Entry = tuple[str, float]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return (_is_int(v) or isinstance(v, float)) and not isinstance(v, bool)


def _check_ratio(value: object, layer: int | str, what: str) -> float:
    if not _is_number(value) or not (0.0 <= float(value) < 0.5) or math.isnan(float(value)):
        raise ValueError(
            f"merge {what}={value!r} at layer {layer}: expected a ratio in [0, 0.5) "
            "(fraction of the mergeable tokens present at that layer)"
        )
    return float(value)


def _check_r(value: object, layer: int | str, what: str) -> int:
    if not _is_int(value) or value < 0:
        raise ValueError(f"merge {what}={value!r} at layer {layer}: expected an int r >= 0")
    return int(value)


def _as_schedule(spec: Mapping) -> MergeSchedule | InflectSchedule:
    kind = InflectSchedule if {"r", "inflect"} & set(spec) else MergeSchedule
    known = {f.name for f in fields(kind)}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(
            f"merge schedule has unknown keys {unknown}; expected some of "
            f"{sorted(f.name for f in fields(MergeSchedule))} (ratios) or "
            f"{sorted(f.name for f in fields(InflectSchedule))} (ToMe's (r, inflect))"
        )
    return kind(**spec)


def _inflect_entries(spec: InflectSchedule, depth: int) -> list[_Entry]:
    """ToMe's (r, inflect) line, see ``InflectSchedule``."""
    r = _check_r(spec.r, "all", "(r, inflect) r")
    inflect = spec.inflect
    if not _is_number(inflect) or math.isnan(float(inflect)) or not -1.0 <= inflect <= 1.0:
        raise ValueError(f"merge (r, inflect) inflect={inflect!r}: expected a number in [-1, 1]")
    if depth == 1:
        return [("r", r)]
    first = int(r * (1 - Fraction(str(float(inflect)))))  # trunc toward 0 (values are >= 0)
    last = 2 * r - first
    return [
        ("r", int(first + Fraction(last - first) * layer / (depth - 1))) for layer in range(depth)
    ]


def _entries(spec: object, depth: int) -> list[_Entry]:
    """Validate a spec that needs no token count and expand it to one entry per layer."""
    if not _is_int(depth) or depth <= 0:
        raise ValueError(f"merge schedule needs a positive model depth, got depth={depth!r}")
    if isinstance(spec, Mapping):
        spec = _as_schedule(spec)
    if _is_int(spec):
        return [("r", _check_r(spec, layer, "r")) for layer in range(depth)]
    if isinstance(spec, tuple):
        if len(spec) != 2:
            raise ValueError(
                f"merge={spec!r}: a tuple is ToMe's (r, inflect) pair; give a list for r per layer"
            )
        spec = InflectSchedule(*spec)
    if isinstance(spec, InflectSchedule):
        return _inflect_entries(spec, depth)
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        if len(spec) > depth:
            raise ValueError(
                f"merge list has {len(spec)} entries but the model has depth {depth}: "
                "give at most one r per layer (shorter lists are zero-padded)"
            )
        out = [("r", _check_r(v, layer, "r")) for layer, v in enumerate(spec)]
        return out + [("r", 0)] * (depth - len(out))
    if isinstance(spec, MergeSchedule):
        return _schedule_entries(spec, depth)
    hint = f"; for a ratio use MergeSchedule(ratio={spec})" if isinstance(spec, float) else ""
    raise ValueError(
        f"merge={spec!r} ({type(spec).__name__}) is not a merge spec: expected an int r, "
        f"a list of r per layer, a MergeSchedule or an (r, inflect) pair{hint}"
    )


def _schedule_entries(spec: MergeSchedule, depth: int) -> list[_Entry]:
    if spec.shape not in SHAPES:
        raise ValueError(f"merge shape={spec.shape!r}: expected one of {list(SHAPES)}")
    ratio = spec.ratio
    if isinstance(ratio, Sequence) and not isinstance(ratio, str):
        if spec.shape != "constant":
            raise ValueError(
                f"merge shape={spec.shape!r} with a per-layer ratio list: a list already "
                "gives every layer its ratio, use shape='constant'"
            )
        if len(ratio) > depth:
            raise ValueError(
                f"merge ratio list has {len(ratio)} entries but the model has depth {depth}"
            )
        ratios = [_check_ratio(v, layer, "ratio") for layer, v in enumerate(ratio)]
        ratios += [0.0] * (depth - len(ratios))
    else:
        base = _check_ratio(ratio, "all", "ratio")
        if spec.shape == "constant":
            ratios = [base] * depth
        elif spec.shape == "late":
            ratios = [base if layer >= depth // 2 else 0.0 for layer in range(depth)]
        else:  # decreasing: 2*ratio at layer 0 down to 0 at the last layer, mean = ratio
            span = max(depth - 1, 1)
            ratios = [2 * base * (depth - 1 - layer) / span for layer in range(depth)]
            if depth == 1:
                ratios = [base]
            _check_ratio(ratios[0], 0, f"ratio (2 x {base} for shape 'decreasing')")
    entries: list[_Entry] = [("ratio", v) for v in ratios]
    ratio_overrides = _override_layers(spec.ratio_overrides, "ratio_overrides", depth)
    r_overrides = _override_layers(spec.r_overrides, "r_overrides", depth)
    both = sorted(set(ratio_overrides) & set(r_overrides))
    if both:
        raise ValueError(
            f"merge layer(s) {both} are in both ratio_overrides and r_overrides: give each "
            "layer a ratio or an r, not both"
        )
    for layer, value in ratio_overrides.items():
        if not _is_number(value) or math.isnan(float(value)) or not 0.0 <= value < 0.5:
            raise ValueError(
                f"merge ratio_overrides[{layer}]={value!r}: expected a ratio in [0, 0.5) "
                "(fraction of the mergeable tokens present at that layer); an absolute r "
                "belongs in r_overrides"
            )
        entries[layer] = ("ratio", float(value))
    for layer, value in r_overrides.items():
        if not _is_int(value) or value < 0:
            raise ValueError(
                f"merge r_overrides[{layer}]={value!r}: expected an int r >= 0 (tokens merged "
                "in that layer); a ratio belongs in ratio_overrides"
            )
        entries[layer] = ("r", int(value))
    return entries


def _override_layers(overrides: object, key: str, depth: int) -> dict:
    """``overrides`` checked to map layer indices of the model to values."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise ValueError(f"merge {key}={overrides!r}: expected a mapping layer index -> value")
    for layer in overrides:
        if not _is_int(layer) or not (0 <= layer < depth):
            raise ValueError(
                f"merge {key} key {layer!r}: expected a layer index in [0, {depth - 1}]"
            )
    return dict(overrides)


def validate_merge_spec(spec: MergeSpec, depth: int) -> None:
    """Check everything about a spec that does not depend on the token count."""
    _entries(spec, depth)


def resolve_schedule(
    spec: MergeSpec, num_tokens: int, depth: int, num_prefix_tokens: int = 1, *, warn: bool = True
) -> ResolvedSchedule:
    """Turn any ``MergeSpec`` into the r per layer and the tokens entering each layer.

    Raises ``ValueError`` at config time for impossible requests (see the module docstring);
    r values that only become impossible because earlier layers merged are capped, with one
    WARNING per distinct schedule (``warn=False`` for candidates a planner only scores: the
    schedule it picks warns when it is used).
    """
    entries = _entries(spec, depth)
    if not _is_int(num_prefix_tokens) or num_prefix_tokens < 0:
        raise ValueError(f"num_prefix_tokens={num_prefix_tokens!r}: expected an int >= 0")
    if not _is_int(num_tokens) or num_tokens < num_prefix_tokens:
        raise ValueError(
            f"num_tokens={num_tokens!r}: expected an int >= num_prefix_tokens={num_prefix_tokens}"
        )
    initial_cap = (num_tokens - num_prefix_tokens) // 2
    rs: list[int] = []
    capped: list[int] = []
    tokens = [num_tokens]
    for layer, (kind, value) in enumerate(entries):
        n = tokens[-1]
        mergeable = n - num_prefix_tokens
        if kind == "r":
            if value > initial_cap:
                raise ValueError(
                    f"merge r={int(value)} at layer {layer} is impossible: the input has "
                    f"{num_tokens} tokens ({num_prefix_tokens} prefix), so at most "
                    f"{initial_cap} can merge in one layer"
                )
            r = int(value)
        else:
            r = math.floor(value * mergeable + _EPS)
        if kind == "r" and r > mergeable // 2:
            capped.append(layer)
        r = min(r, mergeable // 2)
        rs.append(r)
        tokens.append(n - r)
    resolved = ResolvedSchedule(rs, tokens, num_prefix_tokens, tuple(capped))
    if capped and warn:
        _warn_capped_once(spec, resolved)
    return resolved


_WARNED: set[str] = set()  # schedules already reported (config code resolves them repeatedly)


def _warn_capped_once(spec: object, resolved: ResolvedSchedule) -> None:
    key = f"{spec!r}|{resolved.tokens[0]}|{resolved.depth}"
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(
            "merge %r: fewer tokens than asked are left at layer(s) %s, so r there is capped "
            "to half the mergeable tokens (as in ToMe); r per layer used: %s",
            spec,
            list(resolved.capped),
            resolved.r,
        )
