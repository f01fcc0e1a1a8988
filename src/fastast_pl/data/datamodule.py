"""AudioDataModule: one LightningDataModule for every dataset layout.

It owns the splits, the DataLoaders, balanced/distributed sampling, the feature cache and
bad-audio reporting. ``num_classes`` and ``multi_label`` are readable right after
``__init__`` (the CLI links them into the model) without touching audio.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from fastast_pl.data.cache import FeatureCache
from fastast_pl.data.datasets import (
    AudioDataset,
    BadAudioTally,
    ClipSplits,
    check_files,
    check_nonempty,
    read_esc50,
    read_folder,
    read_manifests,
    read_synthetic,
)
from fastast_pl.data.features import AUDIOSET_MEAN, AUDIOSET_STD, FeatureConfig
from fastast_pl.data.sampling import DistributedWeightedSampler, balanced_weights
from fastast_pl.data.synthetic import SyntheticConfig, ensure_synthetic

log = logging.getLogger(__name__)

DatasetKind = Literal["synthetic", "esc50", "manifest", "folder"]
SPLITS_ALL = ("train", "val", "test")
_STAGE_SPLITS = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
}


class AudioDataModule(pl.LightningDataModule):
    """Audio clips -> normalized Kaldi fbank batches ``{"fbank", "target", "index"}``.

    Splits: ``fit`` uses train and val, ``validate`` val, ``test`` and ``predict`` the test
    split (ESC-50: the validation fold; manifests without a test manifest: val).

    Args:
        dataset: Layout of ``data_dir``: "synthetic" (generated on first use, no download),
            "esc50" (published ESC-50 layout), "manifest" (AST JSON manifests + label csv),
            "folder" (``data_dir/<class_name>/*.wav``).
        data_dir: Dataset root. For "synthetic" a directory the generator owns (created).
        target_length: Frames per clip after padding/cropping (linked into the model).
        num_mel_bins: Mel bands per frame (linked into the model).
        batch_size: Clips per batch (per device).
        num_workers: DataLoader worker processes (0 loads in the main process).
        pin_memory: Pin host memory for faster GPU copies; None pins when CUDA is available.
        persistent_workers: Keep workers alive between epochs (only used if num_workers > 0).
        sample_rate: Rate (Hz) audio is resampled to before the fbank.
        frame_shift: Frame hop in milliseconds.
        frame_length: Frame (window) length in milliseconds.
        norm_mean: Dataset mean of the raw fbank (AST: AudioSet -4.2677393, ESC-50 -6.6268,
            Speech Commands -6.845978); compute with ``compute_stats``.
        norm_std: Dataset std of the raw fbank (AST: AudioSet 4.5689974, ESC-50 5.358,
            Speech Commands 5.5654526).
        dither: Kaldi dither for training clips (AST uses 0; > 0 bypasses the cache for training).
        freqm: SpecAugment max frequency-mask width in bins, training only (AST: 48; 0 = off).
        timem: SpecAugment max time-mask width in frames, training only (AST AudioSet: 192; 0 = off).
        mixup: Probability that a training clip is mixed with another (0 = off).
        mixup_alpha: Beta(alpha, alpha) parameter of the mixup weight.
        balanced_sampling: Draw training clips with weight sum(1 / label count) (AST recipe
            for imbalanced multi-label data); works under DDP.
        samples_per_epoch: Training draws per epoch with balanced sampling (None: split size).
        cache_dir: Directory for the on-disk fbank cache (None: no cache). It holds the raw
            (dither-free, unnormalized, unaugmented) fbank of each clip, keyed by the feature
            settings and the file's path, size and mtime; safe to share between workers/ranks.
        on_bad_audio: "raise" stops at an unreadable clip naming it; "skip" replaces it by
            another clip and reports the count and first paths at the end of the epoch.
        check_files_exist: At setup, check that every listed audio file exists.
        seed: Seed for balanced sampling and folder splits.
        val_fold: ESC-50: the fold (1-5) used for validation and test.
        esc10: ESC-50: use only the ESC-10 subset (10 classes).
        train_manifest: Manifest: training JSON manifest.
        val_manifest: Manifest: validation JSON manifest.
        test_manifest: Manifest: test JSON manifest (None: the validation manifest).
        label_csv: Manifest: class_labels_indices.csv (index, mid, display_name).
        multi_label: Manifest: multi-label targets; None infers it (any clip with > 1 label).
        val_fraction: Folder: share of each class for validation (without split folders).
        test_fraction: Folder: share of each class for test (without split folders).
        synthetic: Synthetic: generator settings (classes, clips per class, clip length, seed, SNR).
    """

    def __init__(
        self,
        dataset: DatasetKind = "synthetic",
        data_dir: str = "data/synthetic",
        target_length: int = 1024,
        num_mel_bins: int = 128,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        sample_rate: int = 16000,
        frame_shift: float = 10.0,
        frame_length: float = 25.0,
        norm_mean: float = AUDIOSET_MEAN,
        norm_std: float = AUDIOSET_STD,
        dither: float = 0.0,
        freqm: int = 0,
        timem: int = 0,
        mixup: float = 0.0,
        mixup_alpha: float = 10.0,
        balanced_sampling: bool = False,
        samples_per_epoch: int | None = None,
        cache_dir: str | None = None,
        on_bad_audio: Literal["raise", "skip"] = "raise",
        check_files_exist: bool = True,
        seed: int = 0,
        val_fold: int = 1,
        esc10: bool = False,
        train_manifest: str | None = None,
        val_manifest: str | None = None,
        test_manifest: str | None = None,
        label_csv: str | None = None,
        multi_label: bool | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        synthetic: SyntheticConfig | None = None,
    ) -> None:
        super().__init__()
        if dataset not in ("synthetic", "esc50", "manifest", "folder"):
            raise ValueError(
                f"dataset must be synthetic, esc50, manifest or folder; got {dataset!r}"
            )
        if batch_size <= 0 or num_workers < 0:
            raise ValueError(
                f"batch_size must be > 0 and num_workers >= 0, got {batch_size}, {num_workers}"
            )
        if not 0.0 <= mixup <= 1.0:
            raise ValueError(f"mixup is a probability in [0, 1], got {mixup}")
        if on_bad_audio not in ("raise", "skip"):
            raise ValueError(f"on_bad_audio must be 'raise' or 'skip', got {on_bad_audio!r}")
        if dataset == "manifest" and (
            label_csv is None or (train_manifest is None and val_manifest is None)
        ):
            raise ValueError(
                "dataset: manifest needs label_csv and at least train_manifest or val_manifest"
            )
        self.save_hyperparameters(
            ignore=["multi_label"]
        )  # the resolved value is logged by the model
        self.dataset_kind = dataset
        self.data_dir = Path(data_dir)
        self.target_length = target_length
        self.num_mel_bins = num_mel_bins
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.features = FeatureConfig(
            sample_rate=sample_rate,
            num_mel_bins=num_mel_bins,
            target_length=target_length,
            frame_shift=frame_shift,
            frame_length=frame_length,
            mean=norm_mean,
            std=norm_std,
            dither=dither,
        )
        self.freqm, self.timem = freqm, timem
        self.mixup, self.mixup_alpha = mixup, mixup_alpha
        self.balanced_sampling = balanced_sampling
        self.samples_per_epoch = samples_per_epoch
        self.cache_dir = cache_dir
        self.on_bad_audio = on_bad_audio
        self.check_files_exist = check_files_exist
        self.seed = seed
        self.val_fold, self.esc10 = val_fold, esc10
        self.manifests = (train_manifest, val_manifest, test_manifest)
        self.label_csv = label_csv
        self._multi_label = multi_label
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.synthetic = synthetic if synthetic is not None else SyntheticConfig()
        if dataset == "synthetic" and self.synthetic.sample_rate != sample_rate:
            log.info(
                "synthetic clips are written at %d Hz and resampled to %d Hz",
                self.synthetic.sample_rate,
                sample_rate,
            )
        self.datasets: dict[str, AudioDataset] = {}
        self._tallies: dict[str, BadAudioTally] = {}
        self._seen_epoch: dict[str, int] = {}
        if dataset != "synthetic":
            # Read the metadata now: a missing directory or a bad manifest stops the run
            # here, before a Trainer exists or anything is written.
            self.clip_splits  # noqa: B018

    # ------------------------------------------------------------------ metadata
    @cached_property
    def clip_splits(self) -> ClipSplits:
        """All splits' clips and the label space (reads metadata, never audio)."""
        kind = self.dataset_kind
        if kind == "synthetic":
            return read_synthetic(self.data_dir, self.synthetic)
        if kind == "esc50":
            return read_esc50(self.data_dir, self.val_fold, self.esc10)
        if kind == "manifest":
            return read_manifests(
                *self.manifests, label_csv=self.label_csv, multi_label=self._multi_label
            )
        return read_folder(self.data_dir, self.val_fraction, self.test_fraction, self.seed)

    @property
    def num_classes(self) -> int:
        """Number of classes, from the settings (synthetic) or the metadata files.

        ESC-50 before its meta file exists: 50 (10 with ``esc10``), checked again at setup.
        """
        if self.dataset_kind == "synthetic":
            return self.synthetic.num_classes
        if self.dataset_kind == "esc50" and not (self.data_dir / "meta" / "esc50.csv").is_file():
            return 10 if self.esc10 else 50
        return self.clip_splits.num_classes

    @property
    def multi_label(self) -> bool:
        """Whether targets are multi-hot (sigmoid/BCE, mAP) rather than one-hot."""
        if self.dataset_kind in ("synthetic", "esc50", "folder"):
            return False
        if self._multi_label is not None:
            return self._multi_label
        return self.clip_splits.multi_label

    @property
    def class_names(self) -> list[str]:
        """Display name of every class, by class index."""
        if self.dataset_kind == "synthetic":
            return self.synthetic.class_names
        return self.clip_splits.class_names

    def feature_config(self) -> dict[str, Any]:
        """All feature settings (for cache keys and model/teacher compatibility checks)."""
        return self.features.to_dict()

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Generate the synthetic dataset if missing (rank 0 only; no downloads ever)."""
        if self.dataset_kind == "synthetic":
            ensure_synthetic(self.data_dir, self.synthetic)

    def setup(self, stage: str | None = None) -> None:
        """Read and check the metadata of the splits ``stage`` uses; build their datasets."""
        if self.trainer is None:
            self.prepare_data()  # used without a Trainer (scripts, benchmarks)
        splits = self.clip_splits
        if splits.num_classes != self.num_classes:  # the model was built with self.num_classes
            raise ValueError(
                f"{splits.source} has {splits.num_classes} classes, but {self.num_classes} were "
                "announced before the data existed (and linked into the model); rerun now "
                "that the data is in place"
            )
        needed = _STAGE_SPLITS[stage] if stage else SPLITS_ALL
        check_nonempty(splits, needed)
        if self.check_files_exist:
            check_files(
                ClipSplits(
                    {s: splits.splits[s] for s in needed},
                    splits.class_names,
                    splits.multi_label,
                    splits.source,
                )
            )
        log.info(
            "%s: %d classes (%s), %s",
            splits.source,
            splits.num_classes,
            "multi-label" if splits.multi_label else "single-label",
            ", ".join(f"{s}={len(splits.splits[s])}" for s in needed),
        )
        cache = FeatureCache(self.cache_dir, self.features) if self.cache_dir else None
        for split in needed:
            if split in self.datasets:
                continue
            train = split == "train"
            tally = self._tallies.setdefault(split, BadAudioTally(slots=max(self.num_workers, 1)))
            self.datasets[split] = AudioDataset(
                splits.splits[split],
                num_classes=splits.num_classes,
                features=self.features,
                train=train,
                freqm=self.freqm,
                timem=self.timem,
                mixup=self.mixup,
                mixup_alpha=self.mixup_alpha,
                cache=cache,
                on_bad_audio=self.on_bad_audio,
                tally=tally,
            )

    def _dataset(self, split: str) -> AudioDataset:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        return self.datasets[split]

    def _loader(self, dataset: AudioDataset, shuffle: bool, sampler: Any = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            drop_last=False,
        )

    def train_sampler(self) -> DistributedWeightedSampler | None:
        """The balanced sampler for the training split (None without balanced sampling)."""
        if not self.balanced_sampling:
            return None
        dataset = self._dataset("train")
        weights = balanced_weights([c.labels for c in dataset.clips], dataset.num_classes)
        trainer = self.trainer
        replicas = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        return DistributedWeightedSampler(
            weights,
            num_samples=self.samples_per_epoch,
            num_replicas=replicas,
            rank=rank,
            seed=self.seed,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._dataset("train"), shuffle=True, sampler=self.train_sampler())

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self._dataset(split)
        trainer = self.trainer
        sampler = None
        if trainer is not None and trainer.world_size > 1:
            # Lightning's default DistributedSampler pads an uneven split with repeated
            # clips, which the metrics would count twice: here every clip goes to one rank.
            sampler = UnrepeatedDistributedSampler(
                dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
            )
        return self._loader(dataset, shuffle=False, sampler=sampler)

    def stats_dataset(self) -> AudioDataset:
        """The training clips as an evaluation dataset (no dither, no augmentation), which
        is what ``compute_stats`` reads; uses the feature cache if one is configured."""
        train = self._dataset("train")
        return AudioDataset(
            train.clips,
            num_classes=train.num_classes,
            features=self.features,
            cache=FeatureCache(self.cache_dir, self.features) if self.cache_dir else None,
            on_bad_audio=self.on_bad_audio,
        )

    # ------------------------------------------------------------------ bad-audio reports
    def report_bad_audio(self, split: str) -> int:
        """Warn with the number and first paths of clips skipped in ``split``; reset the count."""
        dataset = self.datasets.get(split)
        if dataset is None:
            return 0
        count = dataset.tally.total()
        if count:
            log.warning(
                "%s split: skipped %d unreadable clip(s) (on_bad_audio=skip); first: %s",
                split,
                count,
                ", ".join(dataset.bad_paths()),
            )
            dataset.tally.reset()
        return count

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Report skipped clips once per epoch: at the first batch of the next epoch, and at
        # teardown for the last one (a DataModule has no epoch-end hook).
        trainer = self.trainer
        if trainer is not None and self.on_bad_audio == "skip":
            split = (
                "train"
                if trainer.training
                else "val"
                if (trainer.validating or trainer.sanity_checking)
                else "test"
            )
            epoch = trainer.current_epoch
            if self._seen_epoch.get(split, epoch) != epoch:
                self.report_bad_audio(split)
            self._seen_epoch[split] = epoch
        return batch

    def teardown(self, stage: str | None = None) -> None:
        for split in list(self.datasets):
            self.report_bad_audio(split)
