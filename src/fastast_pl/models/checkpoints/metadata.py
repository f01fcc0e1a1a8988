"""What inference needs besides the weights: class names, feature settings, label kind, merge.

Our Lightning checkpoints give it from their record (``record.py``: class names, label kind,
the training data's feature settings, the evaluation and training merge schedules).

HF transformers models give the same from ``config.json`` (``id2label``, ``problem_type``) and
``preprocessor_config.json`` (AST feature extractor: ``sampling_rate``, ``num_mel_bins``,
``max_length``, ``mean``, ``std``, ``do_normalize``). Anything a file does not say is None;
the caller decides what must then be given. Plain values only: ``models/`` never imports
``data/``, so the feature settings stay a dict here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastast_pl.models.checkpoints.files import read_json, read_lightning
from fastast_pl.models.checkpoints.hub import resolve_source
from fastast_pl.models.checkpoints.record import old_version_note, record_of

log = logging.getLogger(__name__)


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


#: Files a user may hand over for a checkpoint that are none (``export`` writes the first
#: two and a ``.json`` sidecar beside them; an HF model is its directory, not its config).
_NOT_CHECKPOINTS = {
    ".onnx": "an ONNX model (python -m fastast_pl export writes them)",
    ".pt2": "a torch.export program (python -m fastast_pl export writes them)",
    ".json": "a JSON file (an export's sidecar, or an HF config: its directory is the model)",
}


def read_inference_info(path_or_id: str | os.PathLike) -> InferenceInfo:
    """The inference settings stored with a checkpoint (path or hub id); never the weights."""
    p = resolve_source(path_or_id)
    if p.suffix in _NOT_CHECKPOINTS:
        raise ValueError(
            f"{p} is {_NOT_CHECKPOINTS[p.suffix]}, not a checkpoint: give the checkpoint itself "
            "(a .ckpt, a state dict, an HF model directory or hub id); an exported model runs "
            "in its own runtime (README, 'Exporting a model'), and classify --quantize int8 "
            "runs a checkpoint as int8 ONNX"
        )
    if p.is_dir():
        return _from_hf(p, p / "config.json", p / "preprocessor_config.json")
    if p.suffix == ".ckpt":
        return _from_lightning(p, read_lightning(p, mmap=True))
    if (p.parent / "config.json").is_file() and p.suffix in (".bin", ".safetensors"):
        return _from_hf(p, p.parent / "config.json", p.parent / "preprocessor_config.json")
    return InferenceInfo(p, "state-dict", missing=["class names", "feature settings", "label kind"])


def _from_lightning(p: Path, checkpoint: Mapping[str, Any]) -> InferenceInfo:
    record = record_of(checkpoint, p)
    features = record.features
    if features is None:  # no record: the sizes Lightning's hyper-parameters give
        sizes = {"num_mel_bins": record.num_mel_bins, "target_length": record.target_length}
        features = {k: v for k, v in sizes.items() if v is not None} or None
    info = InferenceInfo(
        p,
        "fastast" if record.version is not None else "fastast-old",
        class_names=record.class_names,
        multi_label=record.multi_label,
        features=features,
        merge=record.merge,
        train_merge=record.train_merge,
    )
    info.missing = _missing(info)
    note = old_version_note(checkpoint)
    if note:
        info.missing.append(f"({note})")
    return info


def id2label_names(labels: Any, where: Any) -> list[str] | None:
    """An HF config's ``id2label`` as class names by index (keys read as ints, in index
    order, whatever order the file lists them in); None without one. ``where`` names the
    file in the error for keys that are not 0..N-1."""
    if not isinstance(labels, Mapping) or not labels:
        return None
    by_index = {int(k): str(v) for k, v in labels.items()}
    if sorted(by_index) != list(range(len(by_index))):
        raise ValueError(
            f"{where}: id2label keys {sorted(by_index)[:10]} are not 0..{len(by_index) - 1}"
        )
    return [by_index[i] for i in range(len(by_index))]


def named_classes(names: list[str] | None) -> list[str] | None:
    """``names`` unless they are HF's placeholders ``LABEL_0``, ``LABEL_1``, ... (a config
    saved without ``id2label``), which name no class: None then."""
    if names is None or names == [f"LABEL_{i}" for i in range(len(names))]:
        return None
    return names


def _from_hf(p: Path, config_file: Path, extractor_file: Path) -> InferenceInfo:
    config = read_json(config_file)
    info = InferenceInfo(p, "hf")
    info.class_names = id2label_names(config.get("id2label"), config_file)
    problem = config.get("problem_type")
    if problem in ("multi_label_classification", "single_label_classification"):
        info.multi_label = problem == "multi_label_classification"
    if extractor_file.is_file():
        extractor = read_json(extractor_file)
        kind = extractor.get("feature_extractor_type")
        if kind == "ASTFeatureExtractor":
            info.features = _ast_extractor_features(extractor)
            _warn_disagreement(config, config_file, info.features, extractor_file)
        else:
            log.warning(
                "%s: feature_extractor_type=%r, expected 'ASTFeatureExtractor'; its settings are "
                "not used",
                extractor_file,
                kind,
            )
    info.missing = _missing(info)
    return info


def _warn_disagreement(
    config: Mapping[str, Any], config_file: Path, features: Mapping[str, Any], extractor_file: Path
) -> None:
    """Warn where the extractor's input size is not the one the model was built for: HF's
    own AST then fails on the shapes; here the extractor's size is used and the positional
    embedding adapted to it (``ASTModel.from_pretrained``), which the model never saw."""
    for own, key in (("max_length", "target_length"), ("num_mel_bins", "num_mel_bins")):
        built, fed = config.get(own), features.get(key)
        if built is not None and fed is not None and int(built) != int(fed):
            log.warning(
                "%s: %s %s, but %s builds the model for %s %s: its positional embedding is "
                "adapted to the extractor's %s (pass the size you mean with --features / "
                "features=, or make the two files agree)",
                extractor_file, own, fed, config_file, own, built, fed,
            )  # fmt: skip


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
