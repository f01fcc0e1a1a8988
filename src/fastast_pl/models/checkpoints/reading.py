"""``read_checkpoint``: any supported file -> a ``Checkpoint`` in ``ASTModel`` key names.

The format is detected from the keys (never from the file name alone); the architecture
is read from the file's metadata where it has some (HF ``config.json``, our Lightning
checkpoints' record, ``record.py``) and from the tensor shapes otherwise, with the assumptions logged.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fastast_pl.models.arch import patch_grid, size_name
from fastast_pl.models.checkpoints.files import (
    AST_FORMATS,
    is_tensor_dict,
    load_hf_weights,
    load_safetensors,
    load_torch,
    read_json,
)
from fastast_pl.models.checkpoints.formats import (
    HF_PREFIX,
    PREFIX_TOKENS,
    blocks_depth,
    convert_deit,
    convert_hf,
    convert_official,
    lightning_prefix,
    require,
    unknown_format,
)
from fastast_pl.models.checkpoints.hub import resolve_source
from fastast_pl.models.checkpoints.record import record_of

log = logging.getLogger(__name__)

# HF ASTConfig defaults, for config.json files that leave a field out.
_HF_DEFAULTS = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "patch_size": 16,
    "qkv_bias": True,
    "frequency_stride": 10,
    "time_stride": 10,
    "max_length": 1024,
    "num_mel_bins": 128,
}


@dataclass
class Checkpoint:
    """A checkpoint in ``ASTModel`` key names, with what could be learnt about its model.

    ``grid``: (frequency, time) patch grid of the stored ``pos_embed``. ``config``: the
    ``ASTModel`` arguments the checkpoint implies (overridable). ``num_classes``: classes of
    the stored head, None when it has no audio head (ImageNet DeiT).
    """

    path: Path
    format: str
    state_dict: dict[str, torch.Tensor]
    grid: tuple[int, int]
    config: dict[str, object] = field(default_factory=dict)
    num_classes: int | None = None
    known: frozenset[str] = frozenset()  # config fields read from metadata, not assumed


def _grid(
    path: Path, num_patches: int, fdim: int, fstride: int, patch_size: int
) -> tuple[int, int]:
    """(f, t) patch grid of ``num_patches`` tokens, given the checkpoint's mel bins and stride."""
    f = patch_grid(fdim, patch_size, fstride)
    if f < 1 or num_patches % f != 0:
        raise ValueError(
            f"{path}: pos_embed has {num_patches} patch positions, which is not a whole number "
            f"of time steps for {f} frequency patches (input_fdim={fdim}, fstride={fstride}, "
            f"patch_size={patch_size}); pass checkpoint_fdim=/checkpoint_fstride= with the checkpoint's mel bins and stride"
        )
    return f, num_patches // f


def _min_length(n: int, patch_size: int, stride: int) -> int:
    """Shortest input giving ``n`` patches (any length up to ``+ stride - 1`` gives the same)."""
    return (n - 1) * stride + patch_size


def _shape_config(
    sd: Mapping[str, torch.Tensor], num_heads: int | None
) -> tuple[dict[str, object], bool]:
    """Model sizes read from the tensor shapes; returns (config, heads_were_assumed)."""
    embed_dim = sd["cls_token"].shape[-1]
    depth = blocks_depth(sd)
    assumed = num_heads is None
    heads = embed_dim // 64 if num_heads is None else num_heads
    cfg: dict[str, object] = {"embed_dim": embed_dim, "depth": depth, "num_heads": max(heads, 1)}
    fc1 = sd.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        cfg["mlp_ratio"] = fc1.shape[0] / embed_dim
    cfg["qkv_bias"] = "blocks.0.attn.qkv.bias" in sd
    proj = sd.get("patch_embed.proj.weight")
    if proj is not None:
        cfg["patch_size"] = proj.shape[-1]
    name = size_name(embed_dim, depth, cfg["num_heads"])
    if name is not None:
        cfg["size"] = name
    return cfg, assumed


