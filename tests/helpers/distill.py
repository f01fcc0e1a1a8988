"""Tiny data, models and trainers shared by the teacher/distillation tests (CPU, seconds)."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from fastast_pl.data.augment import AugmentConfig
from fastast_pl.data.datamodule import AudioDataModule, LoaderConfig
from fastast_pl.data.features import FeatureConfig
from fastast_pl.data.sources import FolderSource
from fastast_pl.data.unlabeled import UnlabeledConfig
from fastast_pl.models.arch import ASTArch
from fastast_pl.models.teacher import TeacherArch
from fastast_pl.modules.base import OptimConfig
from fastast_pl.modules.distill import DistillationModule

T, F = 64, 32  # frames x mel bins: the smallest input both models take
TINY_AST = ASTArch(embed_dim=32, depth=2, num_heads=2, patch_size=16, fstride=16, tstride=16)
# mobilenetv3_small_050: ~0.6M parameters, with BatchNorm (whose buffers must never move).
TINY_TEACHER = TeacherArch(backbone="mobilenetv3_small_050", pooling="attention", num_heads=2)
FAST_OPTIM = OptimConfig(lr=1e-3, decay_start_epoch=100)


def tiny_student(
    teacher_checkpoint: str | None, *, num_classes: int = 4, merge: int = 2, **kwargs: Any
) -> DistillationModule:
    """The tiny ToMe student (TINY_AST, FAST_OPTIM) of a (T, F) single-label task."""
    return DistillationModule(
        num_classes=num_classes,
        target_length=T,
        num_mel_bins=F,
        multi_label=False,
        ast=TINY_AST,
        merge=merge,
        optim=FAST_OPTIM,
        teacher_checkpoint=teacher_checkpoint,
        **kwargs,
    )


class _Clips(Dataset):
    """Class c = a bright band at mel bin 4c (plus noise); dict items as the contract says."""

    def __init__(self, n: int, num_classes: int, multi_label: bool, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.fbank = 0.3 * torch.randn(n, T, F, generator=g)  # (N, T, F)
        self.target = torch.zeros(n, num_classes)
        for i in range(n):
            classes = [i % num_classes]
            if multi_label:
                classes.append((i * 7 + 1) % num_classes)
            for c in classes:
                self.target[i, c] = 1.0
                self.fbank[i, :, (4 * c) % F] += 2.0

    def __len__(self) -> int:
        return self.fbank.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"fbank": self.fbank[i], "target": self.target[i], "index": torch.tensor(i)}


class TinyDataModule(L.LightningDataModule):
    """Stands in for AudioDataModule: dict batches (without clip keys: the cache hashes the
    fbank), feature_config() and training_augmentations()."""

    def __init__(
        self,
        num_classes: int = 4,
        multi_label: bool = False,
        n_train: int = 16,
        n_eval: int = 8,
        batch_size: int = 8,
        freqm: int = 0,
        timem: int = 0,
        mixup: float = 0.0,
        mean: float = -4.27,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.target_length, self.num_mel_bins = T, F
        self.batch_size = batch_size
        self.augment = AugmentConfig(freqm=freqm, timem=timem, mixup=mixup)
        self.features = FeatureConfig(num_mel_bins=F, target_length=T, mean=mean, std=4.57)
        self.mean = mean
        self.train_set = _Clips(n_train, num_classes, multi_label, seed=0)
        self.eval_set = _Clips(n_eval, num_classes, multi_label, seed=1)

    def feature_config(self) -> dict[str, Any]:
        return {
            "sample_rate": 16000,
            "num_mel_bins": F,
            "target_length": T,
            "frame_shift": 10.0,
            "frame_length": 25.0,
            "mean": self.mean,
            "std": 4.57,
            "dither": 0.0,
        }

    def training_augmentations(self) -> list[str]:
        return self.augment.active()  # no dither in these features

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.eval_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.eval_set, batch_size=self.batch_size)


def tiny_trainer(root: Path, **overrides: Any) -> L.Trainer:
    kwargs: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(root),
    )
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def train_teacher(root: Path, dm: TinyDataModule, name: str = "teacher.ckpt") -> Path:
    """Fit a tiny TeacherModule for one epoch on `dm` and save its checkpoint."""
    from fastast_pl.modules.teacher import TeacherModule

    L.seed_everything(0, verbose=False)
    module = TeacherModule(
        num_classes=dm.num_classes,
        target_length=T,
        num_mel_bins=F,
        multi_label=dm.multi_label,
        teacher=TINY_TEACHER,
        optim=FAST_OPTIM,
    )
    trainer = tiny_trainer(root, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    path = root / name
    trainer.save_checkpoint(path)
    return path


@functools.cache
def _shared_teacher() -> Path:
    root = Path(tempfile.mkdtemp(prefix="fastast-teacher-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return train_teacher(root, TinyDataModule(num_classes=4))


def teacher_copy(root: Path) -> Path:
    """A private copy (under `root`) of a teacher trained once per test process on 4 classes."""
    path = root / "teacher.ckpt"
    shutil.copyfile(_shared_teacher(), path)
    return path


def record_teacher_targets(module: DistillationModule) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Wrap ``module.teacher_logits`` so that every training batch's (clip indices, teacher
    targets) is appended to the returned list: what the student was distilled against."""
    used: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = module.teacher_logits

    def spy(batch):
        logits = original(batch)
        used.append((batch["index"].clone(), logits.detach().clone()))
        return logits

    module.teacher_logits = spy
    return used


def folder_datamodule(root: Path, unlabeled: UnlabeledConfig) -> AudioDataModule:
    """Class folders under ``root`` (``F`` mel bins, ``T`` frames, batches of 4) plus an
    unlabeled pool."""
    features = FeatureConfig(num_mel_bins=F, target_length=T, mean=-4.27, std=4.57)
    return AudioDataModule(
        FolderSource(str(root)),
        features=features,
        loader=LoaderConfig(batch_size=4),
        unlabeled=unlabeled,
    )
