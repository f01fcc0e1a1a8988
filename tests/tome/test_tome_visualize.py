"""Patch boxes vs a real conv grid; merged-group picture from a traced model."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest
import torch
from timm.models.deit import VisionTransformerDistilled
from torch import nn

from fastast_pl.tome import apply_tome, tome_state
from fastast_pl.tome.visualize import (
    MERGE_PALETTE,
    group_labels,
    merged_groups,
    patch_boxes,
    plot_merged_patches,
)


@pytest.mark.parametrize(
    "h,w,patch,sy,sx", [(128, 1024, 16, 10, 10), (20, 30, 4, 4, 4), (17, 23, 5, 3, 2)]
)
def test_patch_boxes_follow_conv_grid(h, w, patch, sy, sx):
    conv = nn.Conv2d(1, 1, patch, stride=(sy, sx))
    grid = conv(torch.zeros(1, 1, h, w)).shape[-2:]
    boxes = patch_boxes(h, w, patch, sy, sx)
    assert len(boxes) == grid.numel()
    assert boxes[0] == (0, 0, patch, patch)
    assert boxes[1] == (0, sx, patch, sx + patch)  # row-major, as conv output .flatten(2)
    assert boxes[-1] == (
        (grid[0] - 1) * sy,
        (grid[1] - 1) * sx,
        (grid[0] - 1) * sy + patch,
        (grid[1] - 1) * sx + patch,
    )
    assert all(y1 <= h and x1 <= w for _, _, y1, x1 in boxes)


def test_group_labels_handmade():
    # 2 x 2 grid of 2 px patches, 1 prefix token; token 1 holds patches 0 and 3.
    boxes = patch_boxes(4, 4, 2, 2, 2)
    source = torch.tensor(
        [[1, 0, 0, 0, 0], [0, 1, 0, 0, 1], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=torch.float32
    )
    labels = group_labels(source, 1, (4, 4), boxes)
    expected = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 1, 1], [3, 3, 1, 1]])
    assert np.array_equal(labels, expected)
    with pytest.raises(ValueError, match="4 patch columns .* 3 boxes"):
        group_labels(source, 1, (4, 4), boxes[:3])


def test_plot_from_traced_model(tmp_path):
    torch.manual_seed(0)
    model = VisionTransformerDistilled(
        img_size=(24, 64),
        patch_size=8,
        in_chans=1,
        embed_dim=32,
        depth=2,
        num_heads=4,
        num_classes=3,
    ).eval()
    apply_tome(model, r=8, trace_source=True)
    image = torch.zeros(1, 1, 24, 64)
    image[..., 16:40] = 1.0
    model(image)
    source = tome_state(model).source[0]
    boxes = patch_boxes(24, 64, 8, 8, 8)
    path = plot_merged_patches(image[0, 0], source, boxes, 2, tmp_path / "sub" / "merge.png")
    assert path.exists()
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100
    labels = group_labels(source, 2, (24, 64), boxes)
    assert labels.min() >= 2  # every pixel belongs to a patch token, never to cls/dist


def test_touching_groups_never_share_a_colour_past_the_palette():
    """36 merged pairs on a 2 x 36 patch grid, 18 a row (the palette's colour count): group
    k touches group k + 18 below it, which a colour per group modulo 18 would repeat."""
    boxes = patch_boxes(16, 288, 8, 8, 8)  # (2 rows, 36 columns) of 8 x 8 pixels
    source = torch.zeros(36, 72)  # (N, N0), no prefix: token k holds patches 2k and 2k+1
    for k in range(36):
        source[k, 2 * k : 2 * k + 2] = 1.0
    colour, edges, groups = merged_groups(source, 0, (16, 288), boxes)
    assert groups == 36 == 2 * MERGE_PALETTE.N
    labels = group_labels(source, 0, (16, 288), boxes)
    for a, b, ca, cb in (
        (labels[:-1], labels[1:], colour[:-1], colour[1:]),
        (labels[:, :-1], labels[:, 1:], colour[:, :-1], colour[:, 1:]),
    ):
        touching = a != b
        assert touching.any() and (ca[touching] != cb[touching]).all()
    assert edges[7, :].all()  # the border between the two rows of tokens
    assert set(np.unique(colour).astype(int)) == set(range(MERGE_PALETTE.N))
