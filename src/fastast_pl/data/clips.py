"""The clip lists every dataset source returns, and the checks run on them before loading."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Clip:
    """One audio file and its label indices."""

    path: Path
    labels: tuple[int, ...]


@dataclass
class ClipSplits:
    """The clips of every split plus the label space they share."""

    splits: dict[str, list[Clip]]
    class_names: list[str]
    multi_label: bool
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, names: Sequence[str]) -> ClipSplits:
        """The same label space with only the splits ``names``."""
        return ClipSplits(
            {s: self.splits[s] for s in names},
            self.class_names,
            self.multi_label,
            self.source,
            list(self.notes),
        )


def split_fingerprint(clips: Sequence[Clip]) -> dict[str, object]:
    """The number of clips and a SHA-256 of their paths and labels, in split order: what a
    resumed run compares to know that its splits are the ones it started with."""
    digest = hashlib.sha256()
    for clip in clips:
        digest.update(f"{clip.path}\t{','.join(map(str, clip.labels))}\n".encode())
    return {"clips": len(clips), "sha256": digest.hexdigest()}


def show(items: Sequence[object], limit: int = 5) -> str:
    """The first ``limit`` items and the count, for error messages."""
    head = ", ".join(str(x) for x in items[:limit])
    return head + (
        f", ... ({len(items)} in all)" if len(items) > limit else f" ({len(items)} in all)"
    )


def check_files(splits: ClipSplits) -> None:
    """Raise FileNotFoundError naming the first few missing files and their count."""
    paths = dict.fromkeys(
        c.path for clips in splits.splits.values() for c in clips
    )  # ordered, unique
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{splits.source}: audio files listed but missing: {show(missing)}")


def check_nonempty(splits: ClipSplits, required: Sequence[str]) -> None:
    """Raise ValueError if a split that will be used holds no clips."""
    for name in required:
        if not splits.splits.get(name):
            raise ValueError(f"{splits.source}: the {name!r} split is empty")
