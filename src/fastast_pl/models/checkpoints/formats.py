"""Key conversion: every supported checkpoint layout renamed to ``ASTModel``'s key names.

- official: the AST authors' release (YuanGongND/ast), a state dict saved from
  ``nn.DataParallel``: ``module.v.*`` (a timm DeiT) and ``module.mlp_head.{0,1}.*``.
- HF transformers ``ASTForAudioClassification``: both key namings (on disk / transformers
  4.x, and the in-memory names of 5.x); q/k/v are concatenated into timm's ``qkv``.
- timm DeiT (ImageNet): the 3-channel patch kernel is summed to one channel (as AST), the heads go.
- Lightning: the AST submodule of one of our LightningModules (``model.``/``student.``).

Pure functions from a state dict to a state dict; no file reading, no model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from fastast_pl.models.checkpoints.files import AST_FORMATS

PREFIX_TOKENS = 2  # class and distillation token, the first two rows of pos_embed
HF_PREFIX = "audio_spectrogram_transformer."


def first_keys(keys: object, n: int = 10) -> list[str]:
    """The first ``n`` keys, for error messages."""
    return [str(k) for k in list(keys)[:n]]


#: A key only PaSST has (its time positional embedding): such a file is not an AST.
PASST_KEY = "time_new_pos_embed"


def unknown_format(path: Path, keys: object, why: str = "") -> ValueError:
    """The error for a file none of the formats describes, naming its first keys (and, for
    PaSST weights given where an AST is read, the setting that reads them)."""
    why = f" ({why})" if why else ""
    hint = ""
    if isinstance(keys, Mapping | list | tuple | set) and PASST_KEY in keys:
        hint = (
            f" Its key {PASST_KEY!r} is PaSST's: as a distillation teacher, set "
            "model.init_args.teacher_passt to read it as PaSST weights (README, PaSST)."
        )
    return ValueError(
        f"{path}: unknown checkpoint format{why}; first keys: {first_keys(keys)}. "
        f"{AST_FORMATS}{hint}"
    )


def require(p: Path, sd: Mapping[str, object], keys: tuple[str, ...]) -> None:
    """Raise naming the file and the missing keys unless ``sd`` holds all of ``keys``."""
    missing = [k for k in keys if k not in sd]
    if missing:
        raise ValueError(
            f"{p}: checkpoint lacks {missing}; first keys found: {first_keys(sd)}. {AST_FORMATS}"
        )


def blocks_depth(sd: Mapping[str, torch.Tensor], prefix: str = "blocks.") -> int:
    ids = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(ids) + 1 if ids else 0


def convert_official(sd: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
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


def convert_hf(sd: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[int, torch.Tensor]] = {}
    for key, value in sd.items():
        if key.startswith(HF_PREFIX):
            k = key[len(HF_PREFIX) :]
        elif key.startswith("classifier."):
            m = re.fullmatch(r"classifier\.(layernorm|dense)\.(weight|bias)", key)
            if m is None:
                raise ValueError(f"{path}: unexpected HF classifier key {key!r}")
            out[f"head.{0 if m.group(1) == 'layernorm' else 1}.{m.group(2)}"] = value
            continue
        else:
            raise ValueError(
                f"{path}: unexpected key {key!r} in an HF AST checkpoint; expected "
                f"'{HF_PREFIX}*' or 'classifier.*'"
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


def convert_deit(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ImageNet DeiT -> AST initialisation (Gong et al. 2021, Sec. 2.2)."""
    out = {k: v for k, v in sd.items() if not k.startswith(("head.", "head_dist."))}
    # AST's ast_models.py SUMS the RGB kernel to one input channel
    # (torch.sum(weight, dim=1).unsqueeze(1)): a one-channel patch then gives the DeiT's
    # response to the grey image with that patch in all three channels.
    out["patch_embed.proj.weight"] = sd["patch_embed.proj.weight"].sum(dim=1, keepdim=True)
    return out


def lightning_prefix(sd: Mapping[str, object], path: Path) -> str:
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
        raise unknown_format(path, sd, "Lightning checkpoint without an AST submodule")
    raise ValueError(
        f"{path}: Lightning checkpoint holds several AST-like submodules {candidates}; "
        "expected one (or one under 'model.')"
    )


def field_of(obj: object, name: str) -> object:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)
