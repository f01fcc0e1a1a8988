"""Dataset sources: one class per on-disk layout, chosen in YAML with ``class_path``.

Each source knows its own options and reads its metadata (never audio) into a
``ClipSplits``; ``num_classes``, ``class_names`` and ``multi_label`` are known right after
construction, which is when the CLI links them into the model::

    data:
      source:
        class_path: fastast_pl.data.sources.ESC50Source
        init_args: {root: data/ESC-50, val_fold: 1}

- ``SyntheticSource``: the built-in generated dataset (``synthetic.py``), made in ``prepare()``.
- ``ESC50Source``: ESC-50 as published (``audio/*.wav``, ``meta/esc50.csv``); one fold is
  validation and test, the other four train; optional ESC-10 subset.
- ``ManifestSource``: AST-style JSON manifests ``{"data": [{"wav": ..., "labels": "a,b"}]}``
  with ``class_labels_indices.csv`` (index, mid, display_name): AudioSet, FSD50K, Speech
  Commands. Relative ``wav`` paths are taken relative to the manifest's directory.
- ``FolderSource``: ``root/<class_name>/*.wav`` (or ``root/{train,val,test}/<class_name>/``).
"""

from __future__ import annotations

import csv
import inspect
import os
import random
from abc import ABC, abstractmethod
from functools import cached_property
from pathlib import Path

from fastast_pl.data.audio import AUDIO_EXTENSIONS
from fastast_pl.data.clips import SPLITS, Clip, ClipSplits, show
from fastast_pl.data.manifests import read_label_csv, read_manifest
from fastast_pl.data.synthetic import SyntheticConfig, check_synthetic, ensure_synthetic

ESC50_CSV_COLUMNS = ("filename", "fold", "target", "category", "esc10")


class DataSource(ABC):
    """A dataset on disk: its options, its splits and its label space.

    Subclasses store every constructor argument under its own name (``__repr__``, and the
    teacher-logits cache key, are built from them).
    """

    #: True when the data is made by ``prepare()`` (so it cannot be read at construction).
    generated: bool = False

    @abstractmethod
    def read(self) -> ClipSplits:
        """Every split's clips and the label space, from metadata only (no audio decoding)."""

    def prepare(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Create the data if this source generates it (never downloads). Default: nothing."""

    @cached_property
    def splits(self) -> ClipSplits:
        """``read()``, once."""
        return self.read()

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.splits.class_names

    @property
    def multi_label(self) -> bool:
        """Whether targets are multi-hot (sigmoid/BCE, mAP) rather than one-hot."""
        return self.splits.multi_label

    @classmethod
    def qualname(cls) -> str:
        """The ``class_path`` that names this source in a config."""
        return f"{cls.__module__}.{cls.__qualname__}"

    def options(self) -> dict[str, object]:
        """The constructor arguments, by name."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({args})"

    def __getstate__(self) -> dict[str, object]:  # never pickle the clip lists
        state = dict(self.__dict__)
        state.pop("splits", None)
        return state


def _require_dir(root: Path, what: str, how: str) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"{what} directory {root} does not exist. {how}")


class SyntheticSource(DataSource):
    """The built-in synthetic sound-event dataset, generated in ``root`` on first use.

    Args:
        root: A directory the generator owns (created; regenerated when settings change).
        generator: Generator settings (classes, clips per class, clip length, seed, SNR).
    """

    generated = True

    def __init__(
        self, root: str = "data/synthetic", generator: SyntheticConfig | None = None
    ) -> None:
        self.root = root
        self.generator = generator if generator is not None else SyntheticConfig()

    def prepare(self) -> None:  # noqa: B027 - an optional hook, not abstract
        ensure_synthetic(self.root, self.generator)

    def read(self) -> ClipSplits:
        root = Path(self.root)
        manifest = check_synthetic(root, self.generator)
        names = self.generator.class_names
        index = {name: i for i, name in enumerate(names)}
        splits: dict[str, list[Clip]] = {s: [] for s in SPLITS}
        with manifest.open(newline="") as fh:
            for row in csv.DictReader(fh):
                splits[row["split"]].append(Clip(root / row["path"], (index[row["label"]],)))
        return ClipSplits(splits, names, multi_label=False, source=f"synthetic dataset {root}")

    @property
    def num_classes(self) -> int:
        return self.generator.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.generator.class_names

    @property
    def multi_label(self) -> bool:
        return False


