"""What ``AudioClassifier`` accepts: ``predict``'s audio as checked ``(1, N)`` waveforms, and
``from_pretrained``'s feature settings against those the checkpoint stores.

Audio files and folders of them are decoded by the training pipeline's loader
(``data.audio.load_audio``, with its bad-audio checks); tensors and arrays are checked here
for the mistakes a caller makes with them: a transposed ``(samples, channels)`` array,
NaN/inf, integer PCM, float audio beyond full scale.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fastast_pl.data.audio import AUDIO_EXTENSIONS, load_audio
from fastast_pl.data.checks import FULL_SCALE_LIMIT
from fastast_pl.data.features import FEATURE_VERSION, FeatureConfig

log = logging.getLogger(__name__)

AudioInput = str | os.PathLike | torch.Tensor | np.ndarray
#: Most channels a (channels, samples) waveform may have; more reads as a transposed array.
MAX_CHANNELS = 8
FEATURE_FIELDS = tuple(f.name for f in dataclasses.fields(FeatureConfig))


def audio_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, folders searched (recursively, sorted) for audio files."""
    out: list[Path] = []
    for item in paths:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS
            )
            if not found:
                raise FileNotFoundError(
                    f"folder {p} holds no audio files (looked for {', '.join(AUDIO_EXTENSIONS)})"
                )
            out.extend(found)
        else:
            out.append(p)  # a missing file is reported when it is decoded
    return out


def as_items(inputs: AudioInput | Sequence[AudioInput]) -> list[AudioInput]:
    """One input or a sequence of them as a list, folders replaced by their audio files."""
    if isinstance(inputs, (str, os.PathLike, torch.Tensor, np.ndarray)):
        inputs = [inputs]
    items: list[AudioInput] = []
    for item in inputs:
        if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            items.extend(audio_files([item]))
        else:
            items.append(item)
    return items


def read_waveform(item: AudioInput, sample_rate: int, frame_length: float) -> torch.Tensor:
    """The ``(1, N)`` mono waveform of a file (decoded, resampled to ``sample_rate``) or of a
    tensor/array already at that rate; refuses what would give silently wrong scores."""
    if isinstance(item, (str, os.PathLike)):
        # the loaders' bad-audio checks (data.checks), shorter-than-one-window included
        return load_audio(item, sample_rate, frame_length)  # (1, N)
    x = _full_scale_float(item)
    if x.ndim == 1:
        x = x.unsqueeze(0)  # (1, N)
    elif x.ndim == 2 and (x.shape[0] > x.shape[1] or x.shape[0] > MAX_CHANNELS):
        rows, cols = x.shape
        raise ValueError(
            f"expected a waveform (channels, samples), got shape {(rows, cols)}: that "
            f"reads as {rows} channels of {cols} samples. A (samples, channels) array "
            f"(as soundfile.read returns) must be transposed: pass array.T "
            f"(shape {(cols, rows)})"
        )
    elif x.ndim == 2 and x.shape[0] > 1:
        x = x.mean(dim=0, keepdim=True)  # (channels, N) -> (1, N)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"expected a waveform (N,) or (channels, N), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("the waveform contains NaN or infinity")
    peak = float(x.abs().max())
    if peak > FULL_SCALE_LIMIT:
        raise ValueError(
            f"the waveform's peak amplitude is {peak:.4g} (expected at most "
            f"{FULL_SCALE_LIMIT}: float audio lies in [-1, 1]); scale it, e.g. int16 "
            "values by 1/32768, or pass the integer array itself"
        )
    return x


def _full_scale_float(item: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A float32 tensor of a waveform; signed integer PCM (int16, int32, ...) is scaled by
    its dtype's full scale, 2^(bits-1), as soundfile scales integer files, so an array and
    its WAV file give the same samples. Unsigned and boolean arrays are refused."""
    x = torch.as_tensor(item)
    if x.dtype.is_floating_point:
        return x.float()
    if x.dtype in (torch.int8, torch.int16, torch.int32, torch.int64):
        bits = torch.iinfo(x.dtype).bits
        log.info("waveform of dtype %s scaled to [-1, 1] by 1/2^%d", x.dtype, bits - 1)
        return (x.double() / 2.0 ** (bits - 1)).float()
    raise ValueError(
        f"a waveform of dtype {x.dtype} has no known full scale; pass float audio in "
        "[-1, 1] or signed integer PCM (int16, int32)"
    )


def feature_fields(features: FeatureConfig | Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings a caller gives (a FeatureConfig or some of its fields) as a dict; unknown
    keys are refused, since a misspelt one would otherwise be dropped without a word."""
    if features is None:
        return {}
    if isinstance(features, FeatureConfig):
        return dataclasses.asdict(features)
    unknown = sorted(set(features) - set(FEATURE_FIELDS))
    if unknown:
        raise ValueError(f"unknown feature setting(s) {unknown}; expected {list(FEATURE_FIELDS)}")
    return dict(features)


def warn_replaced_features(name: Any, stored: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Warn, naming each, where given feature settings replace other values the checkpoint
    was trained with (another sample rate or window changes what the model hears)."""
    replaced = [
        f"{k} {stored[k]!r} -> {v!r}"
        for k, v in given.items()
        if k != "dither" and k in stored and stored[k] != v
    ]
    if replaced:
        log.warning(
            "%s: the feature settings given replace those the checkpoint was trained with: %s",
            name,
            ", ".join(replaced),
        )


def warn_replaced_labels(
    name: Any, info: Any, class_names: Sequence[str] | None, multi_label: bool | None
) -> None:
    """Warn where given class names or label kind replace other ones the checkpoint (its
    ``InferenceInfo``) records: its outputs would then be read as other classes or scored
    with the other activation."""
    stored = info.class_names
    if class_names is not None and stored is not None and list(class_names) != list(stored):
        at = next((i for i, (a, b) in enumerate(zip(class_names, stored)) if a != b), None)
        at = min(len(class_names), len(stored)) if at is None else at
        log.warning(
            "%s: the class names given replace those the checkpoint records (%d given, %d "
            "recorded; first difference at class %d: %r given, %r recorded)",
            name, len(class_names), len(stored), at,
            class_names[at] if at < len(class_names) else None,
            stored[at] if at < len(stored) else None,
        )  # fmt: skip
    if multi_label is not None and info.multi_label is not None and multi_label != info.multi_label:
        kinds = {True: "multi-label", False: "single-label"}
        log.warning(
            "%s: scored as %s as asked, but the checkpoint records a %s model",
            name, kinds[multi_label], kinds[info.multi_label],
        )  # fmt: skip


def stored_features(path: Path, stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """FeatureConfig fields of a checkpoint's stored settings; refuses another recipe version."""
    if not stored:
        return {}
    version = stored.get("version", FEATURE_VERSION)
    if version != FEATURE_VERSION:
        raise ValueError(
            f"{path}: features were computed with feature recipe version {version}; this "
            f"fastast_pl computes version {FEATURE_VERSION}, so its fbank would differ"
        )
    out = {k: v for k, v in stored.items() if k in FEATURE_FIELDS}
    out["dither"] = 0.0  # inference never dithers
    return out
