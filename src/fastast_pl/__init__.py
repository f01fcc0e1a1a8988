"""fastast-pl: a fast Audio Spectrogram Transformer with Token Merging and CNN distillation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from fastast_pl.inference import AudioClassifier

__all__ = ["AudioClassifier", "__version__"]


def __getattr__(name: str) -> Any:
    """``fastast_pl.AudioClassifier`` on first use: ``import fastast_pl`` stays light."""
    if name == "AudioClassifier":
        from fastast_pl.inference import AudioClassifier

        return AudioClassifier
    raise AttributeError(f"module 'fastast_pl' has no attribute {name!r}")
