"""`--ckpt_path last|best|PATH`: one meaning in fit, validate, test and predict.

Lightning resolves "last" and "best" from the callbacks of the trainer at hand. Every run
logs into a new ``version_N`` directory, so in a new process "last" finds nothing there (it
warns "No checkpoint will be loaded" and scores randomly initialised weights) and "best"
exists only during a live fit. Here both are read from what earlier runs left on disk under
``trainer.default_root_dir``:

- ``last``: the newest ``last*.ckpt`` (by modification time) of any run under the root;
- ``best``: the best on validation over every run under the root: of the ``best_model_path``
  files that the monitored ``ModelCheckpoint`` recorded in any checkpoint there (and that
  still exist), the one with the highest ``best_model_score`` (lowest for mode ``min``; on a
  tie the newest). Runs recording different monitors or modes are an error;
- ``PATH``: that file.

The resolved file is read (``models.checkpoints.read_module_checkpoint``) and checked against
the configured module before anything runs; a missing or unreadable file is an error naming it.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass
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


@dataclass(frozen=True)
class RecordedBest:
    """A best-on-val checkpoint as one monitored ``ModelCheckpoint`` state records it."""

    path: Path  # best_model_path
    score: float  # best_model_score
    monitor: str
    mode: str | None  # "max"/"min", read from the callback's state key
    source: Path  # the checkpoint holding the state


def find_best(root: Path) -> Path:
    """The best-on-validation checkpoint of all runs under ``root`` (see the module docstring).

    A resumed fit logs into a new ``version_N``; Lightning's ``ModelCheckpoint`` then keeps only
    ``best_model_path`` of the earlier run (not its score), so the resumed run records its own
    first epoch as best whatever its score. Hence every checkpoint's record is read, not the
    newest one's.
    """
    files = sorted(root.rglob("*.ckpt")) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"--ckpt_path best: no checkpoint under trainer.default_root_dir={root}; point "
            "--trainer.default_root_dir at the run's root or name a file with --ckpt_path PATH"
        )
    recorded = [r for f in files for r in recorded_best(read_module_checkpoint(f))]
    if not recorded:
        raise FileNotFoundError(
            f"--ckpt_path best: none of the {len(files)} checkpoints under {root} records a "
            "best-on-val checkpoint (no ModelCheckpoint with a monitor); name one with "
            "--ckpt_path PATH"
        )
    existing = [r for r in recorded if r.path.is_file()]
    if not existing:
        gone = sorted({f"{r.path} (recorded in {r.source})" for r in recorded})
        raise FileNotFoundError(
            f"--ckpt_path best: the best checkpoints recorded under {root} do not exist (moved "
            f"or deleted?): {gone}; name one with --ckpt_path PATH"
        )
    criteria = sorted({(r.monitor, str(r.mode)) for r in existing})
    if len(criteria) != 1 or existing[0].mode not in ("max", "min"):
        named = ", ".join(f"{monitor} ({mode})" for monitor, mode in criteria)
        raise ValueError(
            f"--ckpt_path best: the runs under {root} record their best by {named}; expected "
            "one monitor with mode max or min to compare them by; name one with --ckpt_path PATH"
        )
    sign = 1.0 if existing[0].mode == "max" else -1.0
    # A NaN score is the worst; on a tie the newest file wins.
    chosen = max(
        existing,
        key=lambda r: (
            -math.inf if math.isnan(r.score) else sign * r.score,
            r.path.stat().st_mtime,
        ),
    )
    print(
        f"--ckpt_path best: {chosen.path} ({chosen.monitor}={chosen.score:.6g}, the "
        f"{chosen.mode} of {len({r.path for r in existing})} recorded best checkpoints under "
        f"{root})",
        file=sys.stderr,
    )
    return chosen.path


_MODE_IN_STATE_KEY = re.compile(r"'mode': '(\w+)'")


def recorded_best(checkpoint: ModuleCheckpoint) -> list[RecordedBest]:
    """The best checkpoint each monitored ``ModelCheckpoint`` state in ``checkpoint`` records.

    The state holds ``monitor``, ``best_model_path`` and ``best_model_score``; the mode is only
    in its key (``ModelCheckpoint{'monitor': 'val/acc', 'mode': 'max', ...}``).
    """
    out = []
    for name, state in checkpoint.callbacks.items():
        if not name.startswith("ModelCheckpoint") or not isinstance(state, dict):
            continue
        score = state.get("best_model_score")
        if not (state.get("monitor") and state.get("best_model_path")) or score is None:
            continue
        mode = _MODE_IN_STATE_KEY.search(name)
        out.append(
            RecordedBest(
                path=Path(state["best_model_path"]),
                score=float(score),
                monitor=str(state["monitor"]),
                mode=mode.group(1) if mode else None,
                source=checkpoint.path,
            )
        )
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
    if value == "last":  # find_best prints its choice and score itself
        print(f"--ckpt_path {value}: {path}", file=sys.stderr)
    checkpoint = read_module_checkpoint(path)
    check_module_class(checkpoint, config.get("model.class_path"))
    config["ckpt_path"] = str(path)
    return checkpoint
