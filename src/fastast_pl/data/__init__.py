"""Audio data: decoding, Kaldi fbank features, dataset layouts and the AudioDataModule."""

from fastast_pl.data.audio import AudioDecodeError, load_audio
from fastast_pl.data.cache import FeatureCache
from fastast_pl.data.datamodule import AudioDataModule
from fastast_pl.data.datasets import AudioDataset, Clip, ClipSplits
from fastast_pl.data.features import FeatureConfig, SpecAugment, compute_fbank, compute_stats
from fastast_pl.data.prepare import prepare_dataset
from fastast_pl.data.sampling import DistributedWeightedSampler, balanced_weights
from fastast_pl.data.synthetic import SyntheticConfig, ensure_synthetic

__all__ = [
    "AudioDataModule",
    "AudioDataset",
    "AudioDecodeError",
    "Clip",
    "ClipSplits",
    "DistributedWeightedSampler",
    "FeatureCache",
    "FeatureConfig",
    "SpecAugment",
    "SyntheticConfig",
    "balanced_weights",
    "compute_fbank",
    "compute_stats",
    "ensure_synthetic",
    "load_audio",
    "prepare_dataset",
]
