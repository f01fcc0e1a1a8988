"""Dataset layouts read into clip lists, and the torch Dataset that turns clips into features.

Readers (metadata only, no audio decoding) return a ``ClipSplits``:

- ``read_synthetic``: the built-in generated dataset (``synthetic.py``).
- ``read_esc50``: ESC-50 as published (``audio/*.wav``, ``meta/esc50.csv``); one fold is
  validation and test, the other four train; optional ESC-10 subset.
- ``read_manifests``: AST-style JSON manifests ``{"data": [{"wav": ..., "labels": "a,b"}]}``
  with ``class_labels_indices.csv`` (index, mid, display_name): AudioSet, FSD50K, Speech
  Commands. Relative ``wav`` paths are taken relative to the manifest's directory.
- ``read_folder``: ``root/<class_name>/*.wav`` (or ``root/{train,val,test}/<class_name>/``).

``AudioDataset`` decodes, computes the fbank (or reads it from the cache), and for training
applies mixup and SpecAugment; it yields ``{"fbank": (T, F), "target": (C,), "index": ()}``.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset, get_worker_info

from fastast_pl.data.audio import AUDIO_EXTENSIONS, AudioDecodeError, load_audio
from fastast_pl.data.cache import FeatureCache
from fastast_pl.data.features import (
    FeatureConfig,
    SpecAugment,
    compute_fbank,
    crop,
    mix,
    normalize,
    pad_or_crop,
    sample_mixup_lambda,
)
from fastast_pl.data.synthetic import SyntheticConfig, check_synthetic

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ESC50_CSV_COLUMNS = ("filename", "fold", "target", "category", "esc10")


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


def _show(items: Sequence[object], limit: int = 5) -> str:
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
        raise FileNotFoundError(
            f"{splits.source}: audio files listed but missing: {_show(missing)}"
        )


def check_nonempty(splits: ClipSplits, required: Sequence[str]) -> None:
    """Raise ValueError if a split that will be used holds no clips."""
    for name in required:
        if not splits.splits.get(name):
            raise ValueError(f"{splits.source}: the {name!r} split is empty")


def _require_dir(root: Path, what: str, how: str) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"{what} directory {root} does not exist. {how}")


# ---------------------------------------------------------------------------------------
# Synthetic


def read_synthetic(root: str | Path, config: SyntheticConfig) -> ClipSplits:
    """The generated synthetic dataset in ``root`` (must match ``config``)."""
    root = Path(root)
    manifest = check_synthetic(root, config)
    names = config.class_names
    index = {name: i for i, name in enumerate(names)}
    splits: dict[str, list[Clip]] = {s: [] for s in SPLITS}
    with manifest.open(newline="") as fh:
        for row in csv.DictReader(fh):
            splits[row["split"]].append(Clip(root / row["path"], (index[row["label"]],)))
    return ClipSplits(splits, names, multi_label=False, source=f"synthetic dataset {root}")


# ---------------------------------------------------------------------------------------
# ESC-50


def read_esc50(root: str | Path, val_fold: int = 1, esc10: bool = False) -> ClipSplits:
    """ESC-50 in its published layout; fold ``val_fold`` is validation and test."""
    root = Path(root)
    how = (
        "Get ESC-50 with `python -m fastast_pl prepare esc50 --out <dir>` (downloads) or "
        "`... --archive ESC-50-master.zip` (an archive you already have)."
    )
    _require_dir(root, "ESC-50", how)
    meta = root / "meta" / "esc50.csv"
    if not meta.is_file():
        raise FileNotFoundError(f"ESC-50 meta file {meta} does not exist. {how}")
    if not 1 <= val_fold <= 5:
        raise ValueError(f"ESC-50 val_fold must be in 1..5, got {val_fold}")
    with meta.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing_cols = [c for c in ESC50_CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing_cols:
            raise ValueError(f"{meta}: missing columns {missing_cols}; found {reader.fieldnames}")
        rows = list(reader)
    if esc10:
        rows = [r for r in rows if r["esc10"].strip().lower() in ("true", "1")]
    if not rows:
        raise ValueError(f"{meta}: no rows{' with esc10=True' if esc10 else ''}")
    # Class index: ESC-50 'target' (0-49); ESC-10 remaps its 10 targets to 0-9 in target order.
    names_by_target: dict[int, str] = {}
    for line, r in enumerate(rows, start=2):
        try:
            names_by_target[int(r["target"])] = r["category"]
            int(r["fold"])
        except ValueError as err:
            raise ValueError(f"{meta} line {line}: bad target/fold value: {err}") from err
    targets = sorted(names_by_target)
    remap = {t: i for i, t in enumerate(targets)}
    class_names = [names_by_target[t] for t in targets]
    splits: dict[str, list[Clip]] = {s: [] for s in SPLITS}
    for r in rows:
        clip = Clip(root / "audio" / r["filename"], (remap[int(r["target"])],))
        if int(r["fold"]) == val_fold:
            splits["val"].append(clip)
            splits["test"].append(clip)
        else:
            splits["train"].append(clip)
    source = f"ESC-{'10' if esc10 else '50'} {root} (val_fold={val_fold})"
    return ClipSplits(splits, class_names, multi_label=False, source=source)


# ---------------------------------------------------------------------------------------
# AST JSON manifests


def read_label_csv(path: str | Path) -> tuple[list[str], list[str]]:
    """``class_labels_indices.csv`` -> (mids, display names), ordered by index."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"label csv {path} does not exist (expected columns index,mid,display_name)"
        )
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"index", "mid", "display_name"} <= set(reader.fieldnames or []):
            raise ValueError(
                f"{path}: expected columns index,mid,display_name, found {reader.fieldnames}"
            )
        rows = sorted(reader, key=lambda r: int(r["index"]))
    indices = [int(r["index"]) for r in rows]
    if indices != list(range(len(rows))):
        raise ValueError(
            f"{path}: the index column must be 0..{len(rows) - 1} without gaps, found {_show(indices)}"
        )
    if not rows:
        raise ValueError(f"{path}: no classes")
    return [r["mid"] for r in rows], [r["display_name"] for r in rows]


