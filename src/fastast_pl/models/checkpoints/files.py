"""Reading checkpoint files from disk: torch pickles, safetensors, HF model directories, JSON.

Every ``torch.load`` of the package goes through ``load_torch``, so each unreadable file
fails the same way: a ValueError naming the file, what went wrong and what was expected.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

SUPPORTED_FORMATS = (
    "official AST release (.pth state dict with 'module.v.*' and 'module.mlp_head.*' keys)",
    "HF transformers ASTForAudioClassification (directory with config.json and "
    "model.safetensors or pytorch_model.bin)",
    "timm ImageNet DeiT distilled state dict (cls_token, dist_token, pos_embed, "
    "3-channel patch_embed.proj.weight, blocks.*, head, head_dist)",
    "fastast_pl Lightning checkpoint (.ckpt with 'state_dict'; AST under e.g. 'model.')",
    "fastast_pl ASTModel state dict (.pt/.pth/.safetensors)",
)
#: What an AST checkpoint is expected to be, for error messages.
AST_FORMATS = f"Supported formats: {'; '.join(SUPPORTED_FORMATS)}"


def is_tensor_dict(obj: object) -> bool:
    """A non-empty mapping whose values are all tensors (a state dict)."""
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else ""


def load_torch(
    path: str | os.PathLike,
    *,
    expected: str = AST_FORMATS,
    trusted: bool | None = None,
    mmap: bool = False,
) -> Any:
    """``torch.load`` on the CPU, weights-only first; errors name the file and ``expected``.

    Lightning checkpoints pickle their hyper_parameters (ASTArch, optimiser and merge
    configs), which the weights-only unpickler refuses. A ``trusted`` file (default: a
    ``.ckpt``, i.e. one written by this framework's own training runs) is then unpickled
    fully; any other file is not.
    """
    path = Path(path)
    trusted = path.suffix == ".ckpt" if trusted is None else trusted
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(
            f"{path}: the file is empty (0 bytes), e.g. a copy or download that was cut short. "
            f"{expected}"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if not trusted:
            raise ValueError(
                f"{path}: could not read it as a weights-only torch file ({_first_line(err)}). "
                f"The file may be truncated or corrupt, or not a checkpoint. {expected}"
            ) from err
        first = err
    except Exception as err:  # truncated zip, bad header, ...: name the file
        raise ValueError(
            f"{path}: could not read it as a torch checkpoint ({type(err).__name__}: "
            f"{_first_line(err)}); the file may be truncated or corrupt. {expected}"
        ) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as err:
        raise ValueError(
            f"{path}: could not read it as a Lightning checkpoint ({type(err).__name__}: "
            f"{_first_line(err)}); weights-only load said: {_first_line(first)}. The file may be "
            f"truncated or corrupt. {expected}"
        ) from err


def read_lightning(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, Any]:
    """A Lightning checkpoint (the dict ``Trainer.save_checkpoint`` writes) of our own runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; expected a Lightning .ckpt")
    expected = "Expected a Lightning checkpoint (.ckpt) written by `python -m fastast_pl fit`."
    checkpoint = load_torch(path, expected=expected, trusted=True, mmap=mmap)
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: found a {type(checkpoint).__name__}. {expected}")
    return checkpoint


def load_state_dict_named(
    module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike, what: str
) -> None:
    """``module.load_state_dict(state)`` (strict) whose error names the file and some keys.

    ``what`` says what the file was expected to hold, e.g. "a TeacherModule's CNN".
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: {tuple(v.shape)} in the file, {tuple(expected[k].shape)} in the model"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{path}: its weights do not fit {what} ({len(missing)} missing keys "
            f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}, shape "
            f"mismatches {shapes[:3]}); expected a checkpoint of this model"
        )
    module.load_state_dict(state)


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors on the CPU."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as err:
        raise ValueError(
            f"{path}: could not read it as safetensors ({type(err).__name__}: {err}); the file "
            "may be truncated or corrupt"
        ) from err


def load_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    """State dict of an HF model directory (single file or safetensors shards)."""
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    binary = directory / "pytorch_model.bin"
    if single.is_file():
        return load_safetensors(single)
    if index.is_file():
        shards = sorted(set(read_json(index)["weight_map"].values()))
        out: dict[str, torch.Tensor] = {}
        for shard in shards:
            out.update(load_safetensors(directory / shard))
        return out
    if binary.is_file():
        obj = load_torch(binary)
        if not is_tensor_dict(obj):
            raise ValueError(
                f"{binary}: expected a state dict of tensors, found {type(obj).__name__}"
            )
        return dict(obj)
    found = sorted(p.name for p in directory.iterdir())[:10]
    raise FileNotFoundError(
        f"{directory}: HF model directory without weights; expected model.safetensors, "
        f"model.safetensors.index.json or pytorch_model.bin, found {found}"
    )


def read_json(path: Path) -> dict:
    """A JSON file's content; errors name the file."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: could not read it as JSON ({err})") from err


def resolve_path(path: str | os.PathLike) -> Path:
    """The checkpoint path, which must exist (a file or an HF model directory)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(
            f"checkpoint {p} does not exist; expected a file (.pth/.pt/.bin/.ckpt/.safetensors) "
            "or an HF model directory with config.json"
        )
    return p
