"""The demo's two pictures: the accuracy/speed trade-off and one clip's merge map.

Both use matplotlib's object API on the Agg canvas (no pyplot, no global backend
change), like ``fastast_pl.tome.visualize``. The merge map reuses that module's
pixel-to-token assignment and adds what a newcomer needs to read it: time in seconds,
frequency in Hz (Kaldi mel scale) and the zero padding after the end of the clip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from fastast_pl.tome.visualize import MERGE_PALETTE, Box, group_labels


@dataclass
class ParetoPoint:
    """One model/schedule on the trade-off plot."""

    label: str
    accuracy: float
    flops_ratio: float
    throughput: float
    family: str  # "off the shelf", "labels only" or "CMKD": one family's points are joined


def plot_pareto(
    points: Sequence[ParetoPoint],
    path: str | Path,
    teacher_accuracy: float | None = None,
    timing_note: str = "",
) -> Path:
    """Accuracy against analytic FLOP reduction (left) and measured clips/s (right)."""
    fig = Figure(figsize=(10.0, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    markers = {
        "off the shelf": ("o", "tab:blue"),
        "labels only": ("s", "tab:grey"),
        "CMKD": ("*", "tab:red"),
    }
    for ax, key, xlabel in (
        (axes[0], "flops_ratio", "analytic FLOP reduction (x, higher = cheaper)"),
        (axes[1], "throughput", f"measured throughput (clips/s){timing_note}"),
    ):
        for family, (marker, colour) in markers.items():
            group = [p for p in points if p.family == family]
            if not group:
                continue
            xs = [getattr(p, key) for p in group]
            ys = [100 * p.accuracy for p in group]
            ax.plot(xs, ys, marker=marker, color=colour, markersize=10 if marker == "*" else 6,
                    linestyle="-" if len(group) > 1 else "none", label=family)  # fmt: skip
            below = family != "off the shelf"  # keep the families' labels apart
            for i, (p, x, y) in enumerate(zip(group, xs, ys)):
                offset = (4, -14 - 10 * (i % 2)) if below else (4, 6 + 10 * (i % 2))
                ax.annotate(p.label, (x, y), textcoords="offset points", xytext=offset,
                            fontsize=8, color=colour)  # fmt: skip
        if teacher_accuracy is not None:
            ax.axhline(100 * teacher_accuracy, color="tab:green", linestyle="--", linewidth=1,
                       label="CNN teacher")  # fmt: skip
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(loc="center left", fontsize=8)  # the free band between AST and teacher
    fig.suptitle("FastAST demo: accuracy vs cost (up and to the right is better)")
    fig.tight_layout()
    return _save(fig, path)


def mel_bin_hz(num_bins: int, sample_rate: int, low_hz: float = 20.0) -> np.ndarray:
    """Centre frequency (Hz) of each Kaldi mel bin (mel = 1127 ln(1 + f / 700), equal
    spacing between ``low_hz`` (Kaldi default 20) and Nyquist, Kaldi's default high_freq)."""
    mel_low = 1127.0 * math.log1p(low_hz / 700.0)
    mel_high = 1127.0 * math.log1p((sample_rate / 2) / 700.0)
    delta = (mel_high - mel_low) / (num_bins + 1)
    centres_mel = mel_low + delta * np.arange(1, num_bins + 1)
    return 700.0 * np.expm1(centres_mel / 1127.0)


def plot_merge_map(
    fbank: torch.Tensor,
    source: torch.Tensor,
    boxes: Sequence[Box],
    num_prefix_tokens: int,
    path: str | Path,
    *,
    frame_shift_ms: float,
    sample_rate: int,
    valid_frames: int,
    title: str,
) -> Path:
    """Draw the normalized fbank ``(T, F)`` with every merged group of patches coloured.

    ``source`` ``(N, N0)``: which input tokens each remaining token holds (ToMe source
    tracking); ``boxes`` the patches' pixels in the ``(F, T)`` image; frames from
    ``valid_frames`` on are zero padding and are hatched.
    """
    image = fbank.detach().float().cpu().numpy().T  # (F, T): frequency on y, time on x
    num_bins, num_frames = image.shape
    labels = group_labels(source, num_prefix_tokens, image.shape, boxes)  # (F, T)
    sizes = source.detach().float().cpu().sum(dim=-1).numpy()  # (N,) input tokens per token
    merged = np.where(labels >= 0, sizes[np.clip(labels, 0, None)] > 1, False)
    colour = np.full(image.shape, np.nan)
    for k, token in enumerate(np.unique(labels[merged])):
        colour[labels == token] = k % MERGE_PALETTE.N
    edges = np.zeros(image.shape, dtype=bool)
    edges[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]

    seconds = num_frames * frame_shift_ms / 1000.0
    extent = (0.0, seconds, -0.5, num_bins - 0.5)  # x in seconds, y in mel-bin index
    fig = Figure(figsize=(10.0, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    style = dict(origin="lower", aspect="auto", extent=extent, interpolation="nearest")
    ax.imshow(image, cmap="gray", **style)
    ax.imshow(colour, cmap=MERGE_PALETTE, vmin=0, vmax=MERGE_PALETTE.N - 1, alpha=0.55, **style)
    ax.imshow(np.where(edges, 1.0, np.nan), cmap=ListedColormap(["white"]), **style)
    if valid_frames < num_frames:
        pad_start = valid_frames * frame_shift_ms / 1000.0
        ax.axvspan(pad_start, seconds, facecolor="none", edgecolor="yellow", hatch="//",
                   linewidth=0, label="zero padding (after the clip ends)")  # fmt: skip
        ax.axvline(pad_start, color="yellow", linewidth=1.5)
        ax.legend(loc="upper right", fontsize=8)
    hz = mel_bin_hz(num_bins, sample_rate)
    ticks = [f for f in (100, 250, 500, 1000, 2000, 4000, 8000) if hz[0] <= f <= hz[-1]]
    ax.set_yticks(np.interp(ticks, hz, np.arange(num_bins)))
    ax.set_yticklabels([f"{f / 1000:g}k" if f >= 1000 else str(f) for f in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, mel scale)")
    ax.set_title(title, fontsize=10)
    fig.text(0.01, 0.01, "same colour = patches merged into one token; grey = still alone",
             fontsize=8)  # fmt: skip
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
