"""Which patches ToMe merged in one clip, drawn on its fbank (`visualize` and the demo's map).

The picture reads without knowing the model: time in seconds
of the clip, frequency in Hz (Kaldi mel scale), the zero padding after the clip's end
hatched, and which part of a longer clip is shown. matplotlib's object API on the Agg
canvas, as in ``fastast_pl.tome.visualize``, whose group colouring it uses.
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fastast_pl.data.audio import load_audio
from fastast_pl.data.features import FeatureConfig, compute_fbank, normalize, pad_or_crop
from fastast_pl.models.ast import ASTModel
from fastast_pl.models.checkpoints import read_inference_info
from fastast_pl.tome import apply_tome, tome_state
from fastast_pl.tome.visualize import Box, draw_merged_patches, patch_boxes


@dataclass
class MergeView:
    """What ToMe merged in one clip after ``layer`` layers of merging.

    ``fbank``: the normalized model input ``(T, F)``; ``source``: ``(N, N0)`` 0/1, the input
    tokens each remaining token holds; ``groups``: ``(f_grid, t_grid)``, the remaining token
    (row of ``source``) that holds each patch; ``boxes``: each patch's pixels in the
    ``(F, T)`` image, in token order; ``r``: tokens merged per layer in this forward;
    ``start``: where in the clip (seconds) the input begins; ``valid_frames``: frames of
    audio in it (the rest is zero padding); ``clip_seconds``: the whole clip's length.
    """

    fbank: torch.Tensor
    source: torch.Tensor
    groups: np.ndarray
    boxes: list[Box]
    layer: int
    depth: int
    r: list[int]
    num_prefix_tokens: int
    features: FeatureConfig
    start: float = 0.0
    valid_frames: int = 0
    clip_seconds: float = 0.0

    @property
    def tokens_left(self) -> int:
        return int(self.source.shape[0])

    @property
    def window(self) -> tuple[float, float]:
        """The clip's seconds the input covers (its frames at the frame shift)."""
        shift = self.features.frame_shift / 1000.0
        return self.start, self.start + self.fbank.shape[0] * shift


def patch_groups(source: torch.Tensor, num_prefix_tokens: int, grid: tuple[int, int]) -> np.ndarray:
    """``(f_grid, t_grid)`` int map: the token (row of ``source``) holding each patch."""
    owner = source[:, num_prefix_tokens:].argmax(dim=0)  # (P,)
    return owner.reshape(grid).cpu().numpy()  # (f_grid, t_grid), frequency-major like the tokens


def checkpoint_features(checkpoint: str | Path) -> FeatureConfig | None:
    """The feature settings the checkpoint's record carries, else None (AST defaults at
    the model's input size)."""
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
    features: FeatureConfig | None = None,
    start: float = 0.0,
    seconds: float | None = None,
) -> MergeView:
    """Run one clip through the checkpoint's AST merging ``merge`` tokens per layer in
    layers ``0..layer-1`` only (default: all layers), tracking where tokens come from.

    The input is the clip from ``start`` seconds on, ``seconds`` long (at most the model's
    input window; default: as much as fills it), zero-padded to the window as in training.
    ``features``: default, the checkpoint's own (``checkpoint_features``)."""
    features = features or checkpoint_features(checkpoint)
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
        raise ValueError(f"--layer {layer}: expected 1..{model.depth} (the model's depth)")
    r = model.merge_schedule(merge).r[:layer] + [0] * (model.depth - layer)  # raises on bad r
    model.set_merge(r)
    apply_tome(model, r=r, prop_attn=model.prop_attn, trace_source=True)

    piece, clip_seconds = _window(waveform, features, start, seconds)  # (1, n)
    fbank = compute_fbank(piece, features)  # (frames, F)
    valid = min(fbank.shape[0], features.target_length)
    fbank = pad_or_crop(fbank, features.target_length)  # (T, F)
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
    return MergeView(
        fbank, source, groups, boxes, layer, model.depth, r, prefix, features, start, valid,
        clip_seconds,
    )  # fmt: skip


def _window(
    waveform: torch.Tensor, features: FeatureConfig, start: float, seconds: float | None
) -> tuple[torch.Tensor, float]:
    """The samples from ``start`` on (``seconds`` of them if given) and the clip's length."""
    rate = features.sample_rate
    clip_seconds = waveform.shape[-1] / rate
    window = features.target_length * features.frame_shift / 1000.0
    if not (math.isfinite(start) and 0.0 <= start < clip_seconds):
        raise ValueError(
            f"--start {start}: expected 0 <= start < {clip_seconds:.2f} (the clip's length in s)"
        )
    if seconds is not None and not (math.isfinite(seconds) and 0.0 < seconds <= window + 1e-9):
        raise ValueError(
            f"--seconds {seconds}: expected 0 < seconds <= {window:.2f}, the model's input "
            f"({features.target_length} frames of {features.frame_shift:g} ms)"
        )
    first = round(start * rate)
    last = waveform.shape[-1] if seconds is None else first + round(seconds * rate)
    return waveform[:, first:last], clip_seconds  # (1, n)


def mel_bin_hz(num_bins: int, sample_rate: int, low_hz: float = 20.0) -> np.ndarray:
    """Centre frequency (Hz) of each Kaldi mel bin (mel = 1127 ln(1 + f / 700), equal
    spacing between ``low_hz`` (Kaldi default 20) and Nyquist, Kaldi's default high_freq)."""
    mel_low = 1127.0 * math.log1p(low_hz / 700.0)
    mel_high = 1127.0 * math.log1p((sample_rate / 2) / 700.0)
    delta = (mel_high - mel_low) / (num_bins + 1)
    centres_mel = mel_low + delta * np.arange(1, num_bins + 1)
    return 700.0 * np.expm1(centres_mel / 1127.0)


def plot_merge_map(view: MergeView, path: str | Path, title: str) -> Path:
    """Draw the view's fbank with every merged group of patches coloured: time in the clip's
    seconds, frequency in Hz, zero padding hatched; the title wrapped to the figure."""
    image = view.fbank.detach().float().cpu().numpy().T  # (F, T): frequency on y, time on x
    num_bins, num_frames = image.shape
    begin, end = view.window
    fig = Figure(figsize=(10.0, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    extent = (begin, end, -0.5, num_bins - 0.5)  # x in seconds, y in mel-bin index
    draw_merged_patches(ax, image, view.source, view.boxes, view.num_prefix_tokens, extent)
    if view.valid_frames < num_frames:
        pad_start = begin + view.valid_frames * (end - begin) / num_frames
        ax.axvspan(pad_start, end, facecolor="none", edgecolor="yellow", hatch="//",
                   linewidth=0, label="zero padding (after the clip ends)")  # fmt: skip
        ax.axvline(pad_start, color="yellow", linewidth=1.5)
        ax.legend(loc="upper right", fontsize=8)
    hz = mel_bin_hz(num_bins, view.features.sample_rate)
    ticks = [f for f in (100, 250, 500, 1000, 2000, 4000, 8000) if hz[0] <= f <= hz[-1]]
    ax.set_yticks(np.interp(ticks, hz, np.arange(num_bins)))
    ax.set_yticklabels([f"{f / 1000:g}k" if f >= 1000 else str(f) for f in ticks])
    ax.set_xlabel("time in the clip (s)")
    ax.set_ylabel("frequency (Hz, mel scale)")
    ax.set_title(textwrap.fill(title, 110), fontsize=10)
    fig.text(0.01, 0.01, "same colour = patches merged into one token; grey = still alone",
             fontsize=8)  # fmt: skip
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
