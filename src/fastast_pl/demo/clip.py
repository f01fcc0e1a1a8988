"""The demo's merge map: one test clip of the synthetic data through the merged student.

The demo's only contact with the data layout (the synthetic manifest and the data
config's keys) and with ``merge_map``'s merge tracing lives here.
"""

from __future__ import annotations

import csv
from pathlib import Path

from fastast_pl.data.synthetic import MANIFEST_FILE
from fastast_pl.merge_map import merge_view, plot_merge_map
from fastast_pl.tools.common import read_data_config, read_features

#: Classes whose structure (a sweep, a modulation) reads well in a merge map, in order.
PREFERRED_CLASSES = ("chirp_up", "fm_tone", "chirp_down", "harmonic")


def first_test_clip(data_config: Path) -> Path:
    """The first test clip of the most readable class in the synthetic manifest."""
    data_dir = Path(read_data_config([data_config]).data.source.init_args.root)
    manifest = data_dir / MANIFEST_FILE
    with manifest.open(newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if row["split"] == "test"]
    if not rows:
        raise ValueError(f"{manifest}: no clip with split 'test'")
    for label in PREFERRED_CLASSES:
        for row in rows:
            if row["label"] == label:
                return data_dir / row["path"]
    return data_dir / rows[0]["path"]


def merge_map_of_test_clip(data_config: Path, checkpoint: str, r: int, out: Path) -> Path:
    """Draw which patches the checkpoint's AST merged (r per layer, all layers) in one clip."""
    clip = first_test_clip(data_config)
    view = merge_view(clip, checkpoint, r, features=read_features([data_config]))
    label = clip.parent.name
    title = (
        f"merge map of one test clip ({label}, {clip.name}): ToMe r={r} in each of "
        f"{view.depth} layers, {view.source.shape[1]} -> {view.tokens_left} tokens"
    )
    return plot_merge_map(view, out, title)