class ESC50Source(DataSource):
    """ESC-50 in its published layout; fold ``val_fold`` is validation and test (AST).

    Args:
        root: The ESC-50 directory (``audio/``, ``meta/esc50.csv``).
        val_fold: The fold (1-5) used for validation and test.
        esc10: Use only the ESC-10 subset (10 classes).
    """

    def __init__(self, root: str = "data/ESC-50", val_fold: int = 1, esc10: bool = False) -> None:
        if not 1 <= val_fold <= 5:
            raise ValueError(f"ESC-50 val_fold must be in 1..5, got {val_fold}")
        self.root, self.val_fold, self.esc10 = root, val_fold, esc10

    def read(self) -> ClipSplits:
        root = Path(self.root)
        how = (
            "Get ESC-50 with `python -m fastast_pl prepare esc50 --out <dir>` (downloads) or "
            "`... --archive ESC-50-master.zip` (an archive you already have)."
        )
        _require_dir(root, "ESC-50", how)
        meta = root / "meta" / "esc50.csv"
        if not meta.is_file():
            raise FileNotFoundError(f"ESC-50 meta file {meta} does not exist. {how}")
        with meta.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing_cols = [c for c in ESC50_CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing_cols:
                raise ValueError(
                    f"{meta}: missing columns {missing_cols}; found {reader.fieldnames}"
                )
            rows = list(reader)
        if self.esc10:
            rows = [r for r in rows if r["esc10"].strip().lower() in ("true", "1")]
        if not rows:
            raise ValueError(f"{meta}: no rows{' with esc10=True' if self.esc10 else ''}")
        # Class index: ESC-50 'target' (0-49); ESC-10 remaps its 10 targets to 0-9 in order.
        names_by_target: dict[int, str] = {}
        for line, r in enumerate(rows, start=2):
            try:
                names_by_target[int(r["target"])] = r["category"]
                int(r["fold"])
            except ValueError as err:
                raise ValueError(f"{meta} line {line}: bad target/fold value: {err}") from err
        targets = sorted(names_by_target)
        remap = {t: i for i, t in enumerate(targets)}
        splits: dict[str, list[Clip]] = {s: [] for s in SPLITS}
        for r in rows:
            clip = Clip(root / "audio" / r["filename"], (remap[int(r["target"])],))
            if int(r["fold"]) == self.val_fold:
                splits["val"].append(clip)
                splits["test"].append(clip)
            else:
                splits["train"].append(clip)
        source = f"ESC-{'10' if self.esc10 else '50'} {root} (val_fold={self.val_fold})"
        return ClipSplits(
            splits, [names_by_target[t] for t in targets], multi_label=False, source=source
        )


class ManifestSource(DataSource):
    """AST JSON manifests per split plus the label csv; ``test`` defaults to ``val``.

    Args:
        label_csv: ``class_labels_indices.csv`` (index, mid, display_name).
        train: Training JSON manifest.
        val: Validation JSON manifest.
        test: Test JSON manifest (None: the validation manifest).
        multi_label: Multi-label targets; None infers it (any clip with > 1 label).
    """

    def __init__(
        self,
        label_csv: str,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        multi_label: bool | None = None,
    ) -> None:
        if train is None and val is None:
            raise ValueError("ManifestSource needs at least a train or a val manifest")
        self.label_csv, self.train, self.val, self.test = label_csv, train, val, test
        self._multi_label = multi_label

    def options(self) -> dict[str, object]:
        return {
            "label_csv": self.label_csv,
            "train": self.train,
            "val": self.val,
            "test": self.test,
            "multi_label": self._multi_label,  # the setting, not the inferred value
        }

    @property
    def multi_label(self) -> bool:
        return self._multi_label if self._multi_label is not None else self.splits.multi_label

    def read(self) -> ClipSplits:
        mids, names = read_label_csv(self.label_csv)
        mid_to_index = {mid: i for i, mid in enumerate(mids)}
        test = self.test if self.test is not None else self.val
        paths = {"train": self.train, "val": self.val, "test": test}
        splits = {
            name: read_manifest(p, mid_to_index, allow_unlabelled=self._multi_label is True)
            if p is not None
            else []
            for name, p in paths.items()
        }
        multi_label = self._multi_label
        if multi_label is None:
            multi_label = any(len(c.labels) > 1 for clips in splits.values() for c in clips)
        source = f"manifests ({self.train}, {self.val}, {test})"
        return ClipSplits(splits, names, multi_label=multi_label, source=source)


def _audio_files(folder: Path, notes: list[str] | None = None) -> list[Path]:
    """Audio files of ``folder``, sorted; macOS AppleDouble files (``._name.wav``, metadata
    that copying from a Mac leaves behind, not audio) are left out and listed in ``notes``.

    Raises ValueError for a folder without audio: it would be a class with no clips.
    """
    files, appledouble, broken, other = [], [], [], []
    for p in sorted(folder.iterdir()):
        if p.is_symlink() and not p.exists():
            broken.append(p)
        elif p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS:
            (appledouble if p.name.startswith("._") else files).append(p)
        elif p.is_file() and not p.name.startswith("."):
            other.append(p)
    if notes is not None:
        if appledouble:
            notes.append(
                f"{folder}: ignored {len(appledouble)} macOS AppleDouble metadata file(s) "
                f"(not audio): {show([p.name for p in appledouble])}"
            )
        if broken:
            notes.append(
                f"{folder}: left out {len(broken)} broken symbolic link(s) (target missing): "
                f"{show([f'{p.name} -> {os.readlink(p)}' for p in broken])}"
            )
        if other:
            notes.append(
                f"{folder}: left out {len(other)} file(s) without an audio extension (expected "
                f"*{', *'.join(AUDIO_EXTENSIONS)}): {show([p.name for p in other])}"
            )
    if not files:
        raise ValueError(
            f"class folder {folder} holds no audio files (expected *{', *'.join(AUDIO_EXTENSIONS)}"
            f", found {show([p.name for p in folder.iterdir()]) if any(folder.iterdir()) else 'nothing'}); "
            "remove it or add its clips, or it becomes a class the model is taught without examples"
        )
    return files


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


class FolderSource(DataSource):
    """``root/<class>/*.{wav,flac,ogg}``; or ``root/{train,val[,test]}/<class>/...``.

    Without split folders each class's files are split by a shuffle seeded with ``seed``.

    Args:
        root: The folder holding one sub-directory per class (or per split).
        val_fraction: Share of each class for validation (without split folders).
        test_fraction: Share of each class for test (without split folders).
        seed: Seed of the per-class shuffle that makes the splits.
    """

    def __init__(
        self, root: str, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
    ) -> None:
        if not (
            0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1
        ):
            raise ValueError(
                f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
            )
        self.root, self.val_fraction, self.test_fraction = root, val_fraction, test_fraction
        self.seed = seed

    def read(self) -> ClipSplits:
        root = Path(self.root)
        _require_dir(root, "audio folder", "Expected root/<class_name>/*.wav.")
        split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
        splits: dict[str, list[Clip]] = {s: [] for s in SPLITS}
        notes: list[str] = []
        if "train" in split_dirs and "val" in split_dirs:
            class_names = sorted({d.name for s in split_dirs.values() for d in _class_dirs(s)})
            index = {n: i for i, n in enumerate(class_names)}
            for split, folder in split_dirs.items():
                for d in _class_dirs(folder):
                    splits[split] += [Clip(f, (index[d.name],)) for f in _audio_files(d, notes)]
            if "test" not in split_dirs:
                splits["test"] = list(splits["val"])
        else:
            class_names = [d.name for d in _class_dirs(root)]
            for i, d in enumerate(_class_dirs(root)):
                files = _audio_files(d, notes)
                random.Random(f"{self.seed}/{d.name}").shuffle(files)
                n_val = int(round(len(files) * self.val_fraction))
                n_test = int(round(len(files) * self.test_fraction))
                splits["val"] += [Clip(f, (i,)) for f in files[:n_val]]
                splits["test"] += [Clip(f, (i,)) for f in files[n_val : n_val + n_test]]
                splits["train"] += [Clip(f, (i,)) for f in files[n_val + n_test :]]
        if not class_names:
            raise ValueError(
                f"audio folder {root} has no class sub-directories (expected root/<class_name>/*.wav)"
            )
        return ClipSplits(
            splits, class_names, multi_label=False, source=f"audio folder {root}", notes=notes
        )
