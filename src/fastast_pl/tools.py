"""Small tool subcommands of `python -m fastast_pl`: `stats`, `prepare` and `visualize`.

Each ``<name>_main(argv)`` parses its own arguments and returns an exit code: 0 on
success, 2 with a one-line message on stderr for a user error (bad file, bad value).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from jsonargparse import ArgumentError, ArgumentParser, Namespace

from fastast_pl.data.audio import AudioDecodeError, load_audio
from fastast_pl.data.datamodule import AudioDataModule
from fastast_pl.data.features import (
    FeatureConfig,
    compute_fbank,
    compute_stats,
    normalize,
    pad_or_crop,
)
from fastast_pl.data.prepare import URLS, prepare_dataset
from fastast_pl.models.ast import ASTModel
from fastast_pl.tome import apply_tome, remove_tome, tome_state
from fastast_pl.tome.visualize import Box, patch_boxes, plot_merged_patches

# User errors every tool reports in one line (AudioDecodeError is a RuntimeError).
_USER_ERRORS = (ValueError, OSError, AudioDecodeError)
# AudioDataModule argument -> FeatureConfig field, for the feature settings of `visualize`.
_FEATURE_ARGS = {
    "sample_rate": "sample_rate",
    "num_mel_bins": "num_mel_bins",
    "target_length": "target_length",
    "frame_shift": "frame_shift",
    "frame_length": "frame_length",
    "norm_mean": "mean",
    "norm_std": "std",
}


class ToolError(ValueError):
    """A user error that a tool reports in one line (no traceback)."""


def _fail(prog: str, err: BaseException) -> int:
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------- configs
def _data_parser() -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False, default_env=False)
    parser.add_class_arguments(AudioDataModule, "data")
    return parser


def read_data_config(paths: Sequence[str | Path]) -> Namespace:
    """The ``data:`` section of LightningCLI config files, validated as the CLI does.

    Later files override earlier ones key by key (nested keys such as ``synthetic.seed``
    too); other sections are ignored. Raises ``ToolError`` naming the file and the key.
    """
    parser = _data_parser()
    cfg = parser.get_defaults()
    found = False
    for path in paths:
        try:
            content = yaml.safe_load(Path(path).read_text())
        except OSError as err:
            raise ToolError(f"cannot read config file {path}: {err.strerror or err}") from err
        except yaml.YAMLError as err:
            raise ToolError(f"config file {path} is not valid YAML: {err}") from err
        if content is None:
            continue
        if not isinstance(content, Mapping):
            raise ToolError(
                f"config file {path}: expected a mapping of sections (trainer:, model:, "
                f"data:), found a {type(content).__name__}"
            )
        if content.get("data") is None:
            continue
        try:
            cfg = parser.parse_object({"data": content["data"]}, namespace=cfg)
        except ArgumentError as err:
            raise ToolError(f"config file {path}, data section: {err}") from err
        found = True
    if not found:
        raise ToolError(f"no data: section in the config file(s) {[str(p) for p in paths]}")
    return cfg


def build_datamodule(paths: Sequence[str | Path]) -> AudioDataModule:
    """The ``AudioDataModule`` that ``python -m fastast_pl fit --config ...`` would build."""
    cfg = read_data_config(paths)
    return _data_parser().instantiate(cfg).data


# ---------------------------------------------------------------------------- stats
def stats_main(argv: list[str] | None = None) -> int:
    """`python -m fastast_pl stats`: fbank mean/std of a config's training split."""
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl stats",
        description="Compute the mean and standard deviation of the raw log-mel fbank over "
        "the training split of a config's data (padding frames excluded) and print the "
        "data.norm_mean / data.norm_std lines to paste into that config.",
        epilog="example: python -m fastast_pl stats --config experiments/esc50/data.yaml",
    )
    p.add_argument(
        "--config",
        action="append",
        required=True,
        metavar="FILE",
        help="LightningCLI config file; repeat to layer files (later ones win, key by key). "
        "Only the data: section is read.",
    )
    p.add_argument(
        "--max-clips",
        type=int,
        metavar="N",
        help="use at most N clips, spread evenly over the split (default: all)",
    )
    args = p.parse_args(argv)
    if args.max_clips is not None and args.max_clips <= 0:
        return _fail(p.prog, ValueError(f"--max-clips must be > 0, got {args.max_clips}"))
    try:
        dm = build_datamodule(args.config)
        dm.prepare_data()
        # The progress bar goes to stderr so that stdout holds only the YAML to paste.
        with contextlib.redirect_stdout(sys.stderr):
            mean, std = compute_stats(dm, max_clips=args.max_clips, progress=True)
    except _USER_ERRORS as err:
        return _fail(p.prog, err)
    clips = len(dm.datasets["train"])
    used = clips if args.max_clips is None else min(args.max_clips, clips)
    print(f"# fbank statistics over {used} of {clips} training clips ({', '.join(args.config)})")
    print(f"data:\n  norm_mean: {round(mean, 6)}\n  norm_std: {round(std, 6)}")
    return 0


