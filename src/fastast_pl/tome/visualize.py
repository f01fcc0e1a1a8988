"""Draw which input patches ToMe merged together, over the 2-D input (e.g. a spectrogram).

Uses matplotlib's object API with the Agg canvas: no pyplot, no global backend change.
Overlapping patches (stride < patch size) are resolved by giving each pixel to the patch
whose centre is nearest, so every pixel shows exactly one group.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

#: Colours of merged groups: tab20 without its two greys, which read as "not merged".
MERGE_PALETTE = ListedColormap(
    [c for i, c in enumerate(colormaps["tab20"].colors) if i not in (14, 15)], name="merged"
)

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), end exclusive


def patch_boxes(height: int, width: int, patch: int, stride_y: int, stride_x: int) -> list[Box]:
    """Boxes of a conv patch grid (kernel ``patch``, no padding) in row-major token order."""
    if patch > height or patch > width or min(patch, stride_y, stride_x) <= 0:
        raise ValueError(
            f"patch_boxes: patch={patch}, strides=({stride_y}, {stride_x}) do not fit an "
            f"image of {height} x {width}"
        )
    rows = (height - patch) // stride_y + 1
    cols = (width - patch) // stride_x + 1
    return [
        (i * stride_y, j * stride_x, i * stride_y + patch, j * stride_x + patch)
        for i in range(rows)
        for j in range(cols)
    ]


def group_labels(
    source: torch.Tensor, num_prefix_tokens: int, shape: tuple[int, int], boxes: Sequence[Box]
) -> np.ndarray:
    """(H, W) int map: the token (row of ``source``) that owns each pixel, -1 where none.

    source: (N, N0) 0/1 matrix from source tracking; columns after the prefix are patches.
    """
    src = source.detach().float().cpu().numpy()[:, num_prefix_tokens:]  # (N, P)
    if src.shape[1] != len(boxes):
        raise ValueError(
            f"source has {src.shape[1]} patch columns after {num_prefix_tokens} prefix tokens "
            f"but {len(boxes)} boxes were given"
        )
    owner_of_patch = src.argmax(axis=0)  # (P,) token containing each patch
    labels = np.full(shape, -1, dtype=np.int64)
    best = np.full(shape, np.inf)
    for p, (y0, x0, y1, x1) in enumerate(boxes):
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dist = (yy + 0.5 - (y0 + y1) / 2) ** 2 + (xx + 0.5 - (x0 + x1) / 2) ** 2  # to centre
        region = best[y0:y1, x0:x1]
        closer = dist < region
        region[closer] = dist[closer]
        labels[y0:y1, x0:x1][closer] = owner_of_patch[p]
    return labels


def plot_merged_patches(
    image: np.ndarray | torch.Tensor,
    source: torch.Tensor,
    boxes: Sequence[Box],
    num_prefix_tokens: int,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Save a PNG of ``image`` (H, W) with each merged group of patches in its own colour.

    source: (N, N0) for one example; patches still alone are left uncoloured (faint) and
    group borders are drawn in white. Returns the path written.
    """
    img = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else image
    if img.ndim != 2:
        raise ValueError(f"plot_merged_patches: image must be (H, W), got shape {img.shape}")
    labels = group_labels(source, num_prefix_tokens, img.shape, boxes)
    sizes = source.detach().float().cpu().sum(dim=-1).numpy()  # (N,)
    merged = np.where(labels >= 0, sizes[np.clip(labels, 0, None)] > 1, False)

    # Colour index per pixel: groups numbered in order of appearance, NaN for singletons.
    group_ids = {tok: k for k, tok in enumerate(np.unique(labels[merged]))}
    colour = np.full(img.shape, np.nan)
    for tok, k in group_ids.items():
        colour[labels == tok] = k % MERGE_PALETTE.N
    edges = np.zeros(img.shape, dtype=bool)
    edges[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edges &= merged | np.roll(merged, 1, axis=0) | np.roll(merged, 1, axis=1)

    height, width = img.shape
    fig = Figure(figsize=(max(4.0, min(16.0, width / 40)), max(2.5, min(8.0, height / 40))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(img, origin="lower", aspect="auto", cmap="gray", interpolation="nearest")
    ax.imshow(colour, origin="lower", aspect="auto", cmap=MERGE_PALETTE, vmin=0,
              vmax=MERGE_PALETTE.N - 1, alpha=0.55)  # fmt: skip
    ax.imshow(
        np.where(edges, 1.0, np.nan),
        origin="lower",
        aspect="auto",
        cmap=ListedColormap(["white"]),
        interpolation="nearest",
    )
    ax.set_xlabel("x (time)")
    ax.set_ylabel("y (frequency)")
    n_groups = len(group_ids)
    ax.set_title(title or f"{source.shape[0]} tokens, {n_groups} merged groups")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
