"""AudioDataModule: the batch contract, linked properties, bad input, sampling, a Trainer run."""

from __future__ import annotations

import csv
import json
import logging
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from fastast_pl.data.audio import AudioDecodeError
from fastast_pl.data.augment import AugmentConfig
from fastast_pl.data.datamodule import AudioDataModule, LoaderConfig
from fastast_pl.data.features import FeatureConfig
from fastast_pl.data.sampling import DistributedWeightedSampler
from fastast_pl.data.sources import ESC50Source, FolderSource, ManifestSource, SyntheticSource
from fastast_pl.data.synthetic import SyntheticConfig

from helpers.audio import folder_dataset, reference_fbank, write

SMALL = SyntheticConfig(num_classes=5, clips_per_class=6, clip_seconds=0.3)


def _synthetic(tmp_path, dither=0.0, **augment):
    return AudioDataModule(
        SyntheticSource(str(tmp_path / "syn"), SMALL),
        features=FeatureConfig(target_length=40, num_mel_bins=32, dither=dither),
        augment=AugmentConfig(**augment),
        loader=LoaderConfig(batch_size=4),
    )


def test_properties_need_no_audio(tmp_path):
    dm = AudioDataModule(SyntheticSource(str(tmp_path / "not_yet")))
    f = dm.features
    assert (dm.num_classes, dm.multi_label, f.target_length, f.num_mel_bins) == (
        8,
        False,
        1024,
        128,
    )
    assert dm.class_names[:2] == ["tone", "chirp_up"]
    assert not (tmp_path / "not_yet").exists()


def test_synthetic_batches_follow_the_contract(tmp_path):
    dm = _synthetic(tmp_path, freqm=8, timem=8, mixup=0.5)
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["fbank"].shape == (4, 40, 32) and batch["fbank"].dtype == torch.float32
    assert batch["target"].shape == (4, 5) and batch["target"].dtype == torch.float32
    assert batch["index"].shape == (4,) and batch["index"].dtype == torch.int64
    torch.testing.assert_close(batch["target"].sum(dim=1), torch.ones(4))
    val = next(iter(dm.val_dataloader()))
    assert val["index"].tolist() == [0, 1, 2, 3]  # rows of the split, in order
    clip = dm.datasets["val"].clips[0]
    torch.testing.assert_close(
        val["fbank"][0], reference_fbank(clip.path, 40, 32), rtol=1e-4, atol=1e-4
    )
    assert val["target"][0].tolist() == [float(i == clip.labels[0]) for i in range(5)]
    sizes = {s: len(dm.datasets[s]) for s in ("train", "val")}
    assert sizes["train"] + sizes["val"] + 5 == 30  # one test clip per class
    config = dm.feature_config()
    for key in (
        "sample_rate",
        "num_mel_bins",
        "target_length",
        "frame_shift",
        "frame_length",
        "mean",
        "std",
        "dither",
    ):
        assert key in config
    assert (config["target_length"], config["num_mel_bins"]) == (40, 32)


def test_batches_carry_clip_keys_and_the_augmented_flag(tmp_path):
    """What a module needs about a clip comes in the batch: its file's fingerprint (strings
    collate to a list) and whether its input was randomly changed this time."""
    from fastast_pl.data.cache import file_fingerprint

    plain = _synthetic(tmp_path)
    plain.setup("fit")
    assert plain.training_augmentations() == []
    val = next(iter(plain.val_dataloader()))
    clips = plain.datasets["val"].clips
    assert val["clip_key"] == [file_fingerprint(clips[int(i)].path) for i in val["index"]]
    assert len(set(val["clip_key"])) == 4
    assert val["augmented"].dtype == torch.bool and not val["augmented"].any()
    train = next(iter(plain.train_dataloader()))
    assert not train["augmented"].any()  # no augmentation configured: the same every epoch

    masked = _synthetic(tmp_path, dither=0.1, freqm=4)
    masked.setup("fit")
    assert masked.training_augmentations() == ["freqm=4", "dither=0.1"]
    assert next(iter(masked.train_dataloader()))["augmented"].all()
    assert not next(iter(masked.val_dataloader()))["augmented"].any()  # evaluation: never

    mixed = _synthetic(tmp_path, mixup=0.5)
    mixed.setup("fit")
    torch.manual_seed(0)
    batches = list(mixed.train_dataloader())
    flags = torch.cat([b["augmented"] for b in batches])  # (N,)
    targets = torch.cat([b["target"] for b in batches])  # (N, C)
    assert flags.any() and not flags.all()  # each clip: mixed (True) or left alone (False)
    one_hot = ((targets == 0) | (targets == 1)).all(dim=1)  # (N,)
    assert one_hot[~flags].all()  # a clip left alone keeps its one-hot target
    assert not one_hot[flags].all()  # mixed ones blend two (unless both had one class)


