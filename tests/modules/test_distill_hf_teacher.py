"""The teacher zoo: a Hugging Face audio classifier (a tiny wav2vec2, from a hub cache,
offline) teaches a merged student through a real Trainer, hearing the batch's clean waveform
through its own feature extractor at its own sample rate. Oracle: transformers' own
audio-classification pipeline on the same clips read from their files."""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from huggingface_hub import constants
from transformers import (
    pipeline,
)

from fastast_pl.data.augment import AugmentConfig
from fastast_pl.data.datamodule import AudioDataModule, LoaderConfig
from fastast_pl.data.features import FeatureConfig
from fastast_pl.data.sources import FolderSource
from fastast_pl.modules.distill import DistillationModule

from helpers.audio import tone, write
from helpers.distill import T, record_teacher_targets, tiny_student, tiny_trainer
from helpers.hf_tiny import place_in_hub_cache, save_tiny_wav2vec2

REPO_ID = "tiny-org/tiny-wav2vec2"
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
TEACHER_RATE = 8000  # not the data's 16 kHz: the teacher resamples to its own


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """The tiny wav2vec2 in a huggingface_hub cache, read offline (as HF_HUB_OFFLINE=1)."""
    save_tiny_wav2vec2(
        tmp_path / "w2v2", [f"c{i}" for i in range(4)], sampling_rate=TEACHER_RATE, layers=2
    )
    cache = tmp_path / "hub"
    place_in_hub_cache(tmp_path / "w2v2", cache, REPO_ID, COMMIT)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "w2v2"


def _dm(root, **augment) -> AudioDataModule:
    for c in range(4):
        for i in range(2):
            wave = tone(0.6, 16000, 220 + 700 * c + 90 * i, seed=i)
            write(root / "train" / f"c{c}" / f"{i}.wav", wave, 16000)
        write(root / "val" / f"c{c}" / "0.wav", tone(0.6, 16000, 260 + 700 * c, seed=7), 16000)
    features = FeatureConfig(num_mel_bins=32, target_length=T, mean=-4.27, std=4.57)
    return AudioDataModule(
        FolderSource(str(root)),
        features=features,
        augment=AugmentConfig(**augment),
        loader=LoaderConfig(batch_size=4),
        waveforms=True,
    )


def _student(**kwargs) -> DistillationModule:
    return tiny_student(REPO_ID, **kwargs)


def test_hf_waveform_teacher_targets_equal_its_own_pipeline(tmp_path, hub, caplog) -> None:
    dm = _dm(tmp_path / "data")
    L.seed_everything(0, verbose=False)
    module = _student()
    used = record_teacher_targets(module)
    with caplog.at_level(logging.INFO, logger="fastast_pl.models.hf_teacher"):
        tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(module, datamodule=dm)
    assert (
        "waveform teacher" in caplog.text and f"resampled to its {TEACHER_RATE} Hz" in caplog.text
    )
    assert "upsampled" not in caplog.text  # 16 kHz data down to 8 kHz: it hears its whole band
    assert any(module.model.train().merge_schedule().r)  # the student merges tokens

    clips = dm.datasets["train"].clips
    span = (T - 1) * 160 + 400  # samples under the fbank's T frames (10 ms shift, 25 ms window)
    classify = pipeline("audio-classification", model=str(hub), device="cpu")
    index = torch.cat([i for i, _ in used])
    teacher = torch.cat([t for _, t in used])  # (N, 4)
    assert sorted(index.tolist()) == list(range(8))
    for row, i in enumerate(index.tolist()):
        audio, rate = sf.read(str(clips[i].path), dtype="float32")
        clip = np.zeros(span, dtype=np.float32)
        clip[: min(span, len(audio))] = audio[:span]
        scores = classify({"raw": clip, "sampling_rate": rate}, top_k=4)
        expected = torch.tensor(
            [next(s["score"] for s in scores if s["label"] == f"c{k}") for k in range(4)]
        )
        torch.testing.assert_close(teacher[row].softmax(-1), expected, rtol=1e-4, atol=1e-5)


def test_waveform_teacher_needs_waveforms_and_waveform_mixup(tmp_path, hub, caplog) -> None:
    dm = _dm(tmp_path / "data")
    dm.waveforms = False
    with pytest.raises(ValueError, match="data.waveforms: true"):
        tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(_student(), datamodule=dm)

    fbank_mixup = _dm(tmp_path / "data", mixup=0.5)
    with pytest.raises(ValueError, match="mixup_domain='waveform'"):
        fbank_mixup.setup("fit")

    masked = _dm(tmp_path / "data", freqm=4, mixup=0.5, mixup_domain="waveform")
    L.seed_everything(0, verbose=False)
    with caplog.at_level(logging.WARNING, logger="fastast_pl.modules.teacher_checks"):
        tiny_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(_student(), datamodule=masked)
    assert "freqm=4 change only the student's fbank" in caplog.text
    assert "mixup=" not in caplog.text.split("waveform teacher")[1].split("\n")[0]
