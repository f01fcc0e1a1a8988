"""Prepare ESC-50 and Speech Commands into the layouts ``AudioDataModule`` reads.

``prepare_dataset(name, out_dir, archive=None)`` takes an archive the user already has
(``ESC-50-master.zip``, ``speech_commands_v0.02.tar.gz``) or, when ``archive`` is None,
downloads it first (the only place in the package that touches the network). Archives are
extracted by the standard library (tarfile's ``"data"`` filter, zipfile's own path
handling): absolute paths, ``..`` components, outside links and devices are refused, so
nothing lands outside ``out_dir``. ``out_dir`` must be empty or missing, or
already prepared for the same dataset (then nothing is done); user data is never
overwritten.

Results:

- ESC-50: ``out_dir/audio/*.wav``, ``out_dir/meta/esc50.csv`` (``ESC50Source``).
- Speech Commands: ``out_dir/audio/<word>/*.wav``, ``out_dir/speechcommands_{train,valid,test}.json``
  (AST manifests, paths relative to ``out_dir``) and ``out_dir/class_labels_indices.csv``,
  split by the archive's ``validation_list.txt`` / ``testing_list.txt``
  (``ManifestSource``). ``_background_noise_`` is extracted but not listed.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Any, Literal

from fastast_pl.data.sources import ESC50Source, ManifestSource

log = logging.getLogger(__name__)

MARKER = ".fastast_prepared.json"
URLS = {
    "esc50": "https://github.com/karoldvl/ESC-50/archive/master.zip",
    "speechcommands": "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
}
DatasetName = Literal["esc50", "speechcommands"]


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the output directory, or is unsafe."""


def _extract_zip(archive: Path, out_dir: Path) -> int:
    """Extract with zipfile, which never writes outside ``out_dir`` (it drops absolute
    prefixes and ``..``); a member whose name zipfile had to rewrite is refused."""
    count = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if ((info.external_attr >> 16) & 0o170000) == 0o120000:
                raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link")
            written = Path(zf.extract(info, out_dir))
            if written != Path(os.path.normpath(out_dir / info.filename)):
                raise UnsafeArchiveError(
                    f"{archive}: member {info.filename!r} points outside the archive root; "
                    "refusing to extract"
                )
            count += not info.is_dir()
    return count


def _extract(archive: Path, out_dir: Path) -> int:
    """Extract ``archive`` (zip or tar) into ``out_dir``; return how many files it held.

    Tar archives go through tarfile's ``"data"`` filter, which refuses absolute paths,
    ``..``, links pointing outside ``out_dir`` and device files.
    """
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, out_dir)
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as err:
        raise ValueError(f"{archive} is neither a zip nor a readable tar archive: {err}") from err
    with tf:
        try:
            tf.extractall(out_dir, filter="data")
        except tarfile.FilterError as err:
            raise UnsafeArchiveError(f"{archive}: {err}; refusing to extract") from err
        return sum(1 for m in tf.getmembers() if m.isfile())


def _extract_dataset(archive: Path, work: Path, marker: str, dest: Path) -> None:
    """Extract ``archive`` once and move the folder holding ``marker`` (the archive root or
    its single top folder, e.g. ESC-50-master/) to ``dest``."""
    raw = work / "raw"
    count = _extract(archive, raw)
    candidates = [raw] + sorted(p for p in raw.iterdir() if p.is_dir()) if raw.exists() else []
    for folder in candidates:
        if (folder / marker).is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(folder, dest)
            return
    raise ValueError(f"{archive}: no {marker} inside ({count} files); is this the right archive?")


