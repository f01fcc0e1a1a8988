"""Tiny HF transformers models (the peer implementation) saved as model directories, and
huggingface_hub's cache layout to place them in, for tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from transformers import (
    ASTConfig,
    ASTFeatureExtractor,
    ASTForAudioClassification,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2ForSequenceClassification,
)

LABELS = ["bark", "meow", "chirp"]
FRAMES, MELS = 64, 32
MEAN, STD = -5.0, 3.0


def save_tiny_hf_ast(directory: Path, seed: int = 0) -> ASTForAudioClassification:
    """A 2-layer, 32-wide ASTForAudioClassification with id2label and its feature extractor."""
    torch.manual_seed(seed)
    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=FRAMES,
        num_mel_bins=MELS,
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
    )
    model = ASTForAudioClassification(config).eval()
    model.save_pretrained(directory)
    extractor = ASTFeatureExtractor(
        num_mel_bins=MELS, max_length=FRAMES, mean=MEAN, std=STD, sampling_rate=16000
    )
    extractor.save_pretrained(directory)
    return model


def save_tiny_wav2vec2(
    directory: Path, names: list[str], sampling_rate: int = 16000, layers: int = 1
) -> None:
    """A 32-wide Wav2Vec2ForSequenceClassification named ``names`` (id2label), with its
    feature extractor at ``sampling_rate``: a waveform teacher at its own rate."""
    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(32, 32),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_feat_extract_layers=2,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    Wav2Vec2ForSequenceClassification(config).eval().save_pretrained(directory)
    Wav2Vec2FeatureExtractor(
        sampling_rate=sampling_rate, do_normalize=True, return_attention_mask=True
    ).save_pretrained(directory)


def hf_logits(model: ASTForAudioClassification, fbank: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_values=fbank).logits


def place_in_hub_cache(model_dir: Path, cache: Path, repo_id: str, commit: str) -> Path:
    """Blobs named by content hash, snapshot entries linking to them, refs/main -> commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in sorted(model_dir.iterdir()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot
