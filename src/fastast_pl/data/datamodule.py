"""AudioDataModule: a dataset source + feature, augmentation and loader settings -> batches.

It owns the DataLoaders, balanced/distributed sampling, the feature cache and bad-audio
reporting (``setup``'s checks: ``setup_checks.py``); which clips exist and what their
labels are is the source's business (``sources.py``). ``num_classes`` and ``multi_label``
are readable right after ``__init__`` (the CLI links them into the model) without touching audio.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from fastast_pl.data.augment import AugmentConfig
from fastast_pl.data.cache import FeatureCache
from fastast_pl.data.clips import SPLITS, Clip, ClipSplits, split_fingerprint
from fastast_pl.data.dataset import AudioDataset, BadAudioTally
from fastast_pl.data.features import FeatureConfig
from fastast_pl.data.sampling import DistributedWeightedSampler, balanced_weights
from fastast_pl.data.setup_checks import check_splits, readable_clips, report_left_out
from fastast_pl.data.sources import DataSource
from fastast_pl.data.unlabeled import UnlabeledConfig, split_unlabeled
from fastast_pl.utils.numbers import check_number

log = logging.getLogger(__name__)

_STAGE_SPLITS = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
}


@dataclass(frozen=True)
class LoaderConfig:
    """How clips are loaded and drawn: never which clips or what features they give.

    Args:
        batch_size: Clips per batch (per device).
        num_workers: DataLoader worker processes (0 loads in the main process).
        pin_memory: Pin host memory for faster GPU copies; None pins when CUDA is available.
        persistent_workers: Keep workers alive between epochs (only used if num_workers > 0).
        balanced_sampling: Draw training clips with weight sum(1 / label count) (AST recipe
            for imbalanced multi-label data); works under DDP.
        samples_per_epoch: Training draws per epoch with balanced sampling (None: split size).
    """

    batch_size: int = 32
    num_workers: int = 0
    pin_memory: bool | None = None
    persistent_workers: bool = True
    balanced_sampling: bool = False
    samples_per_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size <= 0 or self.num_workers < 0:
            raise ValueError(
                "LoaderConfig: batch_size must be > 0 and num_workers >= 0, got "
                f"{self.batch_size}, {self.num_workers}"
            )
        if self.samples_per_epoch is not None:
            check_number("loader.samples_per_epoch", self.samples_per_epoch, at_least=1,
                         integer=True)  # fmt: skip
            if not self.balanced_sampling:
                raise ValueError(
                    f"loader.samples_per_epoch={self.samples_per_epoch} is used only with "
                    "loader.balanced_sampling: true (it would be ignored); set both, or neither"
                )


class AudioDataModule(pl.LightningDataModule):
    """Audio clips -> normalized Kaldi fbank batches ``{"fbank", "target", "index",
    "clip_key", "augmented", "labeled"}`` (+ ``"waveform"``; docs/architecture.md, "Batches").

    What a LightningModule may read of it (docs/architecture.md, "Data -> model links"):
    ``num_classes``, ``multi_label``, ``class_names``, ``feature_config()``,
    ``data_identity()`` and ``training_augmentations()``; everything else is the loaders'.

    Splits: ``fit`` uses train and val, ``validate`` val, ``test`` and ``predict`` the test
    split (ESC-50: the validation fold; manifests without a test manifest: val).

    Args:
        source: Where the clips and labels come from: ``SyntheticSource``, ``ESC50Source``,
            ``ManifestSource`` or ``FolderSource`` (``fastast_pl.data.sources``), with its
            own options.
        features: Fbank settings; ``target_length`` and ``num_mel_bins`` are linked into the
            model. ``mean``/``std``: the dataset's raw fbank statistics (AST: AudioSet
            -4.2677393/4.5689974, ESC-50 -6.6268/5.358, Speech Commands -6.845978/5.5654526);
            compute them with ``python -m fastast_pl stats``.
        augment: SpecAugment and mixup of training clips.
        loader: Batch size, workers, pinning and (balanced) sampling.
        cache_dir: Directory for the on-disk fbank cache (None: no cache). It holds the raw
            (dither-free, unnormalized, unaugmented) fbank of each clip, keyed by the feature
            settings and the file's path, size and mtime; safe to share between workers/ranks.
        on_bad_audio: "raise" stops at a bad clip (unreadable, truncated, NaN/inf, shorter
            than one window) naming it; "skip": in training, a bad clip is replaced by another
            random clip and the files are counted and reported (count and first paths) once
            per epoch; validation, test and predict splits are scanned at setup (one decode
            per file, the same checks) and their bad clips left out of the split and
            reported once, so metrics and predictions cover exactly the readable clips.
        check_files_exist: At setup, check that every listed audio file exists.
        seed: Seed of the balanced sampler and of ``unlabeled.labeled_fraction``'s choice.
        unlabeled: Training audio without labels (a folder, a manifest, or the labels of
            part of the training split withheld): those clips come in the batch with
            ``labeled`` False and are taught by a teacher alone (``DistillationModule``); a
            module without a teacher leaves them out of its loss (warned). Logged at setup:
            labeled and unlabeled training clips.
        waveforms: Batches also carry each clip's ``waveform`` (``(B, N)`` at the feature
            sample rate, the span of the fbank's frames): what a waveform teacher (a Hugging
            Face audio classifier, PaSST) hears. It is the clean clip, or the mix with mixup (which
            then must be ``mixup_domain: waveform``); SpecAugment, noise, roll and dither
            reach only the student's fbank (the run's log says so).
    """

    def __init__(
        self,
        source: DataSource,
        features: FeatureConfig = FeatureConfig(),  # noqa: B008 - frozen dataclass
        augment: AugmentConfig = AugmentConfig(),  # noqa: B008 - frozen dataclass
        loader: LoaderConfig = LoaderConfig(),  # noqa: B008 - frozen dataclass
        cache_dir: str | None = None,
        on_bad_audio: Literal["raise", "skip"] = "raise",
        check_files_exist: bool = True,
        seed: int = 0,
        unlabeled: UnlabeledConfig | None = None,
        waveforms: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(source, DataSource):
            raise TypeError(
                "AudioDataModule source must be a fastast_pl.data.sources.DataSource, got "
                f"{type(source).__name__}"
            )
        if on_bad_audio not in ("raise", "skip"):
            raise ValueError(f"on_bad_audio must be 'raise' or 'skip', got {on_bad_audio!r}")
        for key, width, size in (
            ("freqm", augment.freqm, features.num_mel_bins),
            ("timem", augment.timem, features.target_length),
        ):
            if width > size:
                axis = "num_mel_bins" if key == "freqm" else "target_length"
                raise ValueError(
                    f"data.augment.{key}={width} masks more than the input has "
                    f"(data.features.{axis}={size}); expected at most {size}"
                )
        self.save_hyperparameters()
        self.source = source
        self.features = features
        self.augment = augment
        self.loader = loader
        self.pin_memory = (
            torch.cuda.is_available() if loader.pin_memory is None else loader.pin_memory
        )
        self.persistent_workers = loader.persistent_workers and loader.num_workers > 0
        self.cache_dir = cache_dir
        self.on_bad_audio = on_bad_audio
        self.check_files_exist = check_files_exist
        self.seed = seed
        self.unlabeled = unlabeled
        self.waveforms = waveforms
        self._split_fingerprints: dict[str, dict[str, object]] | None = None
        self.datasets: dict[str, AudioDataset] = {}
        self._tallies: dict[str, BadAudioTally] = {}
        #: Clips left out of each evaluation split with on_bad_audio=skip: (path, reason).
        self.skipped: dict[str, list[tuple[Path, str]]] = {}
        self._scanned: dict[Path, str | None] = {}
        self._noted: set[str] = set()
        self._seen_epoch: dict[str, int] = {}
        if not source.generated:
            # Read the metadata now: a missing directory or a bad manifest stops the run
            # here, before a Trainer exists or anything is written.
            source.splits  # noqa: B018

    # ------------------------------------------------------------------ metadata
    @property
    def clip_splits(self) -> ClipSplits:
        """All splits' clips and the label space (reads metadata, never audio)."""
        return self.source.splits

    @property
    def num_classes(self) -> int:
        """Number of classes, from the source's settings or metadata files."""
        return self.source.num_classes

    @property
    def multi_label(self) -> bool:
        """Whether targets are multi-hot (sigmoid/BCE, mAP) rather than one-hot."""
        return self.source.multi_label

    @property
    def class_names(self) -> list[str]:
        """Display name of every class, by class index."""
        return self.source.class_names

    def feature_config(self) -> dict[str, Any]:
        """All feature settings (for cache keys and model/teacher compatibility checks)."""
        return self.features.to_dict()

    def data_identity(self) -> dict[str, Any]:
        """What tells this training data from another beyond the feature settings: the
        source and its options, the augmentation, the seed (not how clips are loaded) and
        each split's clips (count and SHA-256 of paths and labels: a folder that gained
        files splits differently)."""
        if self._split_fingerprints is None:  # the splits do not change within a process
            self._split_fingerprints = {
                name: split_fingerprint(clips) for name, clips in self.clip_splits.splits.items()
            }
        identity = {
            "source": repr(self.source),
            "augment": dataclasses.asdict(self.augment),
            "seed": self.seed,
            "splits": self._split_fingerprints,
        }
        if self.unlabeled is not None:
            identity["unlabeled"] = dataclasses.asdict(self.unlabeled)
        return identity

    def carries_waveforms(self) -> bool:
        """Whether batches carry each clip's ``waveform`` (for a waveform teacher)."""
        return self.waveforms

    def training_augmentations(self) -> list[str]:
        """What makes a training clip's fbank differ from epoch to epoch, as ``"name=value"``
        (``augment``'s active settings and a training dither). Empty: every clip gives the
        same input in every epoch, so per-clip results (cached teacher logits) stay valid."""
        found = self.augment.active()
        if self.features.dither:
            found.append(f"dither={self.features.dither}")
        return found

    # ------------------------------------------------------------------ Lightning hooks
    def prepare_data(self) -> None:
        """Let the source generate its data if it does (rank 0 only; no downloads ever)."""
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        """Read and check the metadata of the splits ``stage`` uses; build their datasets."""
        if self.trainer is None:
            self.prepare_data()  # used without a Trainer (scripts, benchmarks)
        splits = self.clip_splits
        needed = _STAGE_SPLITS[stage] if stage else SPLITS
        check_splits(splits, self.num_classes, needed, self.check_files_exist, self._noted)
        cache = self._cache()
        for split in needed:
            if split in self.datasets:
                continue
            train = split == "train"
            clips = splits.splits[split]
            if not train and self.on_bad_audio == "skip":
                clips = self._readable(split, clips)
            unlabeled: list[Path] = []
            if train and self.unlabeled is not None:
                held_out = {s: [c.path for c in splits.splits[s]] for s in ("val", "test")}
                clips, unlabeled = split_unlabeled(
                    self.unlabeled, clips, self.seed, self.check_files_exist, held_out
                )
            tally = self._tallies.setdefault(split, BadAudioTally(len(clips) + len(unlabeled)))
            self.datasets[split] = AudioDataset(
                clips,
                unlabeled=unlabeled,
                waveforms=self.waveforms,
                num_classes=splits.num_classes,
                features=self.features,
                train=train,
                augment=self.augment,
                cache=cache,
                on_bad_audio=self.on_bad_audio if train else "raise",
                tally=tally,
            )

    def _readable(self, split: str, clips: list[Clip]) -> list[Clip]:
        """``clips`` without the bad ones (decoded once each, in the loader's workers);
        the left-out files are logged once and kept in ``self.skipped[split]``."""
        kept, bad = readable_clips(
            clips, self._scanned, self.features.frame_length, self.loader.num_workers
        )
        self.skipped[split] = bad
        report_left_out(split, bad, len(kept), len(clips))
        return kept

    def _cache(self) -> FeatureCache | None:
        return FeatureCache(self.cache_dir, self.features) if self.cache_dir else None

    def _dataset(self, split: str) -> AudioDataset:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        return self.datasets[split]

    def _loader(self, dataset: AudioDataset, shuffle: bool, sampler: Any = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.loader.batch_size,
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            num_workers=self.loader.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            drop_last=False,
        )

    def train_sampler(self) -> DistributedWeightedSampler | None:
        """The balanced sampler for the training split (None without balanced sampling)."""
        if not self.loader.balanced_sampling:
            return None
        dataset = self._dataset("train")
        weights = balanced_weights([c.labels for c in dataset.clips], dataset.num_classes)
        trainer = self.trainer
        replicas = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        return DistributedWeightedSampler(
            weights,
            num_samples=self.loader.samples_per_epoch,
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
            cache=self._cache(),
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
