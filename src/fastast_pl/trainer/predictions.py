"""Write what `python -m fastast_pl predict` computes to a CSV file a person can open.

One row per readable clip, each exactly once: its index in the predicted split, its audio
file, the top class and the probability of every class. With `on_bad_audio: skip` the bad
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

        path = Path(self.output or os.path.join(trainer.log_dir or ".", "predictions.csv"))
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}-rank{trainer.global_rank}{path.suffix}")
        with atomic_write(path, "w", newline="") as fh:  # never a half-written predictions file
            writer = csv.writer(fh)
            writer.writerow(["index", "path", "prediction", *(f"p_{name}" for name in class_names)])
            for i, clip_path, row in zip(index, paths, probs.tolist()):
                top = max(range(len(row)), key=row.__getitem__)
                writer.writerow([i, clip_path, class_names[top], *(f"{p:.6f}" for p in row)])
        self.written = path
        skipped = getattr(datamodule, "skipped", {}).get("test", [])
        note = f" ({len(skipped)} unreadable clip(s) left out, named in the log)" if skipped else ""
        print(f"wrote {len(index)} predictions to {path}{note}")
