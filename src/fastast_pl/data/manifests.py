"""AST-style metadata files: ``class_labels_indices.csv`` and the JSON clip manifests.

Both are checked as they are read: every error names the file, the line or entry, and
the expected and found value (a duplicate index or mid, an unknown or empty label).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from fastast_pl.data.clips import Clip, show


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
        numbered = list(enumerate(reader, start=2))  # (line number, row)
    first: dict[tuple[str, str], int] = {}
    for line, r in numbered:
        for column in ("index", "mid"):
            value = r[column].strip()
            seen = first.setdefault((column, value), line)
            if seen != line:
                raise ValueError(
                    f"{path} line {line}: {column} {value!r} is already used on line {seen}; "
                    f"expected every {column} once"
                )
    try:
        rows = [r for _, r in sorted(numbered, key=lambda x: int(x[1]["index"]))]
    except ValueError as err:
        raise ValueError(f"{path}: the index column must hold integers: {err}") from err
    indices = [int(r["index"]) for r in rows]
    if indices != list(range(len(rows))):
        raise ValueError(
            f"{path}: the index column must be 0..{len(rows) - 1} without gaps, found {show(indices)}"
        )
    if not rows:
        raise ValueError(f"{path}: no classes")
    return [r["mid"] for r in rows], [r["display_name"] for r in rows]


def read_manifest(
    path: str | Path, mid_to_index: dict[str, int], allow_unlabelled: bool = False
) -> list[Clip]:
    """Clips of one AST JSON manifest; errors name the manifest and the entry number.

    An entry with empty ``labels`` is an error unless ``allow_unlabelled`` (declared
    multi-label data, where a clip of none of the classes is a negative for all).
    """
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
        if not names and not allow_unlabelled:
            raise ValueError(
                f'{where} ({entry["wav"]}): "labels" is empty (found {entry["labels"]!r}); '
                "expected at least one label of the label csv (or set multi_label: true if "
                "clips of none of the classes are intended)"
            )
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
