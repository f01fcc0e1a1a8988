"""A Hugging Face audio classifier as a frozen waveform teacher (the teacher zoo).

wav2vec2, HuBERT, Whisper-encoder or CLAP-style classifiers do not read our fbank: each
has its own feature extractor and sample rate. Such a teacher hears each clip's waveform
(the batch's ``waveform``, at the data's sample rate; ``AudioDataModule(waveforms=True)``),
resampled with torchaudio to the extractor's ``sampling_rate`` and featurized by the
extractor, then classified by the model: the model's own pipeline, run by transformers'
classes (nothing of it is re-implemented here). An HF AST directory is not taken here: it
reads our fbank and loads into ``ASTModel`` (``models/frozen.py``). What waveform teachers
share (resampling after the torchaudio check, their TeacherInfo) is in ``waveform_teacher.py``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from fastast_pl.models.checkpoints.files import read_json
from fastast_pl.models.checkpoints.hub import looks_like_hub_id, resolve_source
from fastast_pl.models.checkpoints.metadata import id2label_names, named_classes
from fastast_pl.models.teacher import FrozenTeacher
from fastast_pl.models.waveform_teacher import (
    HF_WAVEFORM_KIND,
    checked_torchaudio,
    log_waveform_teacher,
    resample,
    waveform_teacher_info,
)

log = logging.getLogger(__name__)

_AST_MODEL_TYPE = "audio-spectrogram-transformer"


def is_waveform_teacher(source: str | os.PathLike) -> bool:
    """Whether ``source`` (a directory or hub id) is an HF audio classifier that reads
    waveforms: a model type ``AutoModelForAudioClassification`` builds, other than AST, with
    a feature extractor config beside it (one without it is refused, naming the file)."""
    text = os.fspath(source)
    if not (Path(text).is_dir() or (not Path(text).exists() and looks_like_hub_id(text))):
        return False
    path = resolve_source(text)
    if not path.is_dir() or not (path / "config.json").is_file():
        return False
    model_type = read_json(path / "config.json").get("model_type")
    if model_type in (None, _AST_MODEL_TYPE):
        return False  # an AST reads our fbank (models/frozen.py), without transformers
    has_extractor = (path / "preprocessor_config.json").is_file()
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES as AUDIO_CLASSIFIERS,
        )
    except ImportError as err:
        raise ImportError(
            f"{path} holds a {model_type!r} model; a Hugging Face teacher other than AST needs "
            "transformers (pip install 'fastast-pl[zoo]')"
        ) from err
    if model_type in AUDIO_CLASSIFIERS and not has_extractor:
        raise ValueError(
            f"{path} holds a {model_type!r} audio classifier but no preprocessor_config.json: "
            "a waveform teacher hears audio through its own feature extractor; save it beside "
            "the model (feature_extractor.save_pretrained(DIR))"
        )
    return model_type in AUDIO_CLASSIFIERS  # what AutoModelForAudioClassification builds


class HFWaveformTeacher(nn.Module):
    """``(B, N)`` waveforms at ``data_sample_rate`` -> ``(B, C)`` logits of an HF classifier."""

    def __init__(self, source: str | os.PathLike, data_sample_rate: int) -> None:
        super().__init__()
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        checked_torchaudio()  # before the first clip: a broken torchaudio fails here, with the fix
        path = resolve_source(source)
        self.extractor = AutoFeatureExtractor.from_pretrained(path)
        self.model = AutoModelForAudioClassification.from_pretrained(path).eval()
        self.sample_rate = int(self.extractor.sampling_rate)
        self.data_sample_rate = int(data_sample_rate)
        self.path = str(path)

    @torch.no_grad()
    def forward(self, waveform: Tensor) -> Tensor:
        """(B, N) waveforms -> (B, C) float32 logits (the extractor runs on the CPU)."""
        wave = resample(waveform.detach().float().cpu(), self.data_sample_rate, self.sample_rate)
        inputs = self.extractor(
            [row.numpy() for row in wave],
            sampling_rate=self.sample_rate,
            return_tensors="pt",
            padding=True,
        )
        device = next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items() if isinstance(v, Tensor)}
        return self.model(**inputs).logits.float()


def load_waveform_teacher(source: str | os.PathLike, data_sample_rate: int) -> FrozenTeacher:
    """The HF classifier at ``source`` as a frozen teacher that reads waveforms."""
    teacher = HFWaveformTeacher(source, data_sample_rate)
    config = teacher.model.config
    multi = {"multi_label_classification": True, "single_label_classification": False}
    info = waveform_teacher_info(
        kind=HF_WAVEFORM_KIND,
        num_classes=int(config.num_labels),
        multi_label=multi.get(str(getattr(config, "problem_type", None))),
        arch={"model_type": config.model_type, "sampling_rate": teacher.sample_rate},
        path=teacher.path,
        class_names=named_classes(id2label_names(config.id2label, teacher.path)),
    )
    what = f"HF {config.model_type} classifier (its own feature extractor)"
    log_waveform_teacher(log, what, info, data_sample_rate, teacher.sample_rate)
    return FrozenTeacher(teacher, info)