def test_augmentation_is_training_only(tmp_path):
    dm = _synthetic(tmp_path, freqm=16, timem=16, mixup=1.0)
    dm.setup("fit")  # no Trainer: setup generates the synthetic data itself
    torch.manual_seed(0)
    first, second = (next(iter(dm.val_dataloader())) for _ in range(2))
    torch.testing.assert_close(first["fbank"], second["fbank"])
    assert ((first["target"] == 0) | (first["target"] == 1)).all()
    train_items = [dm.datasets["train"][0] for _ in range(3)]
    assert not torch.equal(train_items[0]["fbank"], train_items[1]["fbank"])


def test_missing_data_dir_names_path_and_how(tmp_path):
    # At construction, before a Trainer exists: the CLI stops with the path, nothing written.
    with pytest.raises(
        FileNotFoundError, match=rf"{tmp_path / 'ESC-50'} does not exist.*prepare esc50"
    ):
        AudioDataModule(ESC50Source(str(tmp_path / "ESC-50")))
    assert not (tmp_path / "ESC-50").exists()


def test_missing_files_are_listed_at_setup(tmp_path):
    root = folder_dataset(tmp_path / "data", {"a": 4, "b": 4}, seconds=0.05)
    dm = AudioDataModule(FolderSource(str(root), val_fraction=0.25, test_fraction=0.25))
    _ = dm.clip_splits
    (root / "a" / "a_1.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing: .*a_1.wav \(1 in all\)"):
        dm.setup("fit")


def _manifest_data(tmp_path, n_common=12, n_rare=2):
    with (tmp_path / "labels.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(
            [["index", "mid", "display_name"], [0, "/m/x", "x"], [1, "/m/y", "y"], [2, "/m/z", "z"]]
        )
    entries = []
    for i in range(n_common + n_rare):
        labels = "/m/x,/m/y" if i < n_common else "/m/z"
        path = write(
            tmp_path / "wav" / f"{i}.wav",
            np.random.default_rng(i).uniform(-0.1, 0.1, 1600).astype(np.float32),
            16000,
        )
        entries.append({"wav": str(path), "labels": labels})
    (tmp_path / "train.json").write_text(json.dumps({"data": entries}))
    return dict(
        source=ManifestSource(
            str(tmp_path / "labels.csv"),
            train=str(tmp_path / "train.json"),
            val=str(tmp_path / "train.json"),
        ),
        features=FeatureConfig(target_length=20, num_mel_bins=16),
    )


def test_manifest_datamodule_multi_label_and_balanced_sampling(tmp_path):
    loader = LoaderConfig(batch_size=4, balanced_sampling=True, samples_per_epoch=400)
    dm = AudioDataModule(**_manifest_data(tmp_path), loader=loader)
    assert (dm.num_classes, dm.multi_label, dm.class_names) == (3, True, ["x", "y", "z"])
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, DistributedWeightedSampler) and len(loader.sampler) == 400
    draws = list(loader.sampler)
    rare = sum(i >= 12 for i in draws) / len(draws)
    # weights: common clips 1/12 + 1/12, rare clips 1/2 -> rare share = 1 / (1 + 2/12 * 12 / 2... )
    expected = (2 * 0.5) / (2 * 0.5 + 12 * (2 / 12))
    assert rare == pytest.approx(expected, abs=0.08)
    batch = next(iter(loader))
    assert batch["target"].shape == (4, 3) and set(batch["target"].sum(1).tolist()) <= {1.0, 2.0}