def _download(name: str, dest_dir: Path) -> Path:
    url = URLS[name]
    dest = dest_dir / url.rsplit("/", 1)[-1]
    log.warning("downloading %s to %s", url, dest)
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".download-")
    os.close(fd)
    try:
        urllib.request.urlretrieve(url, tmp)  # noqa: S310 - fixed https/http URL above
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def _check_out_dir(name: str, out_dir: Path) -> bool:
    """True if already prepared for ``name``; raise if non-empty and not ours."""
    marker = out_dir / MARKER
    if marker.is_file():
        prepared = json.loads(marker.read_text()).get("dataset")
        if prepared == name:
            return True
        raise FileExistsError(
            f"{out_dir} was prepared for {prepared!r}, not {name!r}; choose another out_dir"
        )
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"refusing to prepare {name} into {out_dir}: the directory is not empty. "
            "Choose an empty or new out_dir."
        )
    return False


def _prepare_esc50(archive: Path, work: Path, out_dir: Path) -> dict[str, Any]:
    data = work / "data"
    _extract_dataset(archive, work, "meta/esc50.csv", data)
    if not (data / "audio").is_dir():
        raise ValueError(f"{archive}: meta/esc50.csv but no audio/ folder beside it")
    return {"class_path": ESC50Source.qualname(), "init_args": {"root": str(out_dir)}}


def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        raise ValueError(f"Speech Commands archive lacks {path.name}")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def _prepare_speechcommands(archive: Path, work: Path, out_dir: Path) -> dict[str, Any]:
    data = work / "data"
    audio = data / "audio"
    _extract_dataset(archive, work, "validation_list.txt", audio)
    val = _read_list(audio / "validation_list.txt")
    test = _read_list(audio / "testing_list.txt")
    words = sorted(d.name for d in audio.iterdir() if d.is_dir() and not d.name.startswith("_"))
    if not words:
        raise ValueError(f"{archive}: no word folders found")
    entries: dict[str, list[dict[str, str]]] = {"train": [], "valid": [], "test": []}
    for word in words:
        for wav in sorted((audio / word).glob("*.wav")):
            rel = f"{word}/{wav.name}"
            split = "valid" if rel in val else "test" if rel in test else "train"
            entries[split].append({"wav": f"audio/{rel}", "labels": word})
    for split, rows in entries.items():
        (data / f"speechcommands_{split}.json").write_text(
            json.dumps({"data": rows}, indent=1) + "\n"
        )
    with (data / "class_labels_indices.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["index", "mid", "display_name"])
        writer.writerows((i, w, w) for i, w in enumerate(words))
    return {
        "class_path": ManifestSource.qualname(),
        "init_args": {
            "label_csv": str(out_dir / "class_labels_indices.csv"),
            "train": str(out_dir / "speechcommands_train.json"),
            "val": str(out_dir / "speechcommands_valid.json"),
            "test": str(out_dir / "speechcommands_test.json"),
            "multi_label": False,
        },
    }


def prepare_dataset(
    name: DatasetName, out_dir: str | Path, archive: str | Path | None = None
) -> dict[str, Any]:
    """Prepare ``name`` ("esc50" or "speechcommands") into ``out_dir``.

    Args:
        name: Which dataset.
        out_dir: Empty or missing directory to write the layout into.
        archive: Archive you already have; None downloads it (needs internet).

    Returns:
        The ``data.source`` setting (``class_path`` + ``init_args``) for this dataset.
    """
    if name not in URLS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(URLS)}")
    out_dir = Path(out_dir)
    if archive is not None and not Path(archive).is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    if _check_out_dir(name, out_dir):
        log.info("%s already prepared in %s", name, out_dir)
        return json.loads((out_dir / MARKER).read_text())["settings"]
    # Build everything in a staging directory beside out_dir and move it into place at the
    # end: a failed or interrupted run leaves out_dir as it was.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
    try:
        source = Path(archive) if archive is not None else _download(name, work)
        if name == "esc50":
            settings = _prepare_esc50(source, work, out_dir)
        else:
            settings = _prepare_speechcommands(source, work, out_dir)
        payload = {"dataset": name, "archive": str(archive or URLS[name]), "settings": settings}
        (work / "data" / MARKER).write_text(json.dumps(payload, indent=2) + "\n")
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(work / "data", out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return settings
