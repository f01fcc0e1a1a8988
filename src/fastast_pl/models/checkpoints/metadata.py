"""What inference needs besides the weights: class names, feature settings, label kind, merge.

Our LightningModules store it under ``INFERENCE_CKPT_KEY`` (``"fastast_inference"``) in every
checkpoint they save (``ClassificationModule.on_save_checkpoint``)::

    {"version": 1,
     "class_names": ["dog", ...] | None,     # by class index
     "multi_label": bool,
     "features": {"sample_rate": 16000, "num_mel_bins": 128, "target_length": 1024,
                  "frame_shift": 10.0, "frame_length": 25.0, "mean": ..., "std": ..., ...}
                 | None,                      # FeatureConfig.to_dict() of the training data
     "merge": [r per layer] | None,           # the schedule evaluated with (eval_merge)
     "train_merge": [r per layer] | None}     # the schedule trained with

HF transformers models give the same from ``config.json`` (``id2label``, ``problem_type``) and
``preprocessor_config.json`` (AST feature extractor: ``sampling_rate``, ``num_mel_bins``,
``max_length``, ``mean``, ``std``, ``do_normalize``). Anything a file does not say is None;
the caller decides what must then be given. Plain values only: ``models/`` never imports
``data/``, so the feature settings stay a dict here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastast_pl.models.checkpoints.files import read_json, read_lightning
from fastast_pl.models.checkpoints.hub import resolve_source

log = logging.getLogger(__name__)

#: Checkpoint entry holding what inference needs (see the module docstring).
INFERENCE_CKPT_KEY = "fastast_inference"
METADATA_VERSION = 1


@dataclass
class InferenceInfo:
    """What a checkpoint says about running it on new audio; None where it says nothing.

    ``features``: FeatureConfig fields; ``merge``: a merge spec (r per layer for our
    checkpoints); ``missing``: a sentence on what the file lacks, for messages.
    """

    path: Path
    kind: str  # "fastast", "fastast-old" (no metadata entry), "hf", "state-dict"
    class_names: list[str] | None = None
    multi_label: bool | None = None
    features: dict[str, Any] | None = None
    merge: object = None
    train_merge: object = None
    missing: list[str] = field(default_factory=list)


def inference_metadata(
    class_names: Sequence[str] | None,
    multi_label: bool,
    features: Mapping[str, Any] | None,
    merge: list[int] | None = None,
    train_merge: list[int] | None = None,
) -> dict[str, Any]:
    """The ``INFERENCE_CKPT_KEY`` entry (plain, JSON-able values)."""
    return {
        "version": METADATA_VERSION,
        "class_names": None if class_names is None else [str(n) for n in class_names],
        "multi_label": bool(multi_label),
        "features": None if features is None else dict(features),
        "merge": None if merge is None else [int(r) for r in merge],
        "train_merge": None if train_merge is None else [int(r) for r in train_merge],
    }


def read_inference_info(path_or_id: str | os.PathLike) -> InferenceInfo:
    """The inference settings stored with a checkpoint (path or hub id); never the weights."""
    p = resolve_source(path_or_id)
    if p.is_dir():
        return _from_hf(p, p / "config.json", p / "preprocessor_config.json")
    if p.suffix == ".ckpt":
        return _from_lightning(p, read_lightning(p, mmap=True))
    if (p.parent / "config.json").is_file() and p.suffix in (".bin", ".safetensors"):
        return _from_hf(p, p.parent / "config.json", p.parent / "preprocessor_config.json")
    return InferenceInfo(p, "state-dict", missing=["class names", "feature settings", "label kind"])


def _from_lightning(p: Path, checkpoint: Mapping[str, Any]) -> InferenceInfo:
    saved = checkpoint.get(INFERENCE_CKPT_KEY)
    hp = checkpoint.get("hyper_parameters") or {}
    if isinstance(saved, Mapping):
        if int(saved.get("version", 0)) > METADATA_VERSION:
            raise ValueError(
                f"{p}: {INFERENCE_CKPT_KEY!r} version {saved.get('version')} is newer than this "
                f"fastast_pl reads ({METADATA_VERSION}); upgrade fastast_pl"
            )
        info = InferenceInfo(
            p,
            "fastast",
            class_names=saved.get("class_names"),
            multi_label=saved.get("multi_label"),
            features=saved.get("features"),
            merge=saved.get("merge"),
            train_merge=saved.get("train_merge"),
        )
    else:  # written before checkpoints carried their inference settings
        sizes = {k: hp[k] for k in ("num_mel_bins", "target_length") if isinstance(hp.get(k), int)}
        info = InferenceInfo(
            p,
            "fastast-old",
            multi_label=hp.get("multi_label") if isinstance(hp.get("multi_label"), bool) else None,
            features=sizes or None,
            merge=hp.get("eval_merge") if hp.get("eval_merge") is not None else hp.get("merge"),
            train_merge=hp.get("merge"),
        )
    info.missing = _missing(info)
    return info


def _from_hf(p: Path, config_file: Path, extractor_file: Path) -> InferenceInfo:
    config = read_json(config_file)
    info = InferenceInfo(p, "hf")
    labels = config.get("id2label")
    if isinstance(labels, Mapping) and labels:
        by_index = {int(k): str(v) for k, v in labels.items()}
        if sorted(by_index) != list(range(len(by_index))):
            raise ValueError(
                f"{config_file}: id2label keys {sorted(by_index)[:10]} are not 0..{len(by_index) - 1}"
            )
        info.class_names = [by_index[i] for i in range(len(by_index))]
    problem = config.get("problem_type")
    if problem in ("multi_label_classification", "single_label_classification"):
        info.multi_label = problem == "multi_label_classification"
    if extractor_file.is_file():
        extractor = read_json(extractor_file)
        kind = extractor.get("feature_extractor_type")
        if kind == "ASTFeatureExtractor":
            info.features = _ast_extractor_features(extractor)
        else:
            log.warning(
                "%s: feature_extractor_type=%r, expected 'ASTFeatureExtractor'; its settings are "
                "not used",
                extractor_file,
                kind,
            )
    info.missing = _missing(info)
    return info


def _ast_extractor_features(extractor: Mapping[str, Any]) -> dict[str, Any]:
    """transformers' ``ASTFeatureExtractor`` settings as FeatureConfig fields.

    It takes the same Kaldi fbank as AST (25 ms Hanning window, 10 ms shift, htk_compat,
    no energy, waveform mean removed), pads/crops to ``max_length`` and normalises as
    ``(x - mean) / (2 * std)`` when ``do_normalize``; without it the fbank is used as is,
    which is mean 0, std 0.5 in that formula.
    """
    normalize = extractor.get("do_normalize", True)
    out: dict[str, Any] = {
        "mean": float(extractor["mean"]) if normalize else 0.0,
        "std": float(extractor["std"]) if normalize else 0.5,
    }
    for src, dst in (
        ("sampling_rate", "sample_rate"),
        ("num_mel_bins", "num_mel_bins"),
        ("max_length", "target_length"),
    ):
        if src in extractor:
            out[dst] = int(extractor[src])
    return out


def _missing(info: InferenceInfo) -> list[str]:
    missing = []
    if not info.class_names:
        missing.append("class names")
    features = info.features or {}
    if not {"mean", "std", "sample_rate"} <= set(features):
        missing.append("feature settings (sample rate, mean, std)")
    if info.multi_label is None:
        missing.append("label kind (single- or multi-label)")
    return missing