def read_manifest(path: str | Path, mid_to_index: dict[str, int]) -> list[Clip]:
    """Clips of one AST JSON manifest; errors name the manifest and the entry number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    try:
        payload = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"manifest {path} is not valid JSON: {err}") from err
    entries = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        raise ValueError(
            f'manifest {path}: expected {{"data": [{{"wav": ..., "labels": ...}}, ...]}}'
        )
    clips = []
    for number, entry in enumerate(entries):
        where = f"manifest {path} entry {number}"
        if not isinstance(entry, dict) or "wav" not in entry:
            raise ValueError(f'{where}: no "wav" key (entry: {str(entry)[:120]})')
        if "labels" not in entry:
            raise ValueError(f'{where} ({entry["wav"]}): no "labels" key')
        names = [x.strip() for x in str(entry["labels"]).split(",") if x.strip()]
        unknown = [x for x in names if x not in mid_to_index]
        if unknown:
            raise ValueError(
                f"{where} ({entry['wav']}): unknown labels {unknown}, not in the label csv"
            )
        wav = Path(entry["wav"])
        clips.append(
            Clip(
                wav if wav.is_absolute() else path.parent / wav,
                tuple(mid_to_index[x] for x in names),
            )
        )
    return clips


def read_manifests(
    train: str | Path | None,
    val: str | Path | None,
    test: str | Path | None,
    label_csv: str | Path,
    multi_label: bool | None = None,
) -> ClipSplits:
    """AST JSON manifests per split; ``test`` defaults to ``val``.

    ``multi_label=None`` infers it: multi-label if any clip has more than one label.
    """
    mids, names = read_label_csv(label_csv)
    mid_to_index = {mid: i for i, mid in enumerate(mids)}
    test = test if test is not None else val
    splits = {
        name: read_manifest(p, mid_to_index) if p is not None else []
        for name, p in (("train", train), ("val", val), ("test", test))
    }
    if multi_label is None:
        multi_label = any(len(c.labels) > 1 for clips in splits.values() for c in clips)
    return ClipSplits(
        splits, names, multi_label=multi_label, source=f"manifests ({train}, {val}, {test})"
    )


# ---------------------------------------------------------------------------------------
# Folder per class


def _audio_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
    )


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def read_folder(
    root: str | Path, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> ClipSplits:
    """``root/<class>/*.{wav,flac,ogg}``; or ``root/{train,val[,test]}/<class>/...``.

    Without split folders each class's files are split by a seeded shuffle.
    """
    root = Path(root)
    _require_dir(root, "audio folder", "Expected root/<class_name>/*.wav.")
    split_dirs = {s: root / s for s in SPLITS if (root / s).is_dir()}
    splits: dict[str, list[Clip]] = {s: [] for s in SPLITS}
    if "train" in split_dirs and "val" in split_dirs:
        class_names = sorted({d.name for s in split_dirs.values() for d in _class_dirs(s)})
        index = {n: i for i, n in enumerate(class_names)}
        for split, folder in split_dirs.items():
            for d in _class_dirs(folder):
                splits[split] += [Clip(f, (index[d.name],)) for f in _audio_files(d)]
        if "test" not in split_dirs:
            splits["test"] = list(splits["val"])
    else:
        if not (
            0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1
        ):
            raise ValueError(
                f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
            )
        class_names = [d.name for d in _class_dirs(root)]
        for i, d in enumerate(_class_dirs(root)):
            files = _audio_files(d)
            random.Random(f"{seed}/{d.name}").shuffle(files)
            n_val = int(round(len(files) * val_fraction))
            n_test = int(round(len(files) * test_fraction))
            splits["val"] += [Clip(f, (i,)) for f in files[:n_val]]
            splits["test"] += [Clip(f, (i,)) for f in files[n_val : n_val + n_test]]
            splits["train"] += [Clip(f, (i,)) for f in files[n_val + n_test :]]
    if not class_names:
        raise ValueError(
            f"audio folder {root} has no class sub-directories (expected root/<class_name>/*.wav)"
        )
    return ClipSplits(splits, class_names, multi_label=False, source=f"audio folder {root}")


# ---------------------------------------------------------------------------------------
# Bad-audio bookkeeping shared between DataLoader workers


class BadAudioTally:
    """Counts skipped clips per DataLoader worker in shared memory, without locks.

    Each worker writes only its own row (row 0: the main process), so counts are exact.
    """

    def __init__(self, slots: int = 64, keep: int = 8) -> None:
        self.counts = torch.zeros(slots + 1, dtype=torch.int64).share_memory_()
        self.first = torch.full((slots + 1, keep), -1, dtype=torch.int64).share_memory_()

    def record(self, index: int) -> None:
        info = get_worker_info()
        row = 0 if info is None else 1 + info.id % (len(self.counts) - 1)
        n = int(self.counts[row])
        if n < self.first.shape[1]:
            self.first[row, n] = index
        self.counts[row] = n + 1

    def total(self) -> int:
        return int(self.counts.sum())

    def first_indices(self) -> list[int]:
        return [int(i) for i in self.first.flatten() if i >= 0]

    def reset(self) -> None:
        self.counts.zero_()
        self.first.fill_(-1)


# ---------------------------------------------------------------------------------------
# The torch Dataset


class AudioDataset(Dataset):
    """Clips of one split as model-ready features (callable without a Trainer).

    Args:
        clips: The split's clips.
        num_classes: Size of the target vector.
        features: Feature settings (fbank, length, normalization, training dither).
        train: Apply dither, mixup and SpecAugment (training split only).
        freqm: SpecAugment frequency mask width (training only; 0 disables).
        timem: SpecAugment time mask width (training only; 0 disables).
        mixup: Probability of mixing a clip with another random clip (training only).
        mixup_alpha: Beta(alpha, alpha) parameter of the mixing weight.
        cache: Optional feature cache (used unless training with dither > 0).
        on_bad_audio: "raise": an unreadable clip stops loading with its path; "skip":
            it is replaced by another random clip and recorded in ``tally``.
        tally: Where skipped clips are counted (created if not given).
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        num_classes: int,
        features: FeatureConfig,
        train: bool = False,
        freqm: int = 0,
        timem: int = 0,
        mixup: float = 0.0,
        mixup_alpha: float = 10.0,
        cache: FeatureCache | None = None,
        on_bad_audio: Literal["raise", "skip"] = "raise",
        tally: BadAudioTally | None = None,
    ) -> None:
        if not 0.0 <= mixup <= 1.0:
            raise ValueError(f"mixup probability must be in [0, 1], got {mixup}")
        if on_bad_audio not in ("raise", "skip"):
            raise ValueError(f"on_bad_audio must be 'raise' or 'skip', got {on_bad_audio!r}")
        self.clips = list(clips)
        self.num_classes = num_classes
        self.features = features
        self.train = train
        self.mixup = mixup if train else 0.0
        self.mixup_alpha = mixup_alpha
        self.specaug = SpecAugment(freqm, timem) if train and (freqm or timem) else None
        self.dither = features.dither if train else 0.0
        self.cache = cache if self.dither == 0 else None
        self.on_bad_audio = on_bad_audio
        self.tally = tally if tally is not None else BadAudioTally()

    def __len__(self) -> int:
        return len(self.clips)

    def target(self, index: int) -> torch.Tensor:
        """One-hot / multi-hot target of clip ``index``, ``(C,)`` float32."""
        out = torch.zeros(self.num_classes, dtype=torch.float32)
        out[list(self.clips[index].labels)] = 1.0
        return out

    def raw_fbank(self, index: int) -> torch.Tensor:
        """Unnormalized fbank of clip ``index`` cropped to ``target_length``, ``(frames, F)``.

        Raises:
            AudioDecodeError: the clip cannot be decoded.
        """
        path = self.clips[index].path
        if self.cache is not None:
            cached = self.cache.load(path)
            if cached is not None:
                return cached
        waveform = load_audio(path, self.features.sample_rate)  # (1, N)
        fbank = crop(
            compute_fbank(waveform, self.features, dither=self.dither), self.features.target_length
        )
        if self.cache is not None:
            self.cache.save(path, fbank)
        return fbank

    def _load(self, index: int) -> tuple[int, torch.Tensor]:
        """(index actually used, padded raw fbank ``(T, F)``), skipping bad clips if asked."""
        for _ in range(20):
            try:
                return index, pad_or_crop(self.raw_fbank(index), self.features.target_length)
            except AudioDecodeError:
                if self.on_bad_audio == "raise":
                    raise
                self.tally.record(index)
                index = int(torch.randint(len(self.clips), ()))
        raise RuntimeError(
            "20 clips in a row could not be decoded; is the dataset readable at all?"
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index, fbank = self._load(index)  # (T, F)
        target = self.target(index)
        if self.mixup > 0 and float(torch.rand(())) < self.mixup:
            other, fbank_other = self._load(int(torch.randint(len(self.clips), ())))
            lam = sample_mixup_lambda(self.mixup_alpha)
            fbank, target = mix(fbank, target, fbank_other, self.target(other), lam)
        fbank = normalize(fbank, self.features.mean, self.features.std)
        if self.specaug is not None:
            fbank = self.specaug(fbank)
        return {
            "fbank": fbank.float(),
            "target": target,
            "index": torch.tensor(index, dtype=torch.int64),
        }

    def bad_paths(self) -> list[str]:
        """Paths of the first few clips skipped so far."""
        return [str(self.clips[i].path) for i in self.tally.first_indices()]
