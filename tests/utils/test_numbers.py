"""Every number a user types is checked where its config class is built: NaN, infinity and
meaningless values are refused naming the key (checks like ``lr <= 0`` let NaN through)."""

from __future__ import annotations

import math

import pytest
import torch

from fastast_pl.data.augment import AugmentConfig
from fastast_pl.data.datamodule import LoaderConfig
from fastast_pl.data.features import FeatureConfig
from fastast_pl.losses import check_kd_settings
from fastast_pl.models.arch import ASTArch
from fastast_pl.modules.base import OptimConfig
from fastast_pl.modules.student import StudentModule

from helpers.distill import FAST_OPTIM, TINY_AST, F, T, TinyDataModule, tiny_trainer

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    "build,key",
    [
        (lambda: OptimConfig(lr=INF), "optim.lr"),
        (lambda: OptimConfig(lr=NAN), "optim.lr"),
        (lambda: OptimConfig(weight_decay=NAN), "optim.weight_decay"),
        (lambda: OptimConfig(betas=(0.9, 1.0)), r"optim.betas\[1\]"),
        (lambda: OptimConfig(decay_factor=NAN), "optim.decay_factor"),
        (lambda: FeatureConfig(mean=NAN), "FeatureConfig.mean"),
        (lambda: FeatureConfig(std=INF), "FeatureConfig.std"),
        (lambda: FeatureConfig(dither=NAN), "FeatureConfig.dither"),
        (lambda: FeatureConfig(frame_shift=NAN), "FeatureConfig.frame_shift"),
        (lambda: FeatureConfig(frame_length=0.01), "frame_length=0.01 ms"),
        (lambda: AugmentConfig(mixup=NAN), "AugmentConfig.mixup"),
        (lambda: AugmentConfig(mixup_alpha=NAN), "AugmentConfig.mixup_alpha"),
        (lambda: AugmentConfig(noise=INF), "AugmentConfig.noise"),
        (lambda: ASTArch(drop_path_rate=1.5), "ASTArch.drop_path_rate"),
        (lambda: ASTArch(drop_path_rate=NAN), "ASTArch.drop_path_rate"),
        (lambda: ASTArch(fstride=20), r"ASTArch.fstride=20: expected 1..patch_size \(16\)"),
        (
            lambda: LoaderConfig(samples_per_epoch=0, balanced_sampling=True),
            "loader.samples_per_epoch",
        ),
        (lambda: LoaderConfig(samples_per_epoch=100), "only with loader.balanced_sampling"),
        (lambda: check_kd_settings(0.5, NAN, "cmkd"), "kd_temperature"),
        (lambda: check_kd_settings(NAN, 2.0, "cmkd"), "kd_lambda"),
    ],
)
def test_non_finite_and_meaningless_numbers_are_named(build, key):
    with pytest.raises(ValueError, match=key):
        build()


def test_mask_wider_than_the_input_is_named():
    from fastast_pl.data.datamodule import AudioDataModule
    from fastast_pl.data.sources import SyntheticSource

    with pytest.raises(ValueError, match=r"data.augment.freqm=48 .*num_mel_bins=32"):
        AudioDataModule(
            SyntheticSource("unused"), FeatureConfig(num_mel_bins=32), AugmentConfig(freqm=48)
        )


def test_non_finite_loss_stops_training_naming_step_and_batch(tmp_path):
    data = TinyDataModule(num_classes=4, batch_size=4)
    data.train_set.fbank[6, 0, 0] = NAN  # clip 6: the second batch without shuffling
    data.train_dataloader = lambda: torch.utils.data.DataLoader(data.train_set, batch_size=4)
    module = StudentModule(
        num_classes=4, target_length=T, num_mel_bins=F, ast=TINY_AST, optim=FAST_OPTIM
    )
    trainer = tiny_trainer(tmp_path, limit_val_batches=0)
    with pytest.raises(
        FloatingPointError,
        match=r"global step 1, epoch 0, batch 1 \(clip "
        r"indices \[4, 5, 6, 7\]; the inputs are NOT finite\)",
    ):
        trainer.fit(module, datamodule=data)
    assert all(torch.isfinite(p).all() for p in module.parameters())  # no NaN step taken
