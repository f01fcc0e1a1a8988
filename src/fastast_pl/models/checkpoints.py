"""Read AST checkpoints of every supported origin into ``ASTModel`` key names, and fit them.

Formats (detected from the keys, never from the file name alone):

- ``official``: the AST authors' release (YuanGongND/ast), a state dict saved from
  ``nn.DataParallel``: ``module.v.*`` (a timm DeiT) and ``module.mlp_head.{0,1}.*``.
- ``hf``: an HF transformers ``ASTForAudioClassification`` directory (``config.json`` and
  ``model.safetensors`` / ``pytorch_model.bin``); q/k/v are concatenated into timm's ``qkv``.
- ``timm_deit``: an ImageNet ``deit_*_distilled_patch16_*`` state dict. AST's ImageNet
  initialisation: the 3-channel patch kernel is averaged (mean over input channels) to one
  channel, the patch grid of ``pos_embed`` is fitted to the spectrogram's, the head is new.
- ``lightning``: this project's ``.ckpt`` files; the AST is the submodule whose keys hold
  ``cls_token``/``dist_token``/``pos_embed`` (``model.`` in Student/DistillationModule).
- ``fastast``: a plain ``ASTModel.state_dict()``.

Fitting to a model (``fit_state_dict``): the positional embedding of the patches is cut at
the centre (axis smaller) or bilinearly interpolated (axis larger), per axis, as AST does
for its grid; the head is re-initialised when the class count differs. Everything else must
match, or the error names the key and both shapes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from fastast_pl.models.ast import ARCHS, ASTArch, arch_dims, patch_grid

if TYPE_CHECKING:
    from fastast_pl.models.ast import ASTModel

log = logging.getLogger(__name__)

SUPPORTED_FORMATS = (
    "official AST release (.pth state dict with 'module.v.*' and 'module.mlp_head.*' keys)",
    "HF transformers ASTForAudioClassification (directory with config.json and "
    "model.safetensors or pytorch_model.bin)",
    "timm ImageNet DeiT distilled state dict (cls_token, dist_token, pos_embed, "
    "3-channel patch_embed.proj.weight, blocks.*, head, head_dist)",
    "fastast_pl Lightning checkpoint (.ckpt with 'state_dict'; AST under e.g. 'model.')",
    "fastast_pl ASTModel state dict (.pt/.pth/.safetensors)",
)
_PREFIX_TOKENS = 2
_HF_PREFIX = "audio_spectrogram_transformer."
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


# ---------------------------------------------------------------------------- reading files
def _tensor_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if path.suffix != ".ckpt":
            raise ValueError(
                f"{path}: could not read it as a weights-only torch file ({str(err).splitlines()[0]}). "
                f"The file may be truncated or corrupt, or not a checkpoint. Supported formats: "
                f"{'; '.join(SUPPORTED_FORMATS)}"
            ) from err
        first = err
    except Exception as err:  # truncated zip, bad header, ...: name the file
        raise ValueError(
            f"{path}: could not read it as a torch checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); the file may be truncated or "
            f"corrupt. Supported formats: {'; '.join(SUPPORTED_FORMATS)}"
        ) from err
    # Lightning checkpoints pickle their hyper_parameters (ASTArch, optimiser and merge
    # configs), which the weights-only unpickler refuses. A .ckpt is a file written by this
    # framework's own training runs, so we unpickle it fully here, and only for .ckpt files.
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ValueError(
            f"{path}: could not read it as a Lightning checkpoint ({type(err).__name__}: "
            f"{err}); weights-only load said: {str(first).splitlines()[0]}. The file may be "
            "truncated or corrupt."
        ) from err


def _safetensors_load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:
        raise ValueError(
            f"{path}: could not read it as safetensors ({type(err).__name__}: {err}); the file "
            "may be truncated or corrupt"
        ) from err


def _hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    """State dict of an HF model directory (single file or safetensors shards)."""
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    binary = directory / "pytorch_model.bin"
    if single.is_file():
        return _safetensors_load(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        out: dict[str, torch.Tensor] = {}
        for shard in shards:
            out.update(_safetensors_load(directory / shard))
        return out
    if binary.is_file():
        obj = _torch_load(binary)
        if not _tensor_dict(obj):
            raise ValueError(
                f"{binary}: expected a state dict of tensors, found {type(obj).__name__}"
            )
        return dict(obj)
    found = sorted(p.name for p in directory.iterdir())[:10]
    raise FileNotFoundError(
        f"{directory}: HF model directory without weights; expected model.safetensors, "
        f"model.safetensors.index.json or pytorch_model.bin, found {found}"
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: could not read it as JSON ({err})") from err


# ---------------------------------------------------------------------------- helpers
def _first_keys(keys: object, n: int = 10) -> list[str]:
    return [str(k) for k in list(keys)[:n]]


def _unknown_format(path: Path, keys: object, why: str = "") -> ValueError:
    why = f" ({why})" if why else ""
    return ValueError(
        f"{path}: unknown checkpoint format{why}; first keys: {_first_keys(keys)}. "
        f"Supported formats: {'; '.join(SUPPORTED_FORMATS)}"
    )


def _blocks_depth(sd: Mapping[str, torch.Tensor], prefix: str = "blocks.") -> int:
    ids = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(ids) + 1 if ids else 0


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


def _name_of(embed_dim: int, depth: int, num_heads: int) -> str | None:
    for name in ("tiny", "small", "base"):
        if ARCHS[name] == (embed_dim, depth, num_heads):
            return name
    return None


def _shape_config(
    sd: Mapping[str, torch.Tensor], num_heads: int | None
) -> tuple[dict[str, object], bool]:
    """Model sizes read from the tensor shapes; returns (config, heads_were_assumed)."""
    embed_dim = sd["cls_token"].shape[-1]
    depth = _blocks_depth(sd)
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
    name = _name_of(embed_dim, depth, cfg["num_heads"])
    if name is not None:
        cfg["arch"] = name
    return cfg, assumed


# ---------------------------------------------------------------------------- conversions
def _convert_official(sd: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        k = key[len("module.") :] if key.startswith("module.") else key
        if k.startswith(("v.head.", "v.head_dist.")):
            continue  # the DeiT ImageNet heads AST keeps but never uses
        if k.startswith("v."):
            out[k[2:]] = value
        elif k.startswith("mlp_head."):
            out["head." + k[len("mlp_head.") :]] = value
        else:
            raise ValueError(
                f"{path}: official AST checkpoint has unexpected key {key!r}; expected "
                "'module.v.*' or 'module.mlp_head.*'"
            )
    return out


_HF_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"embeddings\.cls_token$"), "cls_token"),
    (re.compile(r"embeddings\.distillation_token$"), "dist_token"),
    (re.compile(r"embeddings\.position_embeddings$"), "pos_embed"),
    (
        re.compile(r"embeddings\.patch_embeddings\.projection\.(weight|bias)$"),
        r"patch_embed.proj.\1",
    ),
    (re.compile(r"layernorm\.(weight|bias)$"), r"norm.\1"),
    # on-disk (transformers 4.x and save_pretrained) names
    (
        re.compile(r"encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)$"),
        r"blocks.\1.attn.proj.\2",
    ),
    (re.compile(r"encoder\.layer\.(\d+)\.layernorm_before\.(weight|bias)$"), r"blocks.\1.norm1.\2"),
    (re.compile(r"encoder\.layer\.(\d+)\.layernorm_after\.(weight|bias)$"), r"blocks.\1.norm2.\2"),
    (
        re.compile(r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)$"),
        r"blocks.\1.mlp.fc1.\2",
    ),
    (re.compile(r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)$"), r"blocks.\1.mlp.fc2.\2"),
    # in-memory names of transformers 5.x (a torch.save of model.state_dict())
    (re.compile(r"layers\.(\d+)\.attention\.o_proj\.(weight|bias)$"), r"blocks.\1.attn.proj.\2"),
    (re.compile(r"layers\.(\d+)\.layernorm_before\.(weight|bias)$"), r"blocks.\1.norm1.\2"),
    (re.compile(r"layers\.(\d+)\.layernorm_after\.(weight|bias)$"), r"blocks.\1.norm2.\2"),
    (re.compile(r"layers\.(\d+)\.mlp\.fc1\.(weight|bias)$"), r"blocks.\1.mlp.fc1.\2"),
    (re.compile(r"layers\.(\d+)\.mlp\.fc2\.(weight|bias)$"), r"blocks.\1.mlp.fc2.\2"),
]
_HF_QKV = [
    re.compile(r"encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$"),
    re.compile(r"layers\.(\d+)\.attention\.(q|k|v)_proj\.(weight|bias)$"),
]
_QKV_ORDER = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}


def _convert_hf(sd: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
    for key, value in sd.items():
        if key.startswith(_HF_PREFIX):
            k = key[len(_HF_PREFIX) :]
        elif key.startswith("classifier."):
            m = re.fullmatch(r"classifier\.(layernorm|dense)\.(weight|bias)", key)
            if m is None:
                raise ValueError(f"{path}: unexpected HF classifier key {key!r}")
            out[f"head.{0 if m.group(1) == 'layernorm' else 1}.{m.group(2)}"] = value
            continue
        else:
            raise ValueError(
                f"{path}: unexpected key {key!r} in an HF AST checkpoint; expected "
                f"'{_HF_PREFIX}*' or 'classifier.*'"
            )
        for pattern in _HF_QKV:
            m = pattern.match(k)
            if m is not None:
                qkv.setdefault((int(m.group(1)), m.group(3)), {})[_QKV_ORDER[m.group(2)]] = value
                break
        else:
            for pattern, target in _HF_RULES:
                if pattern.match(k):
                    out[pattern.sub(target, k)] = value
                    break
            else:
                raise ValueError(f"{path}: unexpected key {key!r} in an HF AST checkpoint")
    for (layer, kind), parts in sorted(qkv.items()):
        if set(parts) != {0, 1, 2}:
            raise ValueError(
                f"{path}: layer {layer} has only {sorted(parts)} of query/key/value {kind}; "
                "expected all three"
            )
        out[f"blocks.{layer}.attn.qkv.{kind}"] = torch.cat([parts[0], parts[1], parts[2]], dim=0)
    return out


def _convert_deit(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ImageNet DeiT -> AST initialisation (Gong et al. 2021, Sec. 2.2)."""
    out = {k: v for k, v in sd.items() if not k.startswith(("head.", "head_dist."))}
    # The paper "averages" the RGB kernel to one input channel; we take the mean (not the
    # sum), so a patch of constant value gives the same response as a grey image did.
    out["patch_embed.proj.weight"] = sd["patch_embed.proj.weight"].mean(dim=1, keepdim=True)
    return out


