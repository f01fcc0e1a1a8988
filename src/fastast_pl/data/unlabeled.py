"""Training clips without labels: taught by the teacher alone (distillation on unlabeled audio).

Recordings are plentiful, labels are not; a frozen teacher can still give every recording
soft targets. Two sources, mixable: a folder or a manifest of audio without labels, and the
labeled training split itself with the labels of all but a fraction of its clips withheld
(for label-scarcity studies, e.g. a quarter of the labels and the teacher on all clips).
Unlabeled clips come in the batch with ``labeled`` False (docs/architecture.md, "Batches"):
their task loss is masked out and only the teacher's targets teach them.
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from fastast_pl.data.audio import AUDIO_EXTENSIONS
from fastast_pl.data.checks import leaks_across_splits, same_audio
from fastast_pl.data.clips import Clip, show

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnlabeledConfig:
    """Unlabeled training audio, mixed into the training split.

    Args:
        folder: Every audio file under this directory (recursively, sorted) is an unlabeled
            training clip. A file holding a training clip's audio (same file or identical
            bytes) is not added again, and one holding a val/test clip's is warned about
            (its score is then not held out); both are named in the log. A folder the data
            source reads labeled clips from (one beside a FolderSource's class folders is a
            class of its own) is refused.
        manifest: An AST-style JSON manifest ``{"data": [{"wav": ...}]}``: its clips are
            unlabeled training clips (labels in it, if any, are not used: warned); relative paths
            are taken relative to the manifest's directory. Checked as ``folder``.
        labeled_fraction: Keep the labels of this fraction of the labeled training clips
            (chosen per class, seeded by the datamodule's seed) and train on the others'
            audio as unlabeled clips; 1.0 keeps every label.
    """

    folder: str | None = None
    manifest: str | None = None
    labeled_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.labeled_fraction <= 1.0:
            raise ValueError(
                f"unlabeled.labeled_fraction must be in (0, 1], got {self.labeled_fraction}"
            )

    def audio_files(self) -> list[Path]:
        """The folder's and the manifest's audio files (each file once, in order)."""
        paths: list[Path] = []
        if self.folder is not None:
            root = Path(self.folder)
            if not root.is_dir():
                raise FileNotFoundError(
                    f"unlabeled.folder {root} is not a directory; expected a folder of audio"
                )
            found = sorted(
                p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
            )
            if not found:
                raise ValueError(
                    f"unlabeled.folder {root} holds no audio file ({sorted(AUDIO_EXTENSIONS)})"
                )
            paths += found
        if self.manifest is not None:
            paths += _manifest_audio(Path(self.manifest))
        unique: dict[Path, Path] = {}  # one entry per file, however its path is written
        for p in paths:
            unique.setdefault(p.resolve(), p)
        return list(unique.values())


def _manifest_audio(path: Path) -> list[Path]:
    """The ``wav`` of every entry of an AST-style manifest; errors name the entry."""
    if not path.is_file():
        raise FileNotFoundError(f"unlabeled.manifest {path} does not exist")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"unlabeled.manifest {path} is not valid JSON: {err}") from err
    entries = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'unlabeled.manifest {path}: expected {{"data": [{{"wav": ...}}, ...]}}')
    paths = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or "wav" not in entry:
            raise ValueError(f'unlabeled.manifest {path} entry {number}: no "wav" key')
        wav = Path(entry["wav"])
        paths.append(wav if wav.is_absolute() else path.parent / wav)
    labeled = sum(1 for e in entries if e.get("labels"))
    if labeled:  # clips meant to be labeled belong in data.source
        log.warning(
            "unlabeled.manifest %s: %d of its %d entries carry labels, which are not used "
            "(the clips train as unlabeled audio; labeled clips belong in data.source)",
            path,
            labeled,
            len(entries),
        )
    return paths


def withhold_labels(clips: list[Clip], fraction: float, seed: int) -> tuple[list[Clip], list[Clip]]:
    """(clips keeping their labels, clips whose labels are withheld): ``fraction`` of each
    class's clips (by first label, at least one per class) keep theirs; seeded, so the same
    clips are labeled in every run with the same seed."""
    if fraction >= 1.0:
        return list(clips), []
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, clip in enumerate(clips):
        by_class[clip.labels[0] if clip.labels else -1].append(i)
    rng = random.Random(seed)
    keep: set[int] = set()
    for members in by_class.values():
        count = max(1, round(fraction * len(members)))
        keep.update(rng.sample(members, count))
    return [c for i, c in enumerate(clips) if i in keep], [
        c for i, c in enumerate(clips) if i not in keep
    ]


def check_unlabeled_files(paths: list[Path]) -> None:
    """Raise FileNotFoundError naming the first missing unlabeled files."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"unlabeled audio files listed but missing: {show(missing)}")


def _refuse_class_folder(config: UnlabeledConfig, split_files: list[Path]) -> None:
    """Raise where ``unlabeled.folder`` is a folder the data source reads clips from: placed
    among a FolderSource's class folders, it is a class of its own (a phantom class whose
    clips are labeled with its name)."""
    if config.folder is None:
        return
    folder = Path(config.folder).resolve()
    inside = [p for p in split_files if Path(p).resolve().parent == folder]
    if inside:
        raise ValueError(
            f"unlabeled.folder {config.folder} is a folder the data source reads labeled clips "
            f"from ({len(inside)} of the splits' clips, e.g. {inside[0]}): inside a "
            "FolderSource root it is a class of its own, named after it. Move the unlabeled "
            "audio out of the source's root"
        )


def split_unlabeled(
    config: UnlabeledConfig,
    clips: list[Clip],
    seed: int,
    check_files: bool = True,
    held_out: dict[str, list[Path]] | None = None,
) -> tuple[list[Clip], list[Path]]:
    """(labeled training clips, unlabeled audio files) of a training split, counted in the log.

    A folder/manifest file whose audio is a training clip's (``checks.same_audio``: same
    file or identical bytes) is not added again: it is already in training, labeled or with
    its label withheld. One whose audio is a ``held_out`` (``val``/``test``) clip's is kept
    and warned about, as for labeled training audio (``checks.leaks_across_splits``): the
    teacher's targets on it train the student, so that clip's score is not held out.
    """
    evaluation = [p for paths in (held_out or {}).values() for p in paths]
    _refuse_class_folder(config, [c.path for c in clips] + evaluation)
    labeled, withheld = withhold_labels(clips, config.labeled_fraction, seed)
    extra = config.audio_files()
    if check_files:
        check_unlabeled_files(extra)
    in_training = same_audio([c.path for c in clips], extra)
    if in_training:
        log.warning(
            "%d file(s) of unlabeled.folder/manifest hold the audio of training clips and are "
            "not added again as unlabeled clips: %s",
            len(in_training),
            show([f"{p} (= {match[0]})" for p, match in in_training.items()]),
        )
        extra = [p for p in extra if p not in in_training]
    leaks = leaks_across_splits({"train": extra, **(held_out or {})}, training="unlabeled")
    if leaks:
        log.warning(
            "%d evaluation clip(s) are also unlabeled training audio (unlabeled.folder/"
            "manifest): the teacher's targets on them train the student, so their scores are "
            "not held out:\n  %s",
            len(leaks),
            "\n  ".join(leaks[:20])
            + (f"\n  ... {len(leaks) - 20} more" if len(leaks) > 20 else ""),
        )
    unlabeled = list(dict.fromkeys([c.path for c in withheld] + extra))
    log.info(
        "training clips: %d labeled, %d unlabeled (%d with their labels withheld, "
        "labeled_fraction=%s; %d from unlabeled.folder/manifest)",
        len(labeled),
        len(unlabeled),
        len(withheld),
        config.labeled_fraction,
        len(extra),
    )
    return labeled, unlabeled
