"""Read a W&B offline run directory (``wandb/offline-run-*/``) written by wandb 0.31.

wandb 0.31 writes an offline run as one transaction log, ``run-<id>.wandb``, and nothing
else that holds metrics (no ``files/wandb-summary.json``, no ``wandb-history.jsonl``; see
the files of a fresh offline run). The log is LevelDB's log format (32 KiB blocks of
records ``crc32: u32 | length: u16 | type: u8 | data``, type FULL/FIRST/MIDDLE/LAST; leveldb
``doc/log_format.md``) after a 7-byte header ``":W&B" | 0xBEE1 | version 0``; each record
is a ``wandb.proto.wandb_internal_pb2.Record``. wandb 0.31 ships no Python reader for it
(its ``sdk/internal/datastore.py`` was removed with the move to the Go core), so the
framing is read here and the records are decoded with wandb's own protobuf classes.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32768
RECORD_HEADER = 7  # crc32 (4) + length (2) + type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class OfflineRunError(ValueError):
    """A transaction log that cannot be read; the message names the file and the offset."""


def _records(path: Path) -> Iterator[bytes]:
    """The payload of every complete record; a torn tail (run still writing) is skipped."""
    data = path.read_bytes()
    if not data.startswith(HEADER):
        raise OfflineRunError(f"{path}: not a W&B transaction log (header {data[:7]!r})")
    pos, pending = len(HEADER), b""
    while pos + RECORD_HEADER <= len(data):
        if BLOCK - pos % BLOCK < RECORD_HEADER:  # zero-filled block trailer
            pos += BLOCK - pos % BLOCK
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        body = data[pos + RECORD_HEADER : pos + RECORD_HEADER + length]
        if kind == 0 and length == 0:  # zero padding before the next block
            pos += BLOCK - pos % BLOCK
            continue
        if len(body) < length:
            return  # torn tail
        if zlib.crc32(bytes([kind]) + body) & 0xFFFFFFFF != crc:
            raise OfflineRunError(f"{path}: bad checksum in the record at byte {pos}")
        pos += RECORD_HEADER + length
        if kind == FULL:
            yield body
        elif kind == FIRST:
            pending = body
        elif kind == MIDDLE:
            pending += body
        elif kind == LAST:
            yield pending + body
            pending = b""
        else:
            raise OfflineRunError(f"{path}: unknown record type {kind} at byte {pos}")


def _key(item: Any) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key


@dataclass
class OfflineRun:
    """What the log says about one run: the config, the last value of every logged key
    (summary), the history rows, the sweep and the exit code (None: still running/killed)."""

    path: Path
    run_id: str = ""
    name: str = ""
    project: str = ""
    sweep_id: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """Decode ``run_dir/run-*.wandb`` (``run_dir`` is ``.../wandb/offline-run-*``)."""
    from wandb.proto import wandb_internal_pb2

    run_dir = Path(run_dir)
    logs = sorted(run_dir.glob("run-*.wandb"))
    if not logs:
        raise OfflineRunError(f"{run_dir}: no run-*.wandb transaction log in this directory")
    run = OfflineRun(path=logs[0])
    for payload in _records(logs[0]):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.name, run.project = r.run_id, r.display_name, r.project
            run.sweep_id = r.sweep_id
            run.config.update({_key(i): json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            run.config.update({_key(i): json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            row = {_key(i): json.loads(i.value_json) for i in record.history.item}
            run.history.append(row)
        elif kind == "summary":
            run.summary.update({_key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "exit":
            run.exit_code = int(record.exit.exit_code)
    run.config.pop("_wandb", None)
    return run


def is_offline_run_dir(path: Path) -> bool:
    """A ``offline-run-*`` (or synced ``run-*``) directory holding a transaction log."""
    return any(path.glob("run-*.wandb"))