def _folder_with_bad_files(tmp_path):
    """train/{a,b}: 6 good clips each plus a corrupt (a) and an empty (b) file; val/: clean."""
    root = tmp_path / "data"
    folder_dataset(root / "train", {"a": 6, "b": 6}, seconds=0.1)
    folder_dataset(root / "val", {"a": 1, "b": 1}, seconds=0.1)
    (root / "train" / "a" / "a_corrupt.wav").write_bytes(b"RIFF1234WAVEjunkjunk" * 3)
    (root / "train" / "b" / "b_empty.wav").write_bytes(b"")
    return root


def _bad_dm(root, on_bad_audio="raise", **loader):
    return AudioDataModule(
        FolderSource(str(root)),
        features=FeatureConfig(target_length=20, num_mel_bins=16),
        loader=LoaderConfig(**{"batch_size": 7, **loader}),
        on_bad_audio=on_bad_audio,
    )


def test_bad_audio_raises_with_file_name(tmp_path):
    dm = _bad_dm(_folder_with_bad_files(tmp_path))
    dm.setup("fit")  # the files exist, so setup passes; decoding fails while loading
    with pytest.raises(
        AudioDecodeError, match=r"cannot decode audio file .*(a_corrupt|b_empty)\.wav"
    ):
        list(dm.train_dataloader())


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_audio_skip_keeps_batches_full_and_reports(tmp_path, caplog, num_workers):
    root = _folder_with_bad_files(tmp_path)
    dm = _bad_dm(root, on_bad_audio="skip", num_workers=num_workers, persistent_workers=False)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert [len(b["index"]) for b in batches] == [7, 7]
    good = {
        i
        for i, c in enumerate(dm.datasets["train"].clips)
        if "_corrupt" not in c.path.name and "_empty" not in c.path.name
    }
    assert all(int(i) in good for b in batches for i in b["index"])  # bad clips were replaced
    assert dm.datasets["train"].tally.total() >= 2  # both bad files were met (and counted)
    with caplog.at_level(logging.WARNING):
        count = dm.report_bad_audio("train")
    assert count >= 2
    assert (
        "skipped" in caplog.text and "a_corrupt.wav" in caplog.text and "b_empty.wav" in caplog.text
    )
    assert dm.datasets["train"].tally.total() == 0  # reset after the report


class _Tiny(pl.LightningModule):
    def __init__(self, num_classes: int):
        super().__init__()
        self.head = torch.nn.Linear(16, num_classes)

    def training_step(self, batch, _):
        logits = self.head(batch["fbank"].mean(dim=1))  # (B, F) -> (B, C)
        return torch.nn.functional.cross_entropy(logits, batch["target"])

    def validation_step(self, batch, _):
        self.log(
            "val_loss",
            torch.nn.functional.cross_entropy(self.head(batch["fbank"].mean(1)), batch["target"]),
        )

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_fit_reports_skipped_clips_each_epoch(tmp_path, caplog):
    root = _folder_with_bad_files(tmp_path)
    dm = _bad_dm(root, batch_size=4, on_bad_audio="skip")
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    with caplog.at_level(logging.WARNING, logger="fastast_pl.data.datamodule"):
        trainer.fit(_Tiny(dm.num_classes), datamodule=dm)
    reports = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(reports) >= 2  # one per epoch in which a bad clip was met
    assert all("unreadable clip" in m and ".wav" in m for m in reports)


def test_compute_stats_on_a_datamodule_ignores_training_dither(tmp_path):
    from fastast_pl.data.features import compute_stats

    from helpers.audio import raw_reference

    dm = _synthetic(tmp_path, dither=5.0, freqm=8, mixup=1.0)
    mean, std = compute_stats(dm, max_clips=4)  # with the progress bar
    clips = dm.datasets["train"].clips
    picked = [clips[int(i * len(clips) / 4)] for i in range(4)]  # evenly spread, as documented
    # 0.3 s clips at 10 ms hop: 28 real frames each, the rest (of 40) is padding.
    values = torch.cat([raw_reference(c.path, 40, 32)[:28] for c in picked]).double()
    assert mean == pytest.approx(float(values.mean()), rel=1e-5)
    assert std == pytest.approx(float(values.std(unbiased=False)), rel=1e-4)