def read_checkpoint(
    path: str | os.PathLike,
    *,
    fdim: int | None = None,
    fstride: int | None = None,
    num_heads: int | None = None,
    model_fdim: int | None = None,
    model_fstride: int | None = None,
) -> Checkpoint:
    """Load any supported checkpoint (a path or an HF hub model id) in ``ASTModel`` key names.

    Where the file does not store the mel bins and frequency stride it was trained with
    (official releases, plain state dicts), ``fdim``/``fstride`` give them; otherwise an
    official AST checkpoint is taken to be 128/10 (all of its releases are) and a plain state
    dict to match the model it is loaded into (``model_fdim``/``model_fstride``, else
    128/10). ``num_heads`` likewise (default ``embed_dim // 64``, the DeiT/AST rule).
    """
    p = resolve_source(path)  # a local path, else a Hugging Face hub model id
    hints = {
        "fdim": fdim,
        "fstride": fstride,
        "num_heads": num_heads,
        "model_fdim": model_fdim,
        "model_fstride": model_fstride,
    }
    if p.is_dir():
        config_file = p / "config.json"
        if not config_file.is_file():
            found = sorted(x.name for x in p.iterdir())[:10]
            raise FileNotFoundError(
                f"{p}: a directory is read as an HF transformers model and needs config.json; "
                f"found {found}. {AST_FORMATS}"
            )
        return _from_hf(p, read_json(config_file), load_hf_weights(p))
    raw = load_safetensors(p) if p.suffix == ".safetensors" else load_torch(p)
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"{p}: expected a state dict (a mapping of names to tensors), found a "
            f"{type(raw).__name__}. {AST_FORMATS}"
        )
    if "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        return _from_lightning(p, raw, hints)
    if not is_tensor_dict(raw) and is_tensor_dict(raw.get("model")):
        raw = raw["model"]  # DeiT's own releases wrap the state dict as {"model": ...}
    if not is_tensor_dict(raw):
        raise unknown_format(p, raw, "not a mapping of names to tensors")
    keys = list(raw)
    if any(k.startswith(HF_PREFIX) for k in keys):
        config_file = p.parent / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(
                f"{p}: HF transformers AST weights need the config.json that sits beside them; "
                f"none in {p.parent}"
            )
        return _from_hf(p, read_json(config_file), dict(raw))
    stripped = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in raw.items()}
    if "v.cls_token" in stripped and "mlp_head.1.weight" in stripped:
        return _from_official(p, raw, hints)
    if "cls_token" in raw and "pos_embed" in raw:
        if "dist_token" not in raw:
            raise unknown_format(
                p, keys, "a ViT without a distillation token; expected deit_*_distilled_*"
            )
        in_chans = (
            raw["patch_embed.proj.weight"].shape[1] if "patch_embed.proj.weight" in raw else 0
        )
        if "head_dist.weight" in raw or in_chans == 3:
            return _from_deit(p, raw, hints)
        if "head.1.weight" in raw:
            return _from_ours(p, dict(raw), hints, "fastast", {})
    raise unknown_format(p, keys)


def _from_official(p: Path, raw: Mapping[str, torch.Tensor], hints: dict) -> Checkpoint:
    sd = convert_official(raw, p)
    require(
        p, sd, ("cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight", "head.1.weight")
    )
    return _from_ours(p, sd, hints, "official", {})


def _from_deit(p: Path, raw: Mapping[str, torch.Tensor], hints: dict) -> Checkpoint:
    require(p, raw, ("cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight"))
    sd = convert_deit(raw)
    n = sd["pos_embed"].shape[1] - PREFIX_TOKENS
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{p}: ImageNet pos_embed has {n} patch positions, expected a square grid")
    cfg, _ = _shape_config(sd, hints["num_heads"])
    return Checkpoint(p, "timm_deit", sd, (side, side), cfg, num_classes=None)


