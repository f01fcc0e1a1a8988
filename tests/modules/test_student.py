"""StudentModule: the AST recipe's LR schedule, and train/eval merge schedules in a real fit."""

import lightning as L
import pytest

from fastast_pl.data.datamodule import AudioDataModule, LoaderConfig
from fastast_pl.data.features import FeatureConfig
from fastast_pl.data.sources import SyntheticSource
from fastast_pl.data.synthetic import SyntheticConfig
from fastast_pl.models.arch import ASTArch
from fastast_pl.modules.base import OptimConfig
from fastast_pl.modules.student import StudentModule
from fastast_pl.tome import tome_state

TINY = ASTArch(size="tiny", embed_dim=32, depth=2, num_heads=2, fstride=8, tstride=8)


def test_lr_factor_follows_warmup_then_step_decay():
    cfg = OptimConfig(lr=1.0, warmup_steps=4, decay_start_epoch=2, decay_every=2, decay_factor=0.5)
    # Warm-up is linear in the step count: (step + 1) / warmup_steps, then 1.
    assert [cfg.lr_factor(s, 0) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    # Decay: none before epoch 2, x0.5 from epoch 2, x0.25 from epoch 4.
    assert [cfg.lr_factor(100, e) for e in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"lr": 0.0}, "lr"),
        ({"decay_factor": 1.5}, "decay_factor"),
        ({"decay_every": 0}, "decay_every"),
    ],
)
def test_bad_optim_settings_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        OptimConfig(**kwargs)


def test_bad_eval_schedule_fails_at_construction():
    with pytest.raises(ValueError):
        StudentModule(
            num_classes=3, target_length=64, num_mel_bins=32, ast=TINY, eval_merge=[1, 2, 3]
        )


class _RecordTokens(L.Callback):
    """Token counts per layer seen by the model in training and in validation batches."""

    def __init__(self) -> None:
        self.train: list[list[int]] = []
        self.val: list[list[int]] = []

    def on_train_batch_end(self, trainer, module, *args) -> None:
        self.train.append(list(tome_state(module.model).tokens_seen))

    def on_validation_batch_end(self, trainer, module, *args) -> None:
        self.val.append(list(tome_state(module.model).tokens_seen))


def test_training_and_evaluation_use_their_own_merge_schedules(tmp_path):
    data = AudioDataModule(
        SyntheticSource(
            str(tmp_path / "synthetic"),
            SyntheticConfig(num_classes=3, clips_per_class=6, clip_seconds=0.5),
        ),
        features=FeatureConfig(target_length=64, num_mel_bins=32),
        loader=LoaderConfig(batch_size=4),
    )
    module = StudentModule(
        num_classes=data.num_classes,
        target_length=64,
        num_mel_bins=32,
        ast=TINY,
        merge=4,
        eval_merge=[2, 0],
    )
    expected_train = module.model.merge_schedule(4).tokens
    expected_val = module.model.merge_schedule([2, 0]).tokens
    assert expected_train != expected_val
    record = _RecordTokens()
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        callbacks=[record],
    )
    trainer.fit(module, datamodule=data)
    assert record.train and record.val
    assert all(tokens == expected_train for tokens in record.train)
    assert all(tokens == expected_val for tokens in record.val)
    for key in ("val/acc", "val/mAP", "val/d_prime", "val/loss", "train/loss"):
        assert key in trainer.callback_metrics, key
    # no clips/s timed inside the loop: speed is measured by fastast_pl.speed
    assert not any(key.endswith("throughput") for key in trainer.callback_metrics)


class _RecordOrder(L.Callback):
    """("train" | "val", tokens per layer) for every batch, in the order they ran."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[int]]] = []

    def on_train_batch_end(self, trainer, module, *args) -> None:
        self.batches.append(("train", list(tome_state(module.model).tokens_seen)))

    def on_validation_batch_end(self, trainer, module, *args) -> None:
        self.batches.append(("val", list(tome_state(module.model).tokens_seen)))


def test_mid_epoch_validation_runs_eval_schedule_then_training_resumes_its_own(tmp_path):
    data = AudioDataModule(
        SyntheticSource(
            str(tmp_path / "synthetic"),
            SyntheticConfig(num_classes=3, clips_per_class=6, clip_seconds=0.5),
        ),
        features=FeatureConfig(target_length=64, num_mel_bins=32),
        loader=LoaderConfig(batch_size=2),
    )
    module = StudentModule(
        num_classes=data.num_classes,
        target_length=64,
        num_mel_bins=32,
        ast=TINY,
        merge=4,
        eval_merge=[2, 0],
    )
    train_tokens = module.model.merge_schedule(4).tokens
    val_tokens = module.model.merge_schedule([2, 0]).tokens
    record = _RecordOrder()
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=4,
        val_check_interval=2,  # validation after batches 2 and 4 of the epoch
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        callbacks=[record],
    )
    trainer.fit(module, datamodule=data)
    kinds = [kind for kind, _ in record.batches]
    assert kinds == ["train", "train", "val", "train", "train", "val"]
    for kind, tokens in record.batches:
        assert tokens == (train_tokens if kind == "train" else val_tokens), kind
    # outside a Trainer, eval() alone selects the evaluation schedule
    assert module.eval().model.merge_schedule().tokens == val_tokens
    assert module.train().model.merge_schedule().tokens == train_tokens
