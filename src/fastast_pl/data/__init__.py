"""Audio data: decoding, Kaldi fbank features, dataset sources and the AudioDataModule."""

from fastast_pl.utils.torchaudio_compat import check_torch_family

# Before any module below imports torchaudio: a broken pair fails here, with the fix.
check_torch_family()

# ruff: noqa: E402
from fastast_pl.data.audio import AudioDecodeError, load_audio
from fastast_pl.data.augment import AugmentConfig, SpecAugment
from fastast_pl.data.cache import FeatureCache
from fastast_pl.data.clips import Clip, ClipSplits
from fastast_pl.data.datamodule import AudioDataModule, LoaderConfig
from fastast_pl.data.dataset import AudioDataset
from fastast_pl.data.features import FeatureConfig, compute_fbank, compute_stats
from fastast_pl.data.prepare import prepare_dataset
from fastast_pl.data.sampling import DistributedWeightedSampler, balanced_weights
from fastast_pl.data.sources import (
    DataSource,
    ESC50Source,
    FolderSource,
    ManifestSource,
    SyntheticSource,
)
from fastast_pl.data.synthetic import SyntheticConfig, ensure_synthetic

__all__ = [
    "AudioDataModule",
    "AudioDataset",
    "AudioDecodeError",
    "AugmentConfig",
    "Clip",
    "ClipSplits",
    "DataSource",
    "DistributedWeightedSampler",
    "ESC50Source",
    "FeatureCache",
    "FeatureConfig",
    "FolderSource",
    "LoaderConfig",
    "ManifestSource",
    "SpecAugment",
    "SyntheticConfig",
    "SyntheticSource",
    "balanced_weights",
    "compute_fbank",
    "compute_stats",
    "ensure_synthetic",
    "load_audio",
    "prepare_dataset",
]