def _from_ours(
    p: Path, sd: dict[str, torch.Tensor], hints: dict, fmt: str, meta: dict[str, object]
) -> Checkpoint:
    """Official, Lightning and plain state dicts: all in our key names by now."""
    require(
        p, sd, ("cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight", "head.1.weight")
    )
    heads = meta.get("num_heads", hints["num_heads"])
    cfg, assumed = _shape_config(sd, heads)
    if assumed:
        log.info("%s: num_heads not stored; assuming embed_dim // 64 = %d", p, cfg["num_heads"])
    fdim, fstride = meta.get("input_fdim", hints["fdim"]), meta.get("fstride", hints["fstride"])
    if fdim is None or fstride is None:
        own = fmt != "official"
        fdim = fdim or (own and hints["model_fdim"]) or 128
        fstride = fstride or (own and hints["model_fstride"]) or 10
        log.info(
            "%s: %s checkpoint does not say its input; assuming %d mel bins, fstride %d "
            "(pass checkpoint_fdim=/checkpoint_fstride= otherwise)",
            p,
            fmt,
            fdim,
            fstride,
        )
    fdim, fstride = int(fdim), int(fstride)
    tstride = int(meta.get("tstride", 10))
    patch = int(cfg.get("patch_size", 16))
    n = sd["pos_embed"].shape[1] - PREFIX_TOKENS
    grid = _grid(p, n, fdim, fstride, patch)
    cfg.update(input_fdim=fdim, fstride=fstride, tstride=tstride)
    cfg["input_tdim"] = int(meta.get("input_tdim", _min_length(grid[1], patch, tstride)))
    for key in ("norm_eps", "drop_path_rate"):
        if key in meta:
            cfg[key] = meta[key]
    cfg["num_classes"] = sd["head.1.weight"].shape[0]
    return Checkpoint(p, fmt, sd, grid, cfg, cfg["num_classes"], frozenset(meta))


def _from_lightning(p: Path, raw: Mapping[str, object], hints: dict) -> Checkpoint:
    full = raw["state_dict"]
    record = record_of(raw, p)
    if record.is_teacher:
        raise ValueError(
            f"{p}: a TeacherModule checkpoint (a CNN teacher), not an AST; expected an AST "
            "checkpoint (a StudentModule/DistillationModule .ckpt or another supported format). "
            "A teacher checkpoint is given as model.init_args.teacher_checkpoint of a "
            f"DistillationModule. {AST_FORMATS}"
        )
    prefix = lightning_prefix(full, p)
    sd = {k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)}
    arch = record.arch or {}
    meta: dict[str, object] = {
        name: arch[name]
        for name in ("fstride", "tstride", "norm_eps", "drop_path_rate")
        if arch.get(name) is not None
    }
    if arch.get("num_heads") is not None and arch.get("embed_dim") == sd["cls_token"].shape[-1]:
        meta["num_heads"] = arch["num_heads"]
    if record.num_mel_bins is not None:
        meta["input_fdim"] = record.num_mel_bins
    if record.target_length is not None:
        meta["input_tdim"] = record.target_length
    return _from_ours(p, sd, hints, "lightning", meta)


def _from_hf(p: Path, config: dict, raw: Mapping[str, torch.Tensor]) -> Checkpoint:
    c = {**_HF_DEFAULTS, **config}
    if c["hidden_act"] != "gelu":
        raise ValueError(
            f"{p}: hidden_act={c['hidden_act']!r} in config.json; ASTModel uses exact GELU ('gelu')"
        )
    sd = convert_hf(raw, p)
    require(
        p, sd, ("cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight", "head.1.weight")
    )
    hidden = int(c["hidden_size"])
    cfg: dict[str, object] = {
        "embed_dim": hidden,
        "depth": int(c["num_hidden_layers"]),
        "num_heads": int(c["num_attention_heads"]),
        "mlp_ratio": int(c["intermediate_size"]) / hidden,
        "norm_eps": float(c["layer_norm_eps"]),
        "patch_size": int(c["patch_size"]),
        "fstride": int(c["frequency_stride"]),
        "tstride": int(c["time_stride"]),
        "qkv_bias": bool(c["qkv_bias"]),
        "input_tdim": int(c["max_length"]),
        "input_fdim": int(c["num_mel_bins"]),
    }
    name = size_name(hidden, cfg["depth"], cfg["num_heads"])
    if name is not None:
        cfg["size"] = name
    grid = (
        patch_grid(cfg["input_fdim"], cfg["patch_size"], cfg["fstride"]),
        patch_grid(cfg["input_tdim"], cfg["patch_size"], cfg["tstride"]),
    )
    n = sd["pos_embed"].shape[1] - PREFIX_TOKENS
    if grid[0] * grid[1] != n:
        raise ValueError(
            f"{p}: config.json gives a {grid[0]}x{grid[1]} patch grid but position_embeddings "
            f"hold {n} patches"
        )
    num_classes = sd["head.1.weight"].shape[0]
    labels = config.get("id2label")
    if isinstance(labels, Mapping) and len(labels) != num_classes:
        log.warning(
            "%s: id2label has %d labels, classifier %d outputs", p, len(labels), num_classes
        )
    cfg["num_classes"] = num_classes
    return Checkpoint(p, "hf", sd, grid, cfg, num_classes, frozenset(cfg))
