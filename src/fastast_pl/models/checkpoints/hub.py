"""Hugging Face Hub model ids as checkpoint sources, through ``huggingface_hub``'s own cache.

A local path always wins; a name that is not a local path and looks like a hub id
(``ORG/NAME``) is resolved with ``huggingface_hub.snapshot_download``, which honours
``HF_HUB_CACHE``/``HF_HOME``, ``HF_HUB_OFFLINE`` and tokens. Only the files an AST
checkpoint needs are fetched (config, feature extractor config, weights).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from fastast_pl.models.checkpoints.files import resolve_path

#: Files of an HF model repository that loading an AST needs.
HUB_FILES = [
    "config.json",
    "preprocessor_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*.safetensors",
    "pytorch_model.bin",
]
# ORG/NAME with the hub's characters (an optional @revision is accepted).
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")
_CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".safetensors", ".json")


def looks_like_hub_id(name: str) -> bool:
    """``ORG/NAME`` (optionally ``@revision``) that is not a file name such as ``runs/x.ckpt``."""
    return bool(_HUB_ID.match(name)) and not name.lower().endswith(_CHECKPOINT_SUFFIXES)


def resolve_source(path_or_id: str | os.PathLike) -> Path:
    """The local file or directory of a checkpoint given as a path or a hub model id.

    Raises FileNotFoundError naming what was tried; a hub id missing from the cache while
    offline says so and how to fetch it.
    """
    text = os.fspath(path_or_id)
    local = Path(text).expanduser()
    if local.exists() or not looks_like_hub_id(text):
        return resolve_path(local)
    return Path(_snapshot(text))


def _snapshot(hub_id: str) -> str:
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import (
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError as err:  # pragma: no cover - huggingface_hub comes with transformers
        raise FileNotFoundError(
            f"{hub_id!r} is not a local path, and reading it as a Hugging Face hub id needs "
            "huggingface_hub (pip install huggingface_hub)"
        ) from err
    repo_id, _, revision = hub_id.partition("@")
    fetch = f"`hf download {repo_id}` (huggingface_hub's CLI) on a machine with network access"
    try:
        return snapshot_download(repo_id, revision=revision or None, allow_patterns=HUB_FILES)
    except LocalEntryNotFoundError as err:
        if constants.HF_HUB_OFFLINE:
            why, otherwise = "HF_HUB_OFFLINE is set", ", or unset HF_HUB_OFFLINE"
        else:
            why, otherwise = f"the hub ({constants.ENDPOINT}) could not be reached", ""
        raise FileNotFoundError(
            f"{hub_id!r} is not a local path, and the Hugging Face hub model {repo_id!r} is "
            f"not in the hub cache ({constants.HF_HUB_CACHE}) and {why}. Fetch it with "
            f"{fetch} (into that cache, or point HF_HUB_CACHE at one holding it){otherwise}. "
            f"({type(err).__name__})"
        ) from err
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise FileNotFoundError(
            f"{hub_id!r} is neither a local path nor a Hugging Face hub model this machine can "
            f"read ({type(err).__name__}: {str(err).splitlines()[0]}); check the name, or log "
            "in with `hf auth login` for a private or gated model"
        ) from err