# ---------------------------------------------------------------------------- prepare
def prepare_main(argv: list[str] | None = None) -> int:
    """`python -m fastast_pl prepare`: extract a dataset archive into the layout we read."""
    p = argparse.ArgumentParser(
        prog="python -m fastast_pl prepare",
        description="Prepare ESC-50 or Speech Commands (v0.02) into the layout AudioDataModule "
        "reads, then print the data: settings to put in a config. Without --archive the "
        "archive is downloaded (needs internet).",
        epilog="example: python -m fastast_pl prepare esc50 --out data/esc50 "
        "--archive ~/Downloads/ESC-50-master.zip",
    )
    p.add_argument("dataset", choices=sorted(URLS), help="which dataset")
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="new or empty output directory"
    )
    p.add_argument(
        "--archive",
        type=Path,
        metavar="PATH",
        help="the archive you already have (ESC-50-master.zip, speech_commands_v0.02.tar.gz)",
    )
    args = p.parse_args(argv)
    try:
        settings = prepare_dataset(args.dataset, args.out, args.archive)
    except _USER_ERRORS as err:
        return _fail(p.prog, err)
    print(f"# {args.dataset} is ready in {args.out}; put these settings in your config")
    print(yaml.safe_dump({"data": settings}, sort_keys=False), end="")
    return 0


# ---------------------------------------------------------------------------- visualize
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


def _checkpoint_data_hparams(checkpoint: Path) -> Mapping[str, Any] | None:
    """The datamodule hyperparameters Lightning saved in a ``.ckpt`` (None if absent)."""
    if not (checkpoint.is_file() and checkpoint.suffix == ".ckpt"):
        return None
    try:  # a .ckpt of our own training runs; see fastast_pl.models.checkpoints
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # noqa: BLE001 - from_pretrained reports unreadable files properly
        return None
    hp = ckpt.get("datamodule_hyper_parameters") if isinstance(ckpt, Mapping) else None
    return hp if isinstance(hp, Mapping) else None


def feature_settings(
    checkpoint: str | Path, configs: Sequence[str | Path] = ()
) -> FeatureConfig | None:
    """Feature settings: the configs' data section if given, else the checkpoint's saved
    datamodule hyperparameters, else None (AST defaults at the model's input size)."""
    if configs:
        values: Mapping[str, Any] | None = read_data_config(configs).data.as_dict()
    else:
        values = _checkpoint_data_hparams(Path(checkpoint))
    if values is None:
        return None
    return FeatureConfig(**{f: values[a] for a, f in _FEATURE_ARGS.items() if a in values})


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
    remove_tome(model)
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
        model.patch_size,
        model.fstride,
        model.tstride,
    )
    groups = patch_groups(source, prefix, model.grid_size)
    return MergeView(fbank, source, groups, boxes, layer, model.depth, r, prefix)


def visualize_main(argv: list[str] | None = None) -> int:
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
    except _USER_ERRORS as err:
        return _fail(p.prog, err)
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
