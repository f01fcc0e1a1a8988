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

``last`` and ``best`` consider only runs of the same data as configured now: checkpoints whose
record (``models/checkpoints/record.py``) names the same data source (its class, root, split
settings and seeds) and the same feature settings (dither aside). A root shared by several
experiments (other seeds, splits or features) thus never hands one experiment's checkpoint to
another, where half the test clips may have been the other one's training clips. The runs
considered, and why any was left out, are printed.

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
    FEATURES_FREE_TO_DIFFER,
    ModuleCheckpoint,
    check_module_class,
    read_module_checkpoint,
)

#: Values Lightning gives a meaning of its own, passed on untouched.
LIGHTNING_VALUES = ("hpc", "registry")


def _newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


@dataclass(frozen=True)
class DataIdentity:
    """What tells one experiment's data from another's: the source and the features."""

    source: str  # repr of the DataSource: class, root, split settings, seeds
    features: dict[str, Any]  # FeatureConfig.to_dict()

    def differences(self, checkpoint: ModuleCheckpoint) -> str:
        """ "" when the checkpoint records this data; else what differs, for the listing."""
        record = checkpoint.record
        data = (record.data or {}) if record is not None else {}
        if record is None or record.version is None or "source" not in data:
            return "no data identity recorded"
        if data["source"] != self.source:
            return f"other data source {data['source']}"
        saved = record.features or {}
        keys = sorted((set(saved) & set(self.features)) - FEATURES_FREE_TO_DIFFER)
        other = [f"{k} {saved[k]!r}" for k in keys if saved[k] != self.features[k]]
        return f"other features ({', '.join(other)})" if other else ""


def data_identity_of(config: Any) -> DataIdentity | None:
    """The data identity a subcommand's configuration describes (source and features built
    the way LightningCLI builds them); None when it names no data source."""
    from jsonargparse import ArgumentParser

    from fastast_pl.data.features import FeatureConfig
    from fastast_pl.data.sources import DataSource

    source, features = config.get("data.source"), config.get("data.features")
    if source is None or features is None:
        return None
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--source", type=DataSource)
    parser.add_argument("--features", type=FeatureConfig)
    plain = {k: v.as_dict() if hasattr(v, "as_dict") else v for k, v in
             (("source", source), ("features", features))}  # fmt: skip
    parsed = parser.parse_object(plain)
    built = parser.instantiate_classes(parsed)
    return DataIdentity(repr(built.source), built.features.to_dict())


def same_data(
    files: list[Path], identity: DataIdentity | None, value: str, root: Path
) -> list[Path]:
    """The checkpoints among ``files`` of runs on ``identity``'s data; prints the runs considered."""
    if identity is None or not files:
        return files
    verdicts = {f: identity.differences(read_module_checkpoint(f)) for f in files}
    kept = [f for f, why in verdicts.items() if not why]
    runs: dict[Path, str] = {}
    for f, why in verdicts.items():
        run = f.parent.parent if f.parent.name == "checkpoints" else f.parent
        runs.setdefault(run, why or "same data")
    listing = "; ".join(f"{run}: {why}" for run, why in sorted(runs.items()))
    print(f"--ckpt_path {value}: runs considered under {root}: {listing}", file=sys.stderr)
    if not kept:
        raise FileNotFoundError(
            f"--ckpt_path {value}: none of the runs under {root} was trained on the data "
            f"configured now ({identity.source}, these features): {listing}. Point "
            "--trainer.default_root_dir at this experiment's runs or name a file with "
            "--ckpt_path PATH"
        )
    return kept


def find_last(root: Path, identity: DataIdentity | None = None) -> Path:
    """The newest ``last*.ckpt`` under ``root`` of a run on the same data."""
    files = list(root.rglob("last*.ckpt")) if root.is_dir() else []
    found = _newest(same_data(files, identity, "last", root))
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


def find_best(root: Path, identity: DataIdentity | None = None) -> Path:
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
    files = same_data(files, identity, "best", root)
    recorded = [r for f in files for r in recorded_best(read_module_checkpoint(f))]
    if identity is not None:  # a best recorded by a run on this data must be on it too
        recorded = [r for r in recorded if not r.path.is_file()
                    or not identity.differences(read_module_checkpoint(r.path))]  # fmt: skip
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


def resolve_ckpt_path(
    value: str | os.PathLike, root: Path, identity: DataIdentity | None = None
) -> Path:
    """``last``/``best``/PATH -> an existing file (see the module docstring)."""
    if value == "last":
        return find_last(root, identity)
    if value == "best":
        return find_best(root, identity)
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
    identity = data_identity_of(config) if value in ("last", "best") else None
    path = resolve_ckpt_path(value, root, identity)
    if value == "last":  # find_best prints its choice and score itself
        print(f"--ckpt_path {value}: {path}", file=sys.stderr)
    checkpoint = read_module_checkpoint(path)
    check_module_class(checkpoint, config.get("model.class_path"))
    config["ckpt_path"] = str(path)
    return checkpoint
