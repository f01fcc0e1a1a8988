"""Dataset preparation (placeholder until the full version lands)."""

from __future__ import annotations

from pathlib import Path


def prepare_dataset(name: str, out_dir: str | Path, archive: str | Path | None = None) -> Path:
    """Prepare ``name`` into ``out_dir`` (not implemented yet)."""
    raise NotImplementedError(f"prepare_dataset({name!r}) is not implemented yet")
