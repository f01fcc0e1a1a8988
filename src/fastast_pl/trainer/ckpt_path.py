"""`--ckpt_path last|best|PATH`: one meaning in fit, validate, test and predict.

Lightning resolves "last" and "best" from the callbacks of the trainer at hand. Every run
logs into a new ``version_N`` directory, so in a new process "last" finds nothing there (it
warns "No checkpoint will be loaded" and scores randomly initialised weights) and "best"
exists only during a live fit. Here both are read from what earlier runs left on disk under
``trainer.default_root_dir``:

- ``last``: the newest ``last*.ckpt`` (by modification time) of any run under the root;
- ``best``: the ``best_model_path`` that the monitored ``ModelCheckpoint`` recorded in the
  newest checkpoint under the root (the latest run's best on validation);
- ``PATH``: that file.

The resolved file is read (``models.checkpoints.read_module_checkpoint``) and checked against
the configured module before anything runs; a missing or unreadable file is an error naming it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from fastast_pl.models.checkpoints.module_checkpoint import (
    ModuleCheckpoint,
    check_module_class,
    read_module_checkpoint,
)

#: Values Lightning gives a meaning of its own, passed on untouched.
LIGHTNING_VALUES = ("hpc", "registry")


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def find_last(root: Path) -> Path:
    """The newest ``last*.ckpt`` under ``root``."""
    found = _newest(list(root.rglob("last*.ckpt"))) if root.is_dir() else None
    if found is None:
        raise FileNotFoundError(
            f"--ckpt_path last: no last.ckpt under trainer.default_root_dir={root}; nothing to "
            "load (save one with a ModelCheckpoint(save_last=True), point "
            "--trainer.default_root_dir at the earlier run's root, or pass --ckpt_path PATH)"
        )
    return found


def find_best(root: Path) -> Path:
    """The best-on-validation checkpoint recorded by the latest run under ``root``."""
    files = list(root.rglob("*.ckpt")) if root.is_dir() else []
    newest = _newest([p for p in files if p.name.startswith("last")]) or _newest(files)
    if newest is None:
        raise FileNotFoundError(
            f"--ckpt_path best: no checkpoint under trainer.default_root_dir={root}; point "
            "--trainer.default_root_dir at the run's root or name a file with --ckpt_path PATH"
        )
    recorded = _recorded_best(read_module_checkpoint(newest).callbacks)
    if len(recorded) != 1:
        what = (
            f"records several best checkpoints {recorded}"
            if recorded
            else "records no best-on-val checkpoint (no ModelCheckpoint with a monitor)"
        )
        raise FileNotFoundError(
            f"--ckpt_path best: no checkpoint under {root} says which is best: the newest, "
            f"{newest}, {what}; name one with --ckpt_path PATH"
        )
    (monitor, best), *_ = recorded.items()
    if not Path(best).is_file():
        raise FileNotFoundError(
            f"--ckpt_path best: {newest} records {best} as the best on {monitor}, but it does "
            "not exist (moved or deleted?); name one with --ckpt_path PATH"
        )
    return Path(best)


def _recorded_best(callbacks: dict[str, Any]) -> dict[str, str]:
    """monitor -> best_model_path of every monitored ModelCheckpoint state in a checkpoint."""
    out: dict[str, str] = {}
    for name, state in callbacks.items():
        if not name.startswith("ModelCheckpoint") or not isinstance(state, dict):
            continue
        if state.get("monitor") and state.get("best_model_path"):
            out[str(state["monitor"])] = str(state["best_model_path"])
    return out


def resolve_ckpt_path(value: str | os.PathLike, root: Path) -> Path:
    """``last``/``best``/PATH -> an existing file (see the module docstring)."""
    if value == "last":
        return find_last(root)
    if value == "best":
        return find_best(root)
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"--ckpt_path: checkpoint {path} does not exist; expected a Lightning .ckpt file, "
            "or 'last' / 'best' (read from the runs under trainer.default_root_dir)"
        )
    return path


def prepare_ckpt_path(config: Any) -> ModuleCheckpoint | None:
    """Resolve a subcommand's ``ckpt_path`` in place, read the file and check its module class.

    ``config`` is the subcommand's jsonargparse namespace (``ckpt_path``, ``trainer``,
    ``model``). Returns what the checkpoint holds (for ``check_module_state`` once the model
    exists), or None without a checkpoint.
    """
    value = config.get("ckpt_path")
    if not value or value in LIGHTNING_VALUES:
        return None
    root = Path(config.get("trainer.default_root_dir") or os.getcwd())
    path = resolve_ckpt_path(value, root)
    if value in ("last", "best"):
        print(f"--ckpt_path {value}: {path}", file=sys.stderr)
    checkpoint = read_module_checkpoint(path)
    check_module_class(checkpoint, config.get("model.class_path"))
    config["ckpt_path"] = str(path)
    return checkpoint