def _lightning_prefix(sd: Mapping[str, object], path: Path) -> str:
    """Prefix of the ASTModel submodule in a LightningModule's state dict."""
    candidates = sorted(
        k[: -len("cls_token")]
        for k in sd
        if k.endswith("cls_token")
        and k[: -len("cls_token")] + "dist_token" in sd
        and k[: -len("cls_token")] + "pos_embed" in sd
    )
    for preferred in ("model.", "student."):
        if preferred in candidates:
            return preferred
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise _unknown_format(path, sd, "Lightning checkpoint without an AST submodule")
    raise ValueError(
        f"{path}: Lightning checkpoint holds several AST-like submodules {candidates}; "
        "expected one (or one under 'model.')"
    )


def _field(obj: object, name: str) -> object:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


# ---------------------------------------------------------------------------- reading
def _resolve_path(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"checkpoint {p} does not exist; expected a file (.pth/.pt/.bin/.ckpt/.safetensors) "
            "or an HF model directory with config.json"
        )
    return p


def read_checkpoint(
    path: str | os.PathLike,
    *,
    fdim: int | None = None,
    fstride: int | None = None,
    num_heads: int | None = None,
    model_fdim: int | None = None,
    model_fstride: int | None = None,
) -> Checkpoint:
    """Load any supported checkpoint and convert it to ``ASTModel`` key names.

    Where the file does not store the mel bins and frequency stride it was trained with
    (official releases, plain state dicts), ``fdim``/``fstride`` give them; otherwise an
    official AST checkpoint is taken to be 128/10 (all of its releases are) and a plain state
    dict to match the model it is loaded into (``model_fdim``/``model_fstride``, else
    128/10). ``num_heads`` likewise (default ``embed_dim // 64``, the DeiT/AST rule).
    """
    p = _resolve_path(path)
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
                f"found {found}. Supported formats: {'; '.join(SUPPORTED_FORMATS)}"
            )
        return _from_hf(p, _read_json(config_file), _hf_weights(p))
    raw = _safetensors_load(p) if p.suffix == ".safetensors" else _torch_load(p)
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"{p}: expected a state dict (a mapping of names to tensors), found a "
            f"{type(raw).__name__}. Supported formats: {'; '.join(SUPPORTED_FORMATS)}"
        )
    if "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        return _from_lightning(p, raw, hints)
    if not _tensor_dict(raw) and _tensor_dict(raw.get("model")):
        raw = raw["model"]  # DeiT's own releases wrap the state dict as {"model": ...}
    if not _tensor_dict(raw):
        raise _unknown_format(p, raw, "not a mapping of names to tensors")
    keys = list(raw)
    if any(k.startswith(_HF_PREFIX) for k in keys):
        config_file = p.parent / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(
                f"{p}: HF transformers AST weights need the config.json that sits beside them; "
                f"none in {p.parent}"
            )
        return _from_hf(p, _read_json(config_file), dict(raw))
    stripped = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in raw.items()}
    if "v.cls_token" in stripped and "mlp_head.1.weight" in stripped:
        return _from_official(p, raw, hints)
    if "cls_token" in raw and "pos_embed" in raw:
        if "dist_token" not in raw:
            raise _unknown_format(
                p, keys, "a ViT without a distillation token; expected deit_*_distilled_*"
            )
        in_chans = (
            raw["patch_embed.proj.weight"].shape[1] if "patch_embed.proj.weight" in raw else 0
        )
        if "head_dist.weight" in raw or in_chans == 3:
            return _from_deit(p, raw, hints)
        if "head.1.weight" in raw:
            return _from_ours(p, dict(raw), hints, "fastast", {})
    raise _unknown_format(p, keys)


