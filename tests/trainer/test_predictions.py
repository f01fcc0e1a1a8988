"""predictions.csv: exactly one row per readable input, bad files left out and reported."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import soundfile as sf
import torch

from fastast_pl.data.datamodule import AudioDataModule, LoaderConfig
from fastast_pl.data.features import FeatureConfig
from fastast_pl.data.sources import FolderSource
from fastast_pl.trainer.predictions import PredictionCSVWriter


class _Mean(pl.LightningModule):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(16, num_classes)

    def predict_step(self, batch, batch_idx):
        probs = self.head(batch["fbank"].mean(dim=1)).softmax(-1)  # (B, T, F) -> (B, C)
        return {"index": batch["index"], "probs": probs}


def _data(root):
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                wave = (0.3 * rng.standard_normal(1600)).astype(np.float32)
                sf.write(str(root / split / c / f"{c}{i}.wav"), wave, 16000)
    (root / "test" / "a" / "broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    (root / "test" / "b" / "empty.wav").write_bytes(b"")
    return root


def test_predictions_have_one_row_per_readable_input(tmp_path, capsys):
    dm = AudioDataModule(
        FolderSource(str(_data(tmp_path / "data"))),
        features=FeatureConfig(target_length=12, num_mel_bins=16),
        loader=LoaderConfig(batch_size=1),  # one clip per batch: a bad clip cannot hide
        on_bad_audio="skip",
    )
    writer = PredictionCSVWriter(str(tmp_path / "predictions.csv"))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[writer],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.predict(_Mean(dm.num_classes), datamodule=dm, return_predictions=False)
    with open(writer.written, newline="") as fh:
        rows = list(csv.DictReader(fh))
    paths = [row["path"] for row in rows]
    readable = sorted(str(p) for p in (tmp_path / "data" / "test").rglob("[ab][0-9].wav"))
    assert sorted(paths) == readable  # every readable file once, no bad one, no repeat
    out = capsys.readouterr().out
    assert "wrote 6 predictions" in out and "2 unreadable clip(s) left out" in out
    # the split has labels: each row carries its clip's class (its folder), before the guess
    assert list(rows[0])[:4] == ["index", "path", "label", "prediction"]
    assert all(row["label"] == Path(row["path"]).parent.name for row in rows)
