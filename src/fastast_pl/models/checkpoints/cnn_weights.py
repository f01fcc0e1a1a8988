"""Starting weights of the CNN teacher: a TeacherModule checkpoint, a timm checkpoint of the
backbone, or PSLA's released EfficientNet (``efficientnet_pytorch`` key layout).

Why the variant is checked: timm's ``efficientnet_bX`` and ``tf_efficientnet_bX`` have the
same keys and shapes but different padding (symmetric vs TensorFlow "same") and BatchNorm
eps (1e-5 vs 1e-3). Weights trained as one load into the other without an error and then
give other feature maps. So the architecture a file records (timm's ``config.json`` /
``pretrained_cfg``, the ``arch`` of timm's training checkpoints, a TeacherModule's backbone)
must name the configured backbone, else the file is refused naming both. PSLA (Gong et al.
2021, "PSLA: Improving Audio Tagging with Pretraining, Sampling, Labeling, and
Aggregation") trains ``efficientnet_pytorch``'s EfficientNet, a port of the TensorFlow
model (same padding, eps 1e-3): its layout records ``tf_efficientnet_bX``, X read from the
number of blocks and head channels.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fastast_pl.models.checkpoints.files import (
    load_hf_weights,
    load_safetensors,
    load_state_dict_named,
    load_torch,
    read_json,
)
from fastast_pl.models.checkpoints.hub import resolve_source
from fastast_pl.models.checkpoints.teacher import read_teacher_checkpoint

log = logging.getLogger(__name__)

#: What ``init_from`` reads, for error messages.
CNN_FORMATS = (
    "Expected a TeacherModule checkpoint (.ckpt), a timm checkpoint of the backbone (a "
    "directory or hub id with config.json, or a .pth/.safetensors state dict) or PSLA's "
    "EfficientNet checkpoint (efficientnet_pytorch keys, e.g. 'module.effnet._conv_stem.weight')."
)

#: (blocks, head channels) of EfficientNet-B0..B7 (Tan & Le 2019 compound scaling; the
#: head widths are PSLA's ``middim``): how a PSLA checkpoint says which B it is.
_EFFICIENTNET_B = {
    (16, 1280): 0,
    (23, 1280): 1,
    (23, 1408): 2,
    (26, 1536): 3,
    (32, 1792): 4,
    (39, 2048): 5,
    (45, 2304): 6,
    (55, 2560): 7,
}

# efficientnet_pytorch's names -> timm's (stem/head, and the two kinds of block).
_TOP = {"_conv_stem.": "conv_stem.", "_bn0.": "bn1.", "_conv_head.": "conv_head.", "_bn1.": "bn2."}
_DEPTHWISE_BLOCK = {  # expand ratio 1: timm DepthwiseSeparableConv
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn1.",
    "_se_reduce.": "se.conv_reduce.",
    "_se_expand.": "se.conv_expand.",
    "_project_conv.": "conv_pw.",
    "_bn2.": "bn2.",
}
_INVERTED_BLOCK = {  # timm InvertedResidual
    "_expand_conv.": "conv_pw.",
    "_bn0.": "bn1.",
    "_depthwise_conv.": "conv_dw.",
    "_bn1.": "bn2.",
    "_se_reduce.": "se.conv_reduce.",
    "_se_expand.": "se.conv_expand.",
    "_project_conv.": "conv_pwl.",
    "_bn2.": "bn3.",
}


@dataclass
class CNNWeights:
    """What a starting-weights file holds, before it meets the model.

    ``layout``: "teacher" (a TeacherModule's CNNTeacher keys), "timm" (the backbone's timm
    keys) or "psla" (efficientnet_pytorch keys of the backbone, ``attention.*`` of PSLA's
    head); ``architecture``: the backbone the file records, None where it records none.
    """

    state: dict[str, Tensor]
    layout: str
    architecture: str | None
    path: str
    class_names: list[str] | None = None  # the head's classes, where the file names them


def variant(name: str) -> str:
    """A timm model name without its pretrained tag: "tf_efficientnet_b2.ns_jft_in1k" ->
    "tf_efficientnet_b2"."""
    return name.split(".", 1)[0]


def read_cnn_weights(source: str | os.PathLike) -> CNNWeights:
    """Read a starting-weights file (or HF/timm directory, or hub id) and what it records."""
    path = resolve_source(source)
    if path.is_dir():
        config = read_json(path / "config.json") if (path / "config.json").is_file() else {}
        arch = config.get("architecture") or (config.get("pretrained_cfg") or {}).get(
            "architecture"
        )
        return _classify(load_hf_weights(path), arch, str(path))
    if path.suffix == ".safetensors":
        return _classify(load_safetensors(path), None, str(path))
    obj = load_torch(path, expected=CNN_FORMATS, trusted=path.suffix == ".ckpt")
    if isinstance(obj, dict) and "state_dict" in obj and "pytorch-lightning_version" in obj:
        info, state = read_teacher_checkpoint(path)
        backbone = str(info.arch.get("backbone"))
        return CNNWeights(state, "teacher", backbone, str(path), info.class_names)
    arch = None
    if isinstance(obj, dict):
        arch = obj.get("arch") or (obj.get("pretrained_cfg") or {}).get("architecture")
        for key in ("state_dict_ema", "state_dict", "model"):  # timm train.py, others
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: found no state dict of tensors. {CNN_FORMATS}")
    return _classify(dict(obj), arch, str(path))


def _classify(state: dict[str, Tensor], arch: Any, path: str) -> CNNWeights:
    state = {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel saves
    if "effnet._conv_stem.weight" in state or "_conv_stem.weight" in state:
        state = {k.removeprefix("effnet."): v for k, v in state.items()}
        return CNNWeights(state, "psla", _psla_variant(state, path), path)
    return CNNWeights(state, "timm", str(arch) if arch else None, path)


def _psla_variant(state: dict[str, Tensor], path: str) -> str:
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k))}
    head = state.get("_conv_head.weight")
    found = (len(blocks), int(head.shape[0]) if head is not None else 0)
    if found not in _EFFICIENTNET_B:
        raise ValueError(
            f"{path}: efficientnet_pytorch layout with {found[0]} blocks and {found[1]} head "
            f"channels, which is none of EfficientNet-B0..B7 {sorted(_EFFICIENTNET_B)}"
        )
    return f"tf_efficientnet_b{_EFFICIENTNET_B[found]}"


def check_variant(weights: CNNWeights, backbone: str) -> None:
    """Refuse a file recording another backbone than ``backbone``, naming both."""
    if weights.architecture is None:
        log.warning(
            "%s records no architecture: loaded into %r as it is. Make sure it was trained as "
            "%r (efficientnet_bX and tf_efficientnet_bX share keys and shapes but not padding "
            "and BatchNorm eps)",
            weights.path,
            backbone,
            backbone,
        )
        return
    if variant(weights.architecture) != variant(backbone):
        hint = (
            " (PSLA's EfficientNet is a TensorFlow port: same padding, BatchNorm eps 1e-3)"
            if weights.layout == "psla"
            else ""
        )
        raise ValueError(
            f"{weights.path} holds a {variant(weights.architecture)!r} backbone{hint}, but the "
            f"teacher is configured as {variant(backbone)!r}; set teacher.backbone: "
            f"{variant(weights.architecture)} (same keys and shapes would load without error "
            "and compute something else)"
        )


def psla_backbone_state(state: dict[str, Tensor], stage_sizes: list[int]) -> dict[str, Tensor]:
    """efficientnet_pytorch's flat ``_blocks.N.*`` -> timm's ``blocks.S.I.*`` (stages of
    ``stage_sizes`` blocks, in order); the classifier ``_fc`` is dropped."""
    where = [(s, i) for s, size in enumerate(stage_sizes) for i in range(size)]
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key.startswith(("_fc.", "attention.", "avgpool.")):
            continue
        match = re.match(r"_blocks\.(\d+)\.(.*)", key)
        if match is None:
            out[_rename(key, _TOP, key)] = value
            continue
        n, rest = int(match.group(1)), match.group(2)
        if n >= len(where):
            raise ValueError(f"block {n} of the file, but the model has {len(where)} blocks")
        expands = f"_blocks.{n}._expand_conv.weight" in state
        stage, index = where[n]
        names = _INVERTED_BLOCK if expands else _DEPTHWISE_BLOCK
        out[f"blocks.{stage}.{index}." + _rename(rest, names, key)] = value
    return out


def _rename(key: str, names: dict[str, str], full: str) -> str:
    for old, new in names.items():
        if key.startswith(old):
            return new + key[len(old) :]
    raise ValueError(f"efficientnet_pytorch key {full!r} has no timm counterpart")


def psla_head_state(state: dict[str, Tensor]) -> tuple[dict[str, Tensor] | None, str]:
    """PSLA's attention head -> our ``AttentionPooling`` keys, or (None, why not).

    PSLA's head h gives clip scores p_h from 1x1 convolutions ``att.h``/``cla.h`` and mixes
    them with raw weights w_h; ours mixes with softmax(head_logits), so w is carried over
    exactly as head_logits = log w only when every w_h > 0 and they sum to one.
    """
    if "attention.head_weight" in state:
        heads = sorted({int(k.split(".")[2]) for k in state if k.startswith("attention.att.")})
        weights = state["attention.head_weight"].float()
        if (weights <= 0).any() or not math.isclose(float(weights.sum()), 1.0, abs_tol=1e-5):
            return None, f"its head weights {weights.tolist()} are not a convex combination"
        head_logits = weights.log()
    elif "attention.att.weight" in state:  # single-head Attention
        heads, head_logits = [None], torch.zeros(1)  # type: ignore[list-item]
    else:
        return None, "it has no attention head (PSLA mean pooling differs from ours)"

    def stacked(role: str, part: str) -> Tensor:
        rows = [
            state[f"attention.{role}." + (f"{h}." if h is not None else "") + part] for h in heads
        ]
        return torch.cat([r.flatten(1) if r.ndim > 1 else r for r in rows])  # (H*K, C) / (H*K,)

    head = {
        f"{role}.{part}": stacked(role, part)
        for role in ("att", "cla")
        for part in ("weight", "bias")
    }
    head["head_logits"] = head_logits
    return head, ""


def init_cnn_teacher(
    teacher: nn.Module, source: str | os.PathLike, backbone: str
) -> list[str] | None:
    """Load starting weights into a ``CNNTeacher`` (its ``backbone`` and ``head``); return
    the class names the loaded head was trained for where the file names them (a
    TeacherModule checkpoint's record), else None, for the caller to check against the data.

    The backbone must load completely (strict; a 3-channel first convolution is adapted to
    one channel by timm's ``adapt_input_conv``, the ImageNet classifier dropped). The head is
    loaded where the file has one of the same shapes (same pooling, heads and classes);
    otherwise it starts fresh, and the log says why.
    """
    from timm.models import adapt_input_conv

    weights = read_cnn_weights(source)
    check_variant(weights, backbone)
    model_backbone = teacher.backbone
    head: dict[str, Tensor] | None = None
    why = ""
    if weights.layout == "teacher":
        state = {k[9:]: v for k, v in weights.state.items() if k.startswith("backbone.")}
        head = {k[5:]: v for k, v in weights.state.items() if k.startswith("head.")}
    elif weights.layout == "psla":
        sizes = [len(stage) for stage in model_backbone.blocks]
        state = psla_backbone_state(weights.state, sizes)
        head, why = psla_head_state(weights.state)
    else:
        cfg = getattr(model_backbone, "pretrained_cfg", {}) or {}
        classifier, first_conv = cfg.get("classifier"), cfg.get("first_conv")
        state = {
            k: v
            for k, v in weights.state.items()
            if not (classifier and k.startswith(f"{classifier}."))
        }
        key = f"{first_conv}.weight"
        expected = model_backbone.state_dict().get(key)
        if key in state and expected is not None and state[key].shape[1] != expected.shape[1]:
            state[key] = adapt_input_conv(expected.shape[1], state[key])
        why = "a timm backbone checkpoint has no pooling head"
    what = f"the {variant(backbone)} backbone ({weights.layout} layout)"
    load_state_dict_named(model_backbone, state, weights.path, what)
    own = teacher.head.state_dict()
    if head is not None:
        fits = set(head) == set(own) and all(head[k].shape == own[k].shape for k in own)
        if fits:
            teacher.head.load_state_dict(head)
        else:
            why = (
                f"its head {sorted((k, tuple(v.shape)) for k, v in head.items())[:3]} does not "
                f"fit ours {sorted((k, tuple(v.shape)) for k, v in own.items())[:3]} "
                "(other pooling, heads or classes)"
            )
    loaded = head is not None and not why
    log.info(
        "teacher initialised from %s: %s loaded; pooling head %s",
        weights.path,
        what,
        "loaded" if loaded else f"fresh ({why})",
    )
    return weights.class_names if loaded else None
