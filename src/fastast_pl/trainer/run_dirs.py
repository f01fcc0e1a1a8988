"""A run never writes into a directory an earlier run wrote: refuse before anything is touched.

Lightning reuses a directory it is pointed at: a ``CSVLogger`` given an existing version
deletes that run's ``metrics.csv`` as soon as the logger starts (before LightningCLI's own
refusal to overwrite ``config.yaml``), and a ``ModelCheckpoint`` writing into a directory that
holds checkpoints overwrites ``last.ckpt`` and deletes the old top-k files. This check runs
before the trainer starts and names the directory and how to choose a new one.

A fit resumed from a checkpoint may keep writing checkpoints into that checkpoint's own
directory: that is the same run, continued (``--ckpt_path last`` after a preemption).
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback

NEW_LOG_DIR = (
    "leave trainer.logger.init_args.version unset (each run then gets a new version_N), or set "
    "a new --trainer.logger.init_args.version or --trainer.logger.init_args.name, or a new "
    "--trainer.default_root_dir"
)
NEW_CKPT_DIR = (
    "give this ModelCheckpoint a new dirpath (or none: checkpoints then go into the run's own "
    "log directory), or continue that run with --ckpt_path pointing at a checkpoint in it"
)


#: What a run writes into its log directory (Lightning's CSV logger, LightningCLI, our
#: prediction writer, ModelCheckpoint's default place); other files there (a sweep trial's
#: stdout.log written by the tool that started this run) are left alone and do not count.
RUN_FILES = ("metrics.csv", "hparams.yaml", "config.yaml", "checkpoints", "predictions*.csv")


def _run_files(directory: Path) -> list[Path]:
    return [p for pattern in RUN_FILES for p in directory.glob(pattern)]


def _local(path: object) -> Path | None:
    text = str(path)
    if path is None or ("://" in text and not text.startswith("file://")):
        return None
    return Path(text.removeprefix("file://"))


def _refuse(directory: Path, found: list[Path], what: str, how: str) -> FileExistsError:
    names = sorted(p.name for p in found)[:6]
    return FileExistsError(
        f"{directory}: {what} of an earlier run is already there ({names}); a new run must "
        f"not change or delete it, so nothing was started. To write elsewhere, {how}."
    )


def checkpoint_dir(trainer: pl.Trainer, callback: ModelCheckpoint) -> Path | None:
    """Where ``callback`` will save, by the rule of ``ModelCheckpoint.__resolve_ckpt_dir``."""
    if callback.dirpath is not None:
        return _local(callback.dirpath)
    if not trainer.loggers:
        return _local(os.path.join(trainer.default_root_dir, "checkpoints"))
    logger = trainer.loggers[0]
    version = logger.version
    if version is None:
        return None  # a W&B run without an id: a fresh one is made
    version = version if isinstance(version, str) else f"version_{version}"
    save_dir = logger.save_dir or trainer.default_root_dir
    return _local(os.path.join(save_dir, str(logger.name), version, "checkpoints"))


def check_fresh_run_dirs(trainer: pl.Trainer, fitting: bool, ckpt_path: str | None) -> None:
    """Raise FileExistsError if this run would write into what an earlier run wrote."""
    for logger in trainer.loggers:
        log_dir = _local(getattr(logger, "log_dir", None))  # CSV/TensorBoard: their version dir
        found = _run_files(log_dir) if log_dir is not None and log_dir.is_dir() else []
        if found:
            raise _refuse(log_dir, found, "the log directory", NEW_LOG_DIR)
    config_files = [
        cb.config_filename for cb in trainer.callbacks if isinstance(cb, SaveConfigCallback)
    ]
    run_dir = _local(trainer.log_dir)
    for name in config_files:
        if run_dir is not None and (run_dir / name).is_file():
            raise _refuse(run_dir, [run_dir / name], f"the {name}", NEW_LOG_DIR)
    if not fitting:
        return  # checkpoints are written by fit only
    resumed = Path(ckpt_path).resolve().parent if ckpt_path else None
    for callback in trainer.checkpoint_callbacks:
        directory = (
            checkpoint_dir(trainer, callback) if isinstance(callback, ModelCheckpoint) else None
        )
        if directory is None or not directory.is_dir() or directory.resolve() == resumed:
            continue
        found = sorted(directory.glob("*.ckpt"))
        if found:
            raise _refuse(directory, found, "the checkpoints", NEW_CKPT_DIR)
