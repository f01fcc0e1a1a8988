"""AudioClassifier: the user's own audio in, labels out, with the checkpoint's own settings.

Decoding and resampling (``data.audio``), the fbank and its normalisation
(``data.features``) are the training pipeline's own functions, driven by the feature
settings the checkpoint carries (``models.checkpoints.metadata``). A clip longer than the
model's input is covered by sliding windows whose scores are aggregated; a shorter one is
zero-padded before normalisation, exactly as in training, or run on fewer tokens
(``short_clips="crop-pos"`` or ``"merge-pad"``, ``fastast_pl.short_clips``). What
``predict`` accepts (files, folders, arrays) is made into checked waveforms, and the
feature settings ``from_pretrained`` is given are checked against the checkpoint's, in
``fastast_pl.inference_inputs``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch

from fastast_pl.data.audio import AudioDecodeError
from fastast_pl.data.features import FeatureConfig, compute_fbank, normalize, pad_or_crop
from fastast_pl.inference_inputs import (
    AudioInput,
    as_items,
    feature_fields,
    read_waveform,
    stored_features,
    warn_replaced_features,
    warn_replaced_labels,
)
from fastast_pl.models.ast import ASTModel
from fastast_pl.models.checkpoints import read_inference_info, resolve_source
from fastast_pl.short_clips import SHORT_CLIPS, clip_tokens, kept_frames, prepare, window_flops
from fastast_pl.tome import MergeSpec

log = logging.getLogger(__name__)


class ClassScore(NamedTuple):
    """One class of a prediction: its index, its name and its (aggregated) score."""

    index: int
    label: str
    score: float


@dataclass
class Prediction:
    """Scores of one input: ``top_k`` best classes, all ``scores`` (C,), windows used, the
    tokens they gave the transformer and its FLOPs (``short_clips.window_flops``).

    ``above_threshold``: for multi-label models, every class scoring at least the threshold
    (best first); None for single-label models.
    """

    source: str
    top_k: list[ClassScore]
    scores: torch.Tensor
    windows: int
    above_threshold: list[ClassScore] | None = None
    tokens: int = 0  # tokens entering the transformer, summed over the windows
    flops: int = 0  # FLOPs of the transformer blocks, summed over the windows


class AudioClassifier:
    """An ``ASTModel`` with the feature settings, class names and label kind it was trained with.

    Args:
        model: The AST (its merge schedule is used as set).
        features: Feature settings; ``num_mel_bins``/``target_length`` must fit the model.
        class_names: Name of every class by index (None: the indices, as text).
        multi_label: Sigmoid scores, max over windows (True) or softmax, mean (False).
        batch_size: Windows per forward pass.
        device: Where the model runs (default: CUDA when available, else CPU; int8: CPU).
        quantize: "int8": the model (its merge schedule as set) exported to ONNX with int8
            linear layers and run by ONNX Runtime on the CPU (``models.onnx``); scores
            differ slightly from float32 (``export --quantize int8 --check-audio`` measures
            by how much). None: the float model as it is.
        short_clips: A clip shorter than the window: "pad" (zero-padded to it, as in
            training, exact), "crop-pos" (run at its own length) or "merge-pad" (its
            padding-only patches merged into one token per frequency row first); both
            approximate, ``fastast_pl.short_clips``; a merge schedule then merges the same
            share of the fewer tokens.
    """

    def __init__(
        self,
        model: ASTModel,
        features: FeatureConfig,
        class_names: Sequence[str] | None = None,
        multi_label: bool = False,
        batch_size: int = 8,
        device: str | torch.device | None = None,
        quantize: Literal["int8"] | None = None,
        short_clips: Literal["pad", "crop-pos", "merge-pad"] = "pad",
    ) -> None:
        if features.num_mel_bins != model.input_fdim or features.target_length != model.input_tdim:
            raise ValueError(
                f"features give {features.target_length} frames x {features.num_mel_bins} mel "
                f"bins, the model takes input_tdim={model.input_tdim}, "
                f"input_fdim={model.input_fdim}"
            )
        if class_names is not None and len(class_names) != model.num_classes:
            raise ValueError(
                f"{len(class_names)} class names for a model with {model.num_classes} outputs"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if quantize not in (None, "int8"):
            raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
        default = "cpu" if quantize or not torch.cuda.is_available() else "cuda"
        self.device = torch.device(device or default)
        if short_clips not in SHORT_CLIPS:
            raise ValueError(f"short_clips must be one of {SHORT_CLIPS}, got {short_clips!r}")
        if quantize and short_clips != "pad":
            raise ValueError(
                f"short_clips={short_clips!r} gives the transformer fewer tokens for a short "
                "clip; quantize='int8' runs an ONNX graph exported for the window's fixed "
                "length and tokens: use short_clips='pad' with int8"
            )
        if quantize and self.device.type != "cpu":
            raise ValueError(f"quantize='int8' runs on the CPU (ONNX Runtime), not {self.device}")
        self.model = model.eval().to(self.device)
        self.quantize = quantize
        self.short_clips = short_clips
        prepare(self.model, short_clips)
        self._forward = self.model
        if quantize == "int8":
            from fastast_pl.models.onnx import int8_onnx_model

            self._forward = int8_onnx_model(self.model, model.input_tdim, model.input_fdim)
        self.features = features
        self.class_names = (
            [str(i) for i in range(model.num_classes)] if class_names is None else list(class_names)
        )
        self.multi_label = multi_label
        self.batch_size = batch_size

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | os.PathLike,
        *,
        merge: MergeSpec | None = None,
        features: FeatureConfig | Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        multi_label: bool | None = None,
        batch_size: int = 8,
        device: str | torch.device | None = None,
        quantize: Literal["int8"] | None = None,
        short_clips: Literal["pad", "crop-pos", "merge-pad"] = "pad",
        **model_overrides: Any,
    ) -> AudioClassifier:
        """Load a checkpoint (path or HF hub id) with the settings it carries.

        ``merge`` (default: the schedule the checkpoint was evaluated with), ``features``
        (a FeatureConfig or some of its fields), ``class_names`` and ``multi_label`` replace
        what the checkpoint says, and must be given where it says nothing (older
        checkpoints, official releases); ``quantize`` and ``short_clips`` as in the class;
        ``model_overrides`` go to ``ASTModel.from_pretrained``.
        """
        local = resolve_source(path_or_name)
        info = read_inference_info(local)
        given = feature_fields(features)
        stored = stored_features(local, info.features)
        warn_replaced_features(path_or_name, stored, given)
        settings = {**stored, **given}
        missing = [k for k in ("sample_rate", "mean", "std") if k not in settings]
        if missing:
            raise ValueError(
                f"{path_or_name}: this {info.kind} checkpoint does not carry its feature settings "
                f"({', '.join(info.missing) or ', '.join(missing)}); pass "
                f"features={{'sample_rate': ..., 'mean': ..., 'std': ...}} with the values it was "
                'trained with (CLI: --features \'{"sample_rate": 16000, "mean": ..., "std": ...}\' '
                "or a JSON file; `python -m fastast_pl stats --config ...` computes mean/std)"
            )
        for key in ("target_length", "num_mel_bins"):
            if key in settings:
                arg = "input_tdim" if key == "target_length" else "input_fdim"
                model_overrides.setdefault(arg, int(settings[key]))
        spec = merge if merge is not None else (info.merge if info.merge is not None else 0)
        model = ASTModel.from_pretrained(local, merge=spec, **model_overrides)
        settings.setdefault("target_length", model.input_tdim)
        settings.setdefault("num_mel_bins", model.input_fdim)
        warn_replaced_labels(path_or_name, info, class_names, multi_label)
        names = class_names if class_names is not None else info.class_names
        if names is None:
            log.warning(
                "%s: no class names in the checkpoint; classes are named by index (pass "
                "class_names=[...], CLI --class-names FILE)",
                path_or_name,
            )
        kind = multi_label if multi_label is not None else info.multi_label
        if kind is None:
            log.warning(
                "%s: the checkpoint does not say whether it is single- or multi-label; scoring "
                "as single-label (softmax). Pass multi_label=True (CLI --label-kind multi) for "
                "a multi-label model",
                path_or_name,
            )
        log.info(
            "%s: %s checkpoint, %d classes, %s, merge r per layer %s",
            path_or_name,
            info.kind,
            model.num_classes,
            "multi-label" if kind else "single-label",
            model.merge_schedule().r,
        )
        features = FeatureConfig(**settings)
        return cls(model, features, names, bool(kind), batch_size, device, quantize, short_clips)

    @property
    def sample_rate(self) -> int:
        """Rate (Hz) waveforms given to ``predict`` must have (files are resampled)."""
        return self.features.sample_rate

    # ------------------------------------------------------------------ features
    def windows(self, waveform: torch.Tensor, hop: float | None = None) -> torch.Tensor:
        """Normalised fbank windows ``(W, T, F)`` covering a ``(1, N)`` waveform.

        Windows of ``target_length`` frames start every ``hop`` seconds (default: half a
        window); the last one ends at the clip's end. A clip of at most one window gives
        one, zero-padded before normalisation as in training (``short_clips="crop-pos"``:
        only to the end of its last patch column, ``short_clips.kept_frames``).
        """
        return self._windows(waveform, hop)[0]

    def _windows(self, waveform: torch.Tensor, hop: float | None) -> tuple[torch.Tensor, int]:
        """``windows`` and the clip's own fbank frames."""
        cfg = self.features
        length = cfg.target_length
        hop_frames = length // 2 if hop is None else round(hop * 1000.0 / cfg.frame_shift)
        if hop_frames < 1:
            raise ValueError(f"hop={hop} s is shorter than one frame ({cfg.frame_shift} ms)")
        raw = compute_fbank(waveform, cfg)  # (frames, F), unpadded, no dither
        frames = raw.shape[0]
        if frames < length and self.short_clips == "crop-pos":
            length = kept_frames(self.model, frames)
        starts = [0] if frames <= length else list(range(0, frames - length + 1, hop_frames))
        if starts[-1] + length < frames:
            starts.append(frames - length)  # cover the tail
        padded = torch.stack(
            [pad_or_crop(raw[s : s + length], length) for s in starts]
        )  # (W, T, F)
        return normalize(padded, cfg.mean, cfg.std).float(), frames

    # ------------------------------------------------------------------ predicting
    @torch.inference_mode()
    def predict(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        *,
        top_k: int = 5,
        hop: float | None = None,
        aggregate: Literal["mean", "max"] | None = None,
        threshold: float = 0.5,
        batch_size: int | None = None,
        on_bad_audio: Literal["raise", "skip"] = "raise",
        progress: bool = False,
    ) -> list[Prediction]:
        """Top-k classes of each input: audio files, folders of them, or waveforms.

        Waveforms (tensors/arrays) must be at ``self.sample_rate``, shaped ``(samples,)``
        or ``(channels, samples)`` (at most ``inference_inputs.MAX_CHANNELS`` channels,
        fewer channels than samples; transpose a soundfile ``(samples, channels)`` array);
        float in [-1, 1] (peak above ``FULL_SCALE_LIMIT`` refused) or signed integer PCM,
        scaled by its dtype's full scale as soundfile scales integer files. ``aggregate``
        combines the window scores (default: max for multi-label, mean for single-label).

        Bad audio files (undecodable, missing, truncated, NaN/inf, shorter than one fbank
        window: ``data.checks.bad_audio_reason``, as in training and ``check-data``): the
        default here, ``on_bad_audio="raise"``, stops at the first with an
        ``AudioDecodeError`` naming it; ``"skip"`` logs each by name and leaves it out.
        (The ``classify`` CLI defaults to skip.)
        """
        if on_bad_audio not in ("raise", "skip"):
            raise ValueError(f"on_bad_audio must be 'raise' or 'skip', got {on_bad_audio!r}")
        aggregate = aggregate or ("max" if self.multi_label else "mean")
        if aggregate not in ("mean", "max"):
            raise ValueError(f"aggregate must be 'mean' or 'max', got {aggregate!r}")
        window_s = self.features.target_length * self.features.frame_shift / 1000.0
        if hop is not None and hop > window_s:
            log.warning("hop=%s s is longer than the model's %.2f s window: the audio between "
                        "windows of a long clip is not heard", hop, window_s)  # fmt: skip
        items = as_items(inputs)
        batch = batch_size or self.batch_size
        results: list[Prediction | None] = []
        pending: list[tuple[int, str, torch.Tensor, int]] = []  # (slot, source, windows, frames)
        for item in _track(items, progress):
            source = (
                str(item) if isinstance(item, (str, os.PathLike)) else f"waveform {len(results)}"
            )
            try:
                wave = read_waveform(item, self.sample_rate, self.features.frame_length)
                windows, frames = self._windows(wave, hop)
            except AudioDecodeError as err:
                if on_bad_audio == "raise":
                    raise
                log.warning("%s; left out", err)
                continue
            pending.append((len(results), source, windows, frames))
            results.append(None)
            if sum(w.shape[0] for _, _, w, _ in pending) >= batch:
                self._score(pending, results, batch, aggregate, top_k, threshold)
                pending = []
        self._score(pending, results, batch, aggregate, top_k, threshold)
        return [r for r in results if r is not None]

    def _score(self, pending, results, batch, aggregate, top_k, threshold) -> None:
        """Run the pending windows in batches and fill their files' predictions."""
        if not pending:
            return
        by_run: dict[tuple[int, int | None], list[int]] = {}  # (T, merge-pad frames) -> items
        for k, (_, _, windows, frames) in enumerate(pending):
            short = self.short_clips == "merge-pad" and frames < self.features.target_length
            by_run.setdefault((windows.shape[1], frames if short else None), []).append(k)
        parts: dict[int, torch.Tensor] = {}
        for (length, clip_frames), items in by_run.items():
            stacked = torch.cat([pending[k][2] for k in items])  # (sum W, T, F)
            run = self._forward
            if length < self.features.target_length:  # crop-pos
                run = functools.partial(self.model, crop_time=True)
            elif clip_frames is not None:
                run = functools.partial(self.model, clip_frames=clip_frames)
            out = torch.cat(
                [
                    run(stacked[i : i + batch].to(self.device)).float().cpu()
                    for i in range(0, len(stacked), batch)
                ]
            )  # (sum W, C)
            for k, piece in zip(items, out.split([pending[k][2].shape[0] for k in items])):
                parts[k] = piece
        logits = torch.cat([parts[k] for k in range(len(pending))])  # (sum W, C)
        probs = torch.sigmoid(logits) if self.multi_label else logits.softmax(dim=-1)
        start = 0
        for slot, source, windows, frames in pending:
            part = probs[start : start + windows.shape[0]]  # (W, C)
            start += windows.shape[0]
            scores = part.mean(dim=0) if aggregate == "mean" else part.amax(dim=0)  # (C,)
            pred = self._prediction(source, scores, windows.shape[0], top_k, threshold)
            tokens = clip_tokens(self.model, frames, self.short_clips)  # per window
            pred.tokens = windows.shape[0] * tokens
            pred.flops = windows.shape[0] * window_flops(self.model, tokens)
            results[slot] = pred

    def _prediction(self, source, scores, windows, top_k, threshold) -> Prediction:
        values, indices = scores.topk(min(top_k, scores.numel()))
        best = [self._class(i, v) for v, i in zip(values.tolist(), indices.tolist())]
        above = None
        if self.multi_label:
            order = scores.argsort(descending=True, stable=True).tolist()
            above = [self._class(i, float(scores[i])) for i in order if scores[i] >= threshold]
        return Prediction(source, best, scores, windows, above)

    def _class(self, index: int, score: float) -> ClassScore:
        return ClassScore(int(index), self.class_names[index], float(score))


def _track(items: list[AudioInput], progress: bool) -> Iterable[AudioInput]:
    if not progress:
        return items
    from rich.progress import track

    return track(items, description="classifying", transient=True)
