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


def merged_groups(
    source: torch.Tensor, num_prefix_tokens: int, shape: tuple[int, int], boxes: Sequence[Box]
) -> tuple[np.ndarray, np.ndarray, int]:
    """What a merge picture draws over an ``(H, W)`` image: ``(colour, edges, groups)``.

    ``colour``: palette index per pixel of a merged group, NaN where a patch is still alone;
    ``edges``: pixels on a border between tokens; ``groups``: how many merged groups. Groups
    that touch never share a colour (each takes the least used colour its coloured
    neighbours do not have), so past the palette's 18 colours they still read apart.
    """
    labels = group_labels(source, num_prefix_tokens, shape, boxes)  # (H, W)
    sizes = source.detach().float().cpu().sum(dim=-1).numpy()  # (N,) input tokens per token
    merged = np.where(labels >= 0, sizes[np.clip(labels, 0, None)] > 1, False)
    edges = np.zeros(shape, dtype=bool)
    edges[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    neighbours: dict[int, set[int]] = {int(t): set() for t in np.unique(labels[merged])}
    for a, b in ((labels[:-1, :], labels[1:, :]), (labels[:, :-1], labels[:, 1:])):
        touching = (a != b) & (a >= 0) & (b >= 0)
        for x, y in set(zip(a[touching].tolist(), b[touching].tolist())):
            if x in neighbours and y in neighbours:
                neighbours[x].add(y)
                neighbours[y].add(x)
    chosen: dict[int, int] = {}
    used = [0] * MERGE_PALETTE.N
    for token in neighbours:  # in token order: the picture does not depend on pixel order
        taken = {chosen[n] for n in neighbours[token] if n in chosen}
        free = [c for c in range(MERGE_PALETTE.N) if c not in taken] or list(range(MERGE_PALETTE.N))
        chosen[token] = min(free, key=lambda c: (used[c], c))
        used[chosen[token]] += 1
    colour = np.full(shape, np.nan)
    for token, c in chosen.items():
        colour[labels == token] = c
    return colour, edges, len(chosen)


def draw_merged_patches(
    ax, image: np.ndarray, source: torch.Tensor, boxes: Sequence[Box], num_prefix_tokens: int,
    extent: tuple[float, float, float, float] | None = None,
) -> int:  # fmt: skip
    """Draw ``image`` (H, W) in grey on ``ax`` with each merged group coloured and token
    borders white (``extent``: imshow's data coordinates); returns the number of groups."""
    colour, edges, groups = merged_groups(source, num_prefix_tokens, image.shape, boxes)
    style = dict(origin="lower", aspect="auto", extent=extent, interpolation="nearest")
    ax.imshow(image, cmap="gray", **style)
    ax.imshow(colour, cmap=MERGE_PALETTE, vmin=0, vmax=MERGE_PALETTE.N - 1, alpha=0.55, **style)
    ax.imshow(np.where(edges, 1.0, np.nan), cmap=ListedColormap(["white"]), **style)
    return groups


def plot_merged_patches(
    image: np.ndarray | torch.Tensor,
    source: torch.Tensor,
    boxes: Sequence[Box],
    num_prefix_tokens: int,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Save a PNG of ``image`` (H, W) with each merged group of patches in its own colour,
    axes in pixels (``fastast_pl.merge_map`` draws audio in seconds and Hz).

    source: (N, N0) for one example; patches still alone are left uncoloured (faint) and
    token borders are drawn in white. Returns the path written.
    """
    img = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else image
    if img.ndim != 2:
        raise ValueError(f"plot_merged_patches: image must be (H, W), got shape {img.shape}")
    height, width = img.shape
    fig = Figure(figsize=(max(4.0, min(16.0, width / 40)), max(2.5, min(8.0, height / 40))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    n_groups = draw_merged_patches(ax, img, source, boxes, num_prefix_tokens)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title or f"{source.shape[0]} tokens, {n_groups} merged groups")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
