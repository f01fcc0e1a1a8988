"""One range check for every number a user can type, where its config class is built.

Written as ``not (low < x)`` rather than ``x <= low``: every comparison with NaN is false, so
the second form lets NaN through (``lr: .nan`` used to train to NaN weights and exit 0),
while the first refuses it. Infinity is refused unless a bound allows it.
"""

from __future__ import annotations

import math


def check_number(
    name: str,
    value: float | int,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    integer: bool = False,
) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a finite number in the range the
    bounds give (``above``/``below`` exclusive, ``at_least``/``at_most`` inclusive)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if integer and not isinstance(value, int):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    parts = []
    if above is not None:
        parts.append(f"> {above}")
    if at_least is not None:
        parts.append(f">= {at_least}")
    if below is not None:
        parts.append(f"< {below}")
    if at_most is not None:
        parts.append(f"<= {at_most}")
    inside = (
        math.isfinite(value)
        and (above is None or value > above)
        and (at_least is None or value >= at_least)
        and (below is None or value < below)
        and (at_most is None or value <= at_most)
    )
    if not inside:
        expected = " and ".join(parts) if parts else "finite"
        raise ValueError(f"{name} must be a finite number {expected}, got {value!r}")