def test_evaluation_under_ddp_sees_every_clip_exactly_once(tmp_path):
    dm = _synthetic(tmp_path)
    dm.prepare_data()
    n_test = len(dm._dataset("test"))
    world = 3 if n_test % 3 else 4  # a world size that does not divide the split
    assert n_test % world
    seen: list[int] = []
    for rank in range(world):
        dm.trainer = SimpleNamespace(world_size=world, global_rank=rank)
        seen += [int(i) for batch in dm.test_dataloader() for i in batch["index"]]
    assert sorted(seen) == list(range(n_test))  # no clip repeated, none left out


# ------------------------------------------------------------ skip in evaluation and predict


def _eval_with_bad_files(tmp_path):
    """train/ clean; val/ and test/: 3 good clips per class plus two unreadable files."""
    root = tmp_path / "data"
    folder_dataset(root / "train", {"a": 3, "b": 3}, seconds=0.1)
    for split in ("val", "test"):
        folder_dataset(root / split, {"a": 3, "b": 3}, seconds=0.1)
        (root / split / "a" / "a_corrupt.wav").write_bytes(b"RIFF1234WAVEjunkjunk" * 3)
        write(root / split / "b" / "b_short.wav", np.zeros(100, np.float32), 16000)
    return root


@pytest.mark.parametrize("split", ["val", "test"])
def test_skip_in_evaluation_drops_bad_clips_and_reports_them_once(tmp_path, caplog, split):
    dm = _bad_dm(_eval_with_bad_files(tmp_path), on_bad_audio="skip", batch_size=4)
    with caplog.at_level(logging.WARNING, logger="fastast_pl.data.setup_checks"):
        dm.setup({"val": "validate", "test": "test"}[split])
        dm.setup({"val": "validate", "test": "test"}[split])  # a second setup: no new report
    names = sorted(c.path.name for c in dm.datasets[split].clips)
    assert names == sorted(f"{c}_{i}.wav" for c in "ab" for i in range(3))  # only readable
    seen = [int(i) for batch in dm._eval_loader(split) for i in batch["index"]]
    assert sorted(seen) == list(range(6))  # each readable clip once, none substituted
    reports = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(reports) == 1
    assert f"{split} split: left out 2 unreadable clip(s)" in reports[0]
    assert "a_corrupt.wav" in reports[0] and "b_short.wav" in reports[0]
    assert [p.name for p, _ in dm.skipped[split]] == ["a_corrupt.wav", "b_short.wav"]


def test_skip_with_every_evaluation_clip_bad_is_an_error(tmp_path):
    root = tmp_path / "data"
    folder_dataset(root / "train", {"a": 2}, seconds=0.1)
    (root / "val" / "a").mkdir(parents=True)
    (root / "val" / "a" / "x.wav").write_bytes(b"junk")
    dm = _bad_dm(root, on_bad_audio="skip")
    with pytest.raises(ValueError, match=r"val split: all 1 clip\(s\) are unreadable.*x.wav"):
        dm.setup("validate")


def test_skip_in_training_counts_each_bad_file_once(tmp_path):
    root = _folder_with_bad_files(tmp_path)
    dm = AudioDataModule(
        FolderSource(str(root)),
        features=FeatureConfig(target_length=20, num_mel_bins=16),
        augment=AugmentConfig(mixup=1.0),  # every item draws a second clip: more retries
        loader=LoaderConfig(batch_size=7),
        on_bad_audio="skip",
    )
    dm.setup("fit")
    for _ in range(3):  # three epochs without a report in between
        list(dm.train_dataloader())
    assert dm.datasets["train"].tally.total() == 2  # two bad files, however often met
