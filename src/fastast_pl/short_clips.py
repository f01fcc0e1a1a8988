"""Clips shorter than the model's window: run them at their own length instead of padding.

By default (``pad``) a short clip is zero-padded to the window before normalisation, as
in training: exact, but a 1 s clip on a 10.24 s model costs a whole window. ``crop-pos``
runs it at its own length (``ASTModel.forward(..., crop_time=True)``): its frames padded only up to
the end of the patch column they start, the time position embeddings cut to those columns,
so the transformer sees fewer tokens. It equals ``pad`` for clips of at least one window
and approximates it below (accuracy and speed against padding: docs/benchmarks.md,
"Short clips").
"""

from __future__ import annotations

import math

from fastast_pl.models.arch import patch_grid
from fastast_pl.models.ast import ASTModel
from fastast_pl.tome import MergeSchedule, MergeSpec

SHORT_CLIPS = ("pad", "crop-pos")


def kept_frames(model: ASTModel, frames: int) -> int:
    """Frames a ``frames``-long clip is padded to under ``crop-pos``: the fewest that cover
    it with whole patch columns (at least one patch), at most the window."""
    size, stride = model.arch.patch_size, model.arch.tstride
    if frames >= model.input_tdim:
        return model.input_tdim
    columns = max(math.ceil((frames - size) / stride), 0) + 1
    return min(size + (columns - 1) * stride, model.input_tdim)


def tokens_entering(model: ASTModel, frames: int) -> int:
    """Tokens entering the first block for an input of ``frames`` frames (prefix included)."""
    columns = patch_grid(frames, model.arch.patch_size, model.arch.tstride)
    return model.num_prefix_tokens + model.grid_size[0] * columns


def schedule_as_ratios(model: ASTModel) -> MergeSpec:
    """The model's merge schedule as per-layer shares of the tokens present (a
    ``MergeSchedule``), so that a shorter input merges the same share of its tokens instead
    of the same count; at the full window it resolves to the same r per layer."""
    resolved = model.merge_schedule()
    if not any(resolved.r):
        return 0
    prefix = model.num_prefix_tokens
    ratios = [r / (n - prefix) for r, n in zip(resolved.r, resolved.tokens)]
    if max(ratios) >= 0.5:
        layer = max(range(len(ratios)), key=ratios.__getitem__)
        raise ValueError(
            f"merge r per layer {resolved.r}: layer {layer} merges half of its tokens, which a "
            "share of the tokens present (< 0.5) cannot express; use short_clips='pad'"
        )
    spec = MergeSchedule(ratio=ratios)
    if model.merge_schedule(spec).r != resolved.r:  # floating point put one r off
        raise ValueError(f"merge r per layer {resolved.r} cannot be written as shares exactly")
    return spec
