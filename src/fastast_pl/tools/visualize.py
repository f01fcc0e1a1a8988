"""`python -m fastast_pl visualize`: which patches ToMe merged in one clip, drawn on its fbank."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastast_pl.data.audio import load_audio
from fastast_pl.data.features import FeatureConfig, compute_fbank, normalize, pad_or_crop
from fastast_pl.models.ast import ASTModel
from fastast_pl.models.checkpoints import read_inference_info
from fastast_pl.tome import apply_tome, tome_state
from fastast_pl.tome.visualize import Box, patch_boxes, plot_merged_patches
from fastast_pl.tools.common import USER_ERRORS, ToolError, fail, read_data_config


@dataclass
class MergeView:
    """What ToMe merged in one clip after ``layer`` layers of merging.

    ``fbank``: the normalized model input ``(T, F)``; ``source``: ``(N, N0)`` 0/1, the input
    tokens each remaining token holds; ``groups``: ``(f_grid, t_grid)``, the remaining token
    (row of ``source``) that holds each patch; ``boxes``: each patch's pixels in the
    ``(F, T)`` image, in token order; ``r``: tokens merged per layer in this forward.
    """

    fbank: torch.Tensor
    source: torch.Tensor
    groups: np.ndarray
    boxes: list[Box]
    layer: int
    depth: int
    r: list[int]
    num_prefix_tokens: int

    @property
    def tokens_left(self) -> int:
        return int(self.source.shape[0])


def patch_groups(source: torch.Tensor, num_prefix_tokens: int, grid: tuple[int, int]) -> np.ndarray:
    """``(f_grid, t_grid)`` int map: the token (row of ``source``) holding each patch."""
    owner = source[:, num_prefix_tokens:].argmax(dim=0)  # (P,)
    return owner.reshape(grid).cpu().numpy()  # (f_grid, t_grid), frequency-major like the tokens


def feature_settings(
    checkpoint: str | Path, configs: Sequence[str | Path] = ()
) -> FeatureConfig | None:
    """Feature settings: the configs' ``data.features`` if given, else those the checkpoint's
    record carries, else None (AST defaults at the model's input size)."""
    if configs:
        return FeatureConfig(**read_data_config(configs).data.features.as_dict())
    path = Path(checkpoint)
    if not (path.is_file() and path.suffix == ".ckpt"):
        return None
    try:
        stored = read_inference_info(path).features or {}
    except ValueError:  # from_pretrained reports unreadable files properly
        return None
    if not {"mean", "std", "sample_rate"} <= set(stored):
        return None
    fields = {f.name for f in dataclasses.fields(FeatureConfig)}
    return FeatureConfig(**{k: v for k, v in stored.items() if k in fields})


def merge_view(
    audio: str | Path,
    checkpoint: str | Path,
    merge: int,
    layer: int | None = None,
    configs: Sequence[str | Path] = (),
) -> MergeView:
    """Run one clip through the checkpoint's AST merging ``merge`` tokens per layer in
    layers ``0..layer-1`` only (default: all layers), tracking where tokens come from."""
    features = feature_settings(checkpoint, configs)
    sample_rate = features.sample_rate if features else FeatureConfig.sample_rate
    waveform = load_audio(audio, sample_rate)  # (1, N); fails before the model loads
    overrides = {}
    if features is not None:
        overrides = {"input_tdim": features.target_length, "input_fdim": features.num_mel_bins}
    model = ASTModel.from_pretrained(checkpoint, **overrides).eval()
    if features is None:
        features = FeatureConfig(num_mel_bins=model.input_fdim, target_length=model.input_tdim)
    layer = model.depth if layer is None else layer
    if not 1 <= layer <= model.depth:
        raise ToolError(f"--layer {layer}: expected 1..{model.depth} (the model's depth)")
    r = model.merge_schedule(merge).r[:layer] + [0] * (model.depth - layer)  # raises on bad r
    model.set_merge(r)
    apply_tome(model, r=r, prop_attn=model.prop_attn, trace_source=True)

    fbank = pad_or_crop(compute_fbank(waveform, features), features.target_length)  # (T, F)
    fbank = normalize(fbank, features.mean, features.std)
    with torch.inference_mode():
        model(fbank.unsqueeze(0))  # (1, T, F) -> logits, unused
    source = tome_state(model).source[0]  # (N, N0)
    prefix = model.num_prefix_tokens
    boxes = patch_boxes(
        features.num_mel_bins,
        features.target_length,
        model.arch.patch_size,
        model.arch.fstride,
        model.arch.tstride,
    )
    groups = patch_groups(source, prefix, model.grid_size)
    return MergeView(fbank, source, groups, boxes, layer, model.depth, r, prefix)


def main(argv: list[str] | None = None) -> int:
    """`python -m fastast_pl visualize`: draw the patches ToMe merged in one clip."""
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl visualize",
        description="Run one audio clip through an AST with Token Merging (r tokens per layer, "
        "in the first L layers only) and draw which time-frequency patches ended up merged "
        "into the same token, over the clip's spectrogram. Feature settings come from "
        "--config's data section, else from the checkpoint's saved datamodule settings, else "
        "the AST defaults.",
        epilog="example: python -m fastast_pl visualize dog.wav --checkpoint "
        "runs/esc50/last.ckpt --merge 8 --layer 6 --out merged.png",
    )
    p.add_argument("audio", type=Path, help="audio file (wav, flac, ogg, mp3)")
    p.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        metavar="PATH",
        help="fastast-pl .ckpt, HF AST directory or official AST .pth",
    )
    p.add_argument("--merge", required=True, type=int, metavar="R", help="tokens merged per layer")
    p.add_argument(
        "--layer",
        type=int,
        metavar="L",
        help="show the merges after L layers (1..depth; default: all layers)",
    )
    p.add_argument(
        "--out", type=Path, default=Path("merged.png"), help="PNG to write (default: merged.png)"
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="config file(s) whose data: section gives the feature settings",
    )
    args = p.parse_args(argv)
    try:
        view = merge_view(args.audio, args.checkpoint, args.merge, args.layer, args.config)
    except USER_ERRORS as err:
        return fail(p.prog, err)
    title = (
        f"after layer {view.layer}/{view.depth}: {view.tokens_left} of "
        f"{view.source.shape[1]} tokens left (r={args.merge})"
    )
    image = view.fbank.t()  # (F, T): frequency on y, time on x
    path = plot_merged_patches(
        image, view.source, view.boxes, view.num_prefix_tokens, args.out, title
    )
    print(path)
    return 0
