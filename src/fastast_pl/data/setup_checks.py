"""What ``AudioDataModule.setup`` checks of the splits before a run: the metadata (the
classes announced before the data existed, no empty split, every listed file present,
evaluation clips that are training audio) and, with ``on_bad_audio=skip``, which
evaluation clips do not decode (left out of the split and reported once)."""

from __future__ import annotations

import logging
from pathlib import Path

from torch.utils.data import DataLoader, Dataset

from fastast_pl.data.audio import AudioDecodeError, decode
from fastast_pl.data.checks import leaks_across_splits
from fastast_pl.data.clips import SPLITS, Clip, ClipSplits, check_files, check_nonempty, show

log = logging.getLogger(__name__)


def check_splits(
    splits: ClipSplits,
    announced_classes: int,
    needed: tuple[str, ...],
    check_files_exist: bool,
    noted: set[str],
) -> None:
    """Raise on metadata the run cannot use; log the ``needed`` splits' sizes and, once per
    datamodule (``noted`` remembers), the source's notes and the evaluation clips that hold
    training audio."""
    if splits.num_classes != announced_classes:  # the model was built with announced_classes
        raise ValueError(
            f"{splits.source} has {splits.num_classes} classes, but {announced_classes} were "
            "announced before the data existed (and linked into the model); rerun now "
            "that the data is in place"
        )
    check_nonempty(splits, needed)
    if check_files_exist:
        check_files(splits.subset(needed))
    log.info(
        "%s: %d classes (%s), %s",
        splits.source,
        splits.num_classes,
        "multi-label" if splits.multi_label else "single-label",
        ", ".join(f"{s}={len(splits.splits[s])}" for s in needed),
    )
    for note in splits.notes:
        if note not in noted:
            log.info("%s", note)
            noted.add(note)
    if "train" in needed and "leaks" not in noted:
        noted.add("leaks")
        leaks = leaks_across_splits({s: [c.path for c in splits.splits[s]] for s in SPLITS})
        if leaks:
            log.warning(
                "%s: %d evaluation clip(s) hold training audio; their scores are not held "
                "out:\n  %s",
                splits.source,
                len(leaks),
                "\n  ".join(leaks),
            )


def readable_clips(
    clips: list[Clip], scanned: dict[Path, str | None], window_ms: float, num_workers: int
) -> tuple[list[Clip], list[tuple[Path, str]]]:
    """``clips`` without the bad ones, and the left-out ``(path, reason)``; each file is
    decoded once (``scanned`` remembers its verdict), in ``num_workers`` loader workers."""
    todo = list(dict.fromkeys(c.path for c in clips if c.path not in scanned))
    if todo:
        scan = DataLoader(
            _DecodeCheck(todo, window_ms),
            batch_size=None,
            num_workers=min(num_workers, len(todo)),
        )
        scanned.update(zip(todo, scan))
    kept = [c for c in clips if scanned[c.path] is None]
    bad = list(dict.fromkeys((c.path, scanned[c.path]) for c in clips if c not in kept))
    return kept, bad  # type: ignore[return-value]


def report_left_out(split: str, bad: list[tuple[Path, str]], kept: int, total: int) -> None:
    """Raise if ``split`` kept no clip; otherwise warn with the left-out files, if any."""
    if bad and not kept:
        raise ValueError(
            f"{split} split: all {len(bad)} clip(s) are unreadable (on_bad_audio=skip "
            f"leaves nothing to evaluate): {show([f'{p} ({r})' for p, r in bad])}"
        )
    if bad:
        log.warning(
            "%s split: left out %d unreadable clip(s) of %d (on_bad_audio=skip): %s",
            split, len(bad), total, show([f"{p} ({r})" for p, r in bad], limit=20),
        )  # fmt: skip


class _DecodeCheck(Dataset):
    """Item i: None if file i decodes and passes the checks, else why not (for the scan)."""

    def __init__(self, paths: list[Path], window_ms: float) -> None:
        self.paths, self.window_ms = paths, window_ms

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> str | None:
        try:
            decode(self.paths[index], self.window_ms)
        except AudioDecodeError as err:
            return err.reason
        return None