def _from_official(p: Path, raw: Mapping[str, torch.Tensor], hints: dict) -> Checkpoint:
    sd = _convert_official(raw, p)
    _require(
        p, sd, ("cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight", "head.1.weight")
    )
    return _from_ours(p, sd, hints, "official", {})


def _from_deit(p: Path, raw: Mapping[str, torch.Tensor], hints: dict) -> Checkpoint:
    _require(p, raw, ("cls_token", "dist_token", "pos_embed", "patch_embed.proj.weight"))
    sd = _convert_deit(raw)
    n = sd["pos_embed"].shape[1] - _PREFIX_TOKENS
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{p}: ImageNet pos_embed has {n} patch positions, expected a square grid")
    cfg, _ = _shape_config(sd, hints["num_heads"])
    return Checkpoint(p, "timm_deit", sd, (side, side), cfg, num_classes=None)


def _from_ours(
    p: Path, sd: dict[str, torch.Tensor], hints: dict, fmt: str, meta: dict[str, object]
) -> Checkpoint:
    """Official, Lightning and plain state dicts: all in our key names by now."""
    _require(
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
    n = sd["pos_embed"].shape[1] - _PREFIX_TOKENS
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
    prefix = _lightning_prefix(full, p)
    sd = {k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)}
    hp = raw.get("hyper_parameters") or {}
    meta: dict[str, object] = {}
    ast = _field(hp, "ast")
    if ast is None and isinstance(hp, Mapping) and "ast" in hp:
        ast = ASTArch()  # StudentModule builds ASTArch() when given ast=None
    for name in ("fstride", "tstride", "norm_eps", "drop_path_rate"):
        value = _field(ast, name)
        if value is not None:
            meta[name] = value
    arch = _field(ast, "arch")
    if ast is not None and isinstance(arch, str) and arch in ARCHS:
        dims = arch_dims(
            arch, _field(ast, "embed_dim"), _field(ast, "depth"), _field(ast, "num_heads")
        )
        if dims[0] == sd["cls_token"].shape[-1]:
            meta["num_heads"] = dims[2]
    for src, dst in (("num_mel_bins", "input_fdim"), ("target_length", "input_tdim")):
        value = _field(hp, src)
        if isinstance(value, int):
            meta[dst] = value
    return _from_ours(p, sd, hints, "lightning", meta)


