"""A tiny HF transformers AST (the peer implementation) saved as a model directory, for tests."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

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


def hf_logits(model: ASTForAudioClassification, fbank: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_values=fbank).logits
