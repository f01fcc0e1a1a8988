"""Write what `python -m fastast_pl predict` computes to a CSV file a person can open.

One row per readable clip, each exactly once: its index in the predicted split, its audio
file, its true label(s) where the split has labels (``;``-joined for multi-label), the top
class and the probability of every class. With `on_bad_audio: skip` the bad
files are not in the split at all (the datamodule leaves them out and names them), and the
summary line says how many. Under DDP every rank writes its own share
(`predictions-rank{N}.csv`).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from fastast_pl.utils.io import atomic_write


class PredictionCSVWriter(BasePredictionWriter):
    """Collects `predict_step` outputs ({"index", "probs"}) and writes them at epoch end.

    Args:
        output: CSV path; None writes `predictions.csv` into the run's log directory.
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output = output
        self.written: Path | None = None

    def write_on_epoch_end(
        self, trainer, pl_module, predictions: Sequence[Any], batch_indices: Sequence[Any]
    ) -> None:
        if not predictions:
            return
        index = torch.cat([p["index"] for p in predictions]).tolist()
        repeated = len(index) - len(set(index))
        if repeated:  # a sampler that pads or repeats: the file would score some clips twice
            raise RuntimeError(
                f"predictions hold {repeated} repeated clip index(es) of {len(index)}; "
                "expected each clip of the predicted split exactly once"
            )
        probs = torch.cat([p["probs"] for p in predictions]).float()  # (N, C)
        datamodule = trainer.datamodule
        class_names = list(getattr(datamodule, "class_names", [])) or [
            str(c) for c in range(probs.shape[1])
        ]
        dataset = getattr(datamodule, "datasets", {}).get("test")
        paths = [str(dataset.clips[i].path) if dataset is not None else "" for i in index]
        truth = _true_labels(dataset, index, class_names)
        label_column = ["label"] if truth is not None else []

        path = Path(self.output or os.path.join(trainer.log_dir or ".", "predictions.csv"))
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}-rank{trainer.global_rank}{path.suffix}")
        with atomic_write(path, "w", newline="") as fh:  # never a half-written predictions file
            writer = csv.writer(fh)
            header = ["index", "path", *label_column, "prediction"]
            writer.writerow([*header, *(f"p_{name}" for name in class_names)])
            for n, (i, clip_path, row) in enumerate(zip(index, paths, probs.tolist())):
                top = max(range(len(row)), key=row.__getitem__)
                label = [truth[n]] if truth is not None else []
                writer.writerow(
                    [i, clip_path, *label, class_names[top], *(f"{p:.6f}" for p in row)]
                )
        self.written = path
        skipped = getattr(datamodule, "skipped", {}).get("test", [])
        note = f" ({len(skipped)} unreadable clip(s) left out, named in the log)" if skipped else ""
        print(f"wrote {len(index)} predictions to {path}{note}")


def _true_labels(dataset, index: list[int], class_names: list[str]) -> list[str] | None:
    """Each clip's class names (``;``-joined), "" for an unlabeled clip; None when the split
    has no labels at all (then the CSV has no label column)."""
    if dataset is None:
        return None
    labels = [dataset.clips[i].labels if dataset.labeled(i) else None for i in index]
    if all(clip_labels is None for clip_labels in labels):
        return None
    return ["" if ls is None else ";".join(class_names[c] for c in ls) for ls in labels]