def _from_hf(p: Path, config: dict, raw: Mapping[str, torch.Tensor]) -> Checkpoint:
    c = {**_HF_DEFAULTS, **config}
    if c["hidden_act"] != "gelu":
        raise ValueError(
            f"{p}: hidden_act={c['hidden_act']!r} in config.json; ASTModel uses exact GELU ('gelu')"
        )
    sd = _convert_hf(raw, p)
    _require(
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
    name = _name_of(hidden, cfg["depth"], cfg["num_heads"])
    if name is not None:
        cfg["arch"] = name
    grid = (
        patch_grid(cfg["input_fdim"], cfg["patch_size"], cfg["fstride"]),
        patch_grid(cfg["input_tdim"], cfg["patch_size"], cfg["tstride"]),
    )
    n = sd["pos_embed"].shape[1] - _PREFIX_TOKENS
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


def _require(p: Path, sd: Mapping[str, object], keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in sd]
    if missing:
        raise ValueError(
            f"{p}: checkpoint lacks {missing}; first keys found: {_first_keys(sd)}. "
            f"Supported formats: {'; '.join(SUPPORTED_FORMATS)}"
        )


# ---------------------------------------------------------------------------- fitting
def _fit_axis(x: torch.Tensor, dim: int, new: int, axis: str) -> tuple[torch.Tensor, str | None]:
    """Centre-crop or bilinearly interpolate the (1, D, F, T) grid ``x`` along ``dim``."""
    old = x.shape[dim]
    if new == old:
        return x, None
    if new < old:
        start = old // 2 - new // 2  # AST's centre: int(old / 2) - int(new / 2)
        return x.narrow(dim, start, new), f"centre crop in {axis}"
    size = (new, x.shape[3]) if dim == 2 else (x.shape[2], new)
    out = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
    return out.to(x.dtype), f"bilinear interpolation in {axis}"


def resize_pos_embed(
    pos_embed: torch.Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int]
) -> tuple[torch.Tensor, str]:
    """Fit ``pos_embed`` (1, 2 + F*T, D) from grid ``src_grid`` to ``dst_grid``, per axis.

    Time first, then frequency (the order AST uses); prefix-token embeddings are kept.
    Returns the new embedding and a description such as ``"12x101 -> 12x50 (centre crop in time)"``.
    """
    (f0, t0), (f1, t1) = src_grid, dst_grid
    dim = pos_embed.shape[-1]
    prefix = pos_embed[:, :_PREFIX_TOKENS]  # (1, 2, D)
    grid = pos_embed[:, _PREFIX_TOKENS:].reshape(1, f0, t0, dim).permute(0, 3, 1, 2)  # (1, D, F, T)
    grid, t_note = _fit_axis(grid, 3, t1, "time")
    grid, f_note = _fit_axis(grid, 2, f1, "frequency")
    patches = grid.permute(0, 2, 3, 1).reshape(1, f1 * t1, dim)  # (1, F' * T', D)
    notes = ", ".join(n for n in (t_note, f_note) if n)
    return torch.cat((prefix, patches), dim=1), f"{f0}x{t0} -> {f1}x{t1} ({notes})"


