"""On-disk cache of each clip's fbank, safe to fill from many workers and ranks at once.

What is cached: the dither-free log-mel fbank, cropped to ``target_length`` frames but not
yet padded, normalized or augmented. Normalization statistics and augmentation can thus
change without invalidating the cache, while any setting that changes the raw fbank
(sample rate, mel bins, frame shift/length, target length, recipe version) selects another
cache directory. Each entry is keyed by the file's absolute path, size and mtime, so an
edited or replaced audio file is a miss, never a stale hit.

Layout: ``<root>/<settings hash>/settings.json`` and ``<root>/<settings hash>/<ab>/<key>.npy``.
Writes go to a temporary file in the same directory and are published with ``os.replace``
(atomic on POSIX), so no reader ever sees a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from fastast_pl.data.features import FeatureConfig
from fastast_pl.utils.io import atomic_write, atomic_write_text


class FeatureCache:
    """Read and write cached raw fbanks for one feature configuration.

    Args:
        root: Cache root directory (created on first write).
        config: Feature settings; their raw-fbank hash names the sub-directory.
    """

    def __init__(self, root: str | Path, config: FeatureConfig) -> None:
        self.root = Path(root)
        self.settings_key = config.raw_key()
        self.dir = self.root / self.settings_key
        self._settings = {
            k: v for k, v in config.to_dict().items() if k not in ("mean", "std", "dither")
        }
        self.hits = 0
        self.misses = 0

    def entry_path(self, audio_path: str | Path) -> Path:
        """Where the entry for ``audio_path`` (as it is on disk now) lives."""
        path = Path(audio_path).resolve()
        stat = path.stat()
        blob = f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()
        key = hashlib.sha256(blob).hexdigest()
        return self.dir / key[:2] / f"{key}.npy"

    def load(self, audio_path: str | Path) -> torch.Tensor | None:
        """The cached fbank ``(frames, F)``, or None on a miss."""
        try:
            entry = self.entry_path(audio_path)
            array = np.load(entry, allow_pickle=False)
        except (OSError, ValueError):  # missing entry (or audio file): a miss
            self.misses += 1
            return None
        self.hits += 1
        return torch.from_numpy(array)

    def save(self, audio_path: str | Path, fbank: torch.Tensor) -> None:
        """Store ``fbank`` for ``audio_path`` atomically (write temp file, then os.replace)."""
        entry = self.entry_path(audio_path)
        entry.parent.mkdir(parents=True, exist_ok=True)
        settings = self.dir / "settings.json"
        if not settings.exists():
            atomic_write_text(settings, json.dumps(self._settings, indent=2, sort_keys=True) + "\n")
        with atomic_write(entry) as fh:
            np.save(fh, fbank.detach().cpu().numpy().astype(np.float32), allow_pickle=False)
