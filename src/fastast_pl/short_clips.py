"""Clips shorter than the model's window: options that spend less than a padded window.

By default (``pad``) a short clip is zero-padded to the window before normalisation, as
in training: exact, but a 1 s clip on a 10.24 s model costs a whole window. Two options
spend less (``ASTModel.forward``; accuracy and speed against padding: docs/benchmarks.md,
"Short clips"):

- ``crop-pos`` runs it at its own length (``crop_time=True``): its frames padded only up to
  the end of the patch column they start, the time position embeddings cut to those
  columns, so the transformer sees fewer tokens.
- ``merge-pad`` runs the padded window but merges, per frequency row, the patch columns that
  hold only padding into one token before the first block (``clip_frames=n``), with ToMe's
  sizes so that proportional attention counts it as the patches it stands for. Closer to
  padding (every position embedding still enters, as a mean), ``F'`` tokens dearer than
  crop-pos.

Both equal ``pad`` for clips of at least one window and approximate it below. A merge
schedule runs as shares of the tokens present (``schedule_as_ratios``).
"""

from __future__ import annotations

import math

from fastast_pl.models.arch import patch_grid
from fastast_pl.models.ast import ASTModel
from fastast_pl.tome import MergeSchedule, MergeSpec, apply_tome, resolve_schedule, vit_flops

SHORT_CLIPS = ("pad", "crop-pos", "merge-pad")


def kept_frames(model: ASTModel, frames: int) -> int:
    """Frames a ``frames``-long clip is padded to under ``crop-pos``: the fewest that cover
    it with whole patch columns (at least one patch), at most the window."""
    size, stride = model.arch.patch_size, model.arch.tstride
    if frames >= model.input_tdim:
        return model.input_tdim
    columns = max(math.ceil((frames - size) / stride), 0) + 1
    return min(size + (columns - 1) * stride, model.input_tdim)


def clip_tokens(model: ASTModel, frames: int, option: str) -> int:
    """Tokens entering the first block for one window of a ``frames``-long clip under
    ``option`` (prefix included; a clip of at least one window: the window's tokens)."""
    _check_option(option)
    frames = min(frames, model.input_tdim)
    if option == "crop-pos":
        return tokens_entering(model, kept_frames(model, frames))
    columns = model.clip_columns(frames)
    if option == "pad" or columns == model.grid_size[1]:
        return model.num_tokens
    return model.num_prefix_tokens + model.grid_size[0] * (columns + 1)  # + 1: padding token


def window_flops(model: ASTModel, tokens: int) -> int:
    """FLOPs of the transformer blocks for one window entering with ``tokens`` tokens, under
    the model's active merge schedule resolved for them (``tome.flops.vit_flops``: attention
    and MLP matrix products; a merge schedule's matching, small, is left out: its
    ``include_matching``)."""
    resolved = resolve_schedule(
        model.active_merge, tokens, model.depth, model.num_prefix_tokens, warn=False
    )
    return vit_flops(resolved.tokens, model.embed_dim, model.arch.mlp_ratio)


def prepare(model: ASTModel, option: str) -> None:
    """Set ``model`` up to run short clips under ``option``: its evaluation schedule as
    shares (``schedule_as_ratios``) for crop-pos and merge-pad, and for merge-pad ToMe
    blocks with proportional attention (r=0 where it does not merge: bit-identical to timm's
    blocks until a merged token enters). Settings that cannot honour the option raise."""
    _check_option(option)
    if option == "pad":
        return
    merging = any(model.merge_schedule().r)
    if option == "merge-pad" and merging and not model.prop_attn:
        raise ValueError(
            "short_clips='merge-pad' counts a merged padding token as the patches it stands "
            "for through proportional attention; this model merges with prop_attn=False, which "
            "would weigh it as one patch: use 'pad' or 'crop-pos'"
        )
    model.set_merge(model.merge, schedule_as_ratios(model))
    state = getattr(model, "_tome_state", None)
    if option == "merge-pad" and (state is None or not state.prop_attn):
        # Not merging here (checked above): proportional attention changes nothing else.
        apply_tome(model, r=model.active_merge, prop_attn=True)


def _check_option(option: str) -> None:
    if option not in SHORT_CLIPS:
        raise ValueError(f"short_clips must be one of {SHORT_CLIPS}, got {option!r}")


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
