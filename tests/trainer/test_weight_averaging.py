"""EpochWindowAveraging: Lightning's WeightAveraging limited to an epoch window, checked
against the hand-computed mean of the epoch-end weights (AST/PSLA average epoch snapshots
with equal weight)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fastast_pl.trainer.weight_averaging import EpochWindowAveraging


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=8)


def _snapshot(module: L.LightningModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class _Record(L.Callback):
    """Epoch-end weights (after training) and the weights validation sees."""

    def __init__(self) -> None:
        self.epoch_end: list[dict[str, torch.Tensor]] = []
        self.validated: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        self.epoch_end.append(_snapshot(module))

    def on_validation_epoch_start(self, trainer, module) -> None:
        self.validated.append(_snapshot(module))


def _fit(tmp_path, averaging: EpochWindowAveraging, epochs: int = 5) -> tuple[_Tiny, _Record]:
    L.seed_everything(0, verbose=False)
    module, record = _Tiny(), _Record()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        callbacks=[averaging, record],
    )
    trainer.fit(module, train_dataloaders=_loader(), val_dataloaders=_loader())
    return module, record


def _mean(snapshots: list[dict[str, torch.Tensor]], key: str) -> torch.Tensor:
    return sum(s[key].double() for s in snapshots) / len(snapshots)


def test_average_of_the_window_epochs(tmp_path) -> None:
    module, record = _fit(tmp_path, EpochWindowAveraging(first_epoch=2, last_epoch=4))
    assert len(record.epoch_end) == 5
    window = record.epoch_end[1:4]  # epochs 2, 3, 4 (1-based, as AST and PSLA count)
    final = _snapshot(module)
    for key, value in final.items():
        if value.is_floating_point():
            torch.testing.assert_close(value.double(), _mean(window, key), rtol=1e-5, atol=1e-6)
    # Not the plain last weights, nor an average over all epochs.
    w = "net.0.weight"
    assert not torch.allclose(final[w], record.epoch_end[-1][w], atol=1e-4)
    assert not torch.allclose(final[w].double(), _mean(record.epoch_end, w), atol=1e-4)
    # Before the window, validation sees the current weights (not the initial ones);
    # inside it, the average so far (epoch 3 is validated before its own update).
    torch.testing.assert_close(record.validated[0][w], record.epoch_end[0][w])
    torch.testing.assert_close(record.validated[2][w], record.epoch_end[1][w])
    torch.testing.assert_close(
        record.validated[3][w].double(), _mean(record.epoch_end[1:3], w), rtol=1e-5, atol=1e-6
    )


def test_open_window_runs_to_the_last_epoch(tmp_path) -> None:
    module, record = _fit(tmp_path, EpochWindowAveraging(first_epoch=4), epochs=5)
    key = "net.3.weight"
    torch.testing.assert_close(
        _snapshot(module)[key].double(), _mean(record.epoch_end[3:5], key), rtol=1e-5, atol=1e-6
    )


def test_window_never_reached_keeps_the_trained_weights(tmp_path, caplog) -> None:
    module, record = _fit(tmp_path, EpochWindowAveraging(first_epoch=9, last_epoch=10), epochs=2)
    for key, value in _snapshot(module).items():
        assert torch.equal(value, record.epoch_end[-1][key]), key


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"first_epoch": 0}, "first_epoch=0"),
        ({"first_epoch": 5, "last_epoch": 4}, "last_epoch=4"),
    ],
)
def test_bad_window_is_named(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        EpochWindowAveraging(**kwargs)


class _GrowsInSetup(_Tiny):
    """Like DistillationModule, which loads its teacher in setup()."""

    def setup(self, stage: str) -> None:
        self.extra = nn.Linear(2, 2).requires_grad_(False)


def test_module_growing_in_setup_is_averaged_like_any_other(tmp_path) -> None:
    """Like DistillationModule's teacher: a submodule built in setup() (here frozen) is part
    of the copy, and the trained weights are the window's mean as for _Tiny."""
    L.seed_everything(0, verbose=False)
    module, record = _GrowsInSetup(), _Record()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
        callbacks=[EpochWindowAveraging(first_epoch=2), record],
    )
    trainer.fit(module, train_dataloaders=_loader(), val_dataloaders=_loader())
    final = _snapshot(module)
    for key in ("net.0.weight", "net.3.bias"):
        torch.testing.assert_close(
            final[key].double(), _mean(record.epoch_end[1:3], key), rtol=1e-5, atol=1e-6
        )
    for key in ("extra.weight", "extra.bias"):  # frozen: its average is itself
        torch.testing.assert_close(final[key], record.epoch_end[0][key])


def test_checkpoint_before_the_window_holds_the_live_weights(tmp_path) -> None:
    L.seed_everything(0, verbose=False)
    module = _Tiny()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        callbacks=[EpochWindowAveraging(first_epoch=3)],
    )
    trainer.fit(module, train_dataloaders=_loader())
    trainer.save_checkpoint(tmp_path / "pre.ckpt")
    saved = torch.load(tmp_path / "pre.ckpt", weights_only=False)["state_dict"]
    for key, value in module.state_dict().items():
        assert torch.equal(saved[key], value), key