def fit_state_dict(
    ckpt: Checkpoint, model: ASTModel, strict: bool = True
) -> dict[str, torch.Tensor]:
    """The checkpoint's state dict made loadable into ``model``; raises ValueError otherwise.

    Everything is checked before anything changes: only then is the positional embedding
    fitted to the model's grid and, for a different class count, the head re-initialised.
    """
    sd = dict(ckpt.state_dict)
    new_head = ckpt.num_classes != model.num_classes
    _check_compatible(ckpt, sd, model, new_head, strict)
    for name in ("num_heads", "norm_eps", "fstride", "tstride"):
        if name in ckpt.known and ckpt.config.get(name) != getattr(model, name):
            log.warning(
                "%s: checkpoint has %s=%s, model %s=%s",
                ckpt.path,
                name,
                ckpt.config.get(name),
                name,
                getattr(model, name),
            )
    if "pos_embed" in sd and ckpt.grid != model.grid_size:
        sd["pos_embed"], what = resize_pos_embed(sd["pos_embed"], ckpt.grid, model.grid_size)
        log.info("%s: pos_embed %s", ckpt.path, what)
    if new_head:
        model.reset_head()
        sd = {k: v for k, v in sd.items() if not k.startswith("head.")}
        sd.update({f"head.{k}": v.detach().clone() for k, v in model.head.state_dict().items()})
        if ckpt.num_classes is None:
            log.info(
                "%s: no audio head in the checkpoint; head for %d classes initialised",
                ckpt.path,
                model.num_classes,
            )
        else:
            log.info(
                "%s: head %d -> %d classes: re-initialised",
                ckpt.path,
                ckpt.num_classes,
                model.num_classes,
            )
    return sd


def _check_compatible(
    ckpt: Checkpoint, sd: dict[str, torch.Tensor], model: ASTModel, new_head: bool, strict: bool
) -> None:
    """Raise ValueError naming the key and both shapes for anything that cannot be adapted."""
    expected = model.state_dict()
    depth = _blocks_depth(sd)
    if depth != model.depth and strict:
        raise ValueError(
            f"{ckpt.path}: checkpoint has {depth} transformer blocks (keys blocks.0-{depth - 1}.*), "
            f"the model expects {model.depth}"
        )
    for key, value in sd.items():
        if key not in expected or (new_head and key.startswith("head.")):
            continue
        want = expected[key].shape
        # pos_embed only has to agree in width: its grid is fitted afterwards.
        ok = value.shape[-1] == want[-1] if key == "pos_embed" else value.shape == want
        if not ok:
            raise ValueError(
                f"{ckpt.path}: key {key!r} has shape {tuple(value.shape)} in the checkpoint "
                f"({ckpt.format}) but the model expects {tuple(want)} "
                f"(model embed_dim={model.embed_dim}, checkpoint embed_dim="
                f"{ckpt.config.get('embed_dim')})"
            )
    if strict:
        unexpected = [
            k for k in sd if k not in expected and not (new_head and k.startswith("head."))
        ]
        missing = [k for k in expected if k not in sd and not (new_head and k.startswith("head."))]
        if unexpected or missing:
            raise ValueError(
                f"{ckpt.path} ({ckpt.format}): keys do not match the model; unexpected "
                f"{unexpected[:10]}, missing {missing[:10]}"
            )


# ---------------------------------------------------------------------------- entry points
def build_from_checkpoint(
    cls: type[ASTModel],
    path: str | os.PathLike,
    overrides: dict,
    checkpoint_fdim: int | None = None,
    checkpoint_fstride: int | None = None,
) -> ASTModel:
    """``ASTModel.from_pretrained``: the checkpoint's architecture, ``overrides`` on top."""
    ckpt = read_checkpoint(
        path,
        fdim=checkpoint_fdim,
        fstride=checkpoint_fstride,
        num_heads=overrides.get("num_heads"),
        model_fdim=overrides.get("input_fdim"),
        model_fstride=overrides.get("fstride"),
    )
    config = {**ckpt.config, **overrides}
    model = cls(**config)
    model.load_state_dict(fit_state_dict(ckpt, model), strict=True)
    log.info("%s: loaded %s checkpoint into %s", ckpt.path, ckpt.format, _describe(model))
    return model


def load_into(
    model: ASTModel,
    path: str | os.PathLike,
    strict: bool = True,
    checkpoint_fdim: int | None = None,
    checkpoint_fstride: int | None = None,
) -> None:
    """``ASTModel.load_pretrained``: fit a checkpoint to an existing model and load it."""
    ckpt = read_checkpoint(
        path,
        fdim=checkpoint_fdim,
        fstride=checkpoint_fstride,
        num_heads=model.num_heads,
        model_fdim=model.input_fdim,
        model_fstride=model.fstride,
    )
    model.load_state_dict(fit_state_dict(ckpt, model, strict=strict), strict=strict)
    log.info("%s: loaded %s checkpoint into %s", ckpt.path, ckpt.format, _describe(model))


def _describe(model: ASTModel) -> str:
    f, t = model.grid_size
    return (
        f"ASTModel(embed_dim={model.embed_dim}, depth={model.depth}, heads={model.num_heads}, "
        f"grid={f}x{t}, classes={model.num_classes})"
    )
