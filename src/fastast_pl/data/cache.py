"""On-disk cache of each clip's fbank, safe to fill from many workers and ranks at once.

What is cached: the dither-free log-mel fbank, cropped to ``target_length`` frames but not
yet padded, normalized or augmented. Normalization statistics and augmentation can thus
change without invalidating the cache, while any setting that changes the raw fbank
(sample rate, mel bins, frame shift/length, target length, recipe version) selects another
cache directory. Each entry is keyed by the audio file's content (a BLAKE2b hash of its
bytes: an edited or replaced file is a miss, never a stale hit, even at the same size and
mtime; hashing a file costs far less than decoding it and computing its fbank).

Each entry is a ``.npy`` file followed by the SHA-256 of its bytes, checked on every read.
An entry that cannot be read (0 bytes, not a .npy), whose bytes do not match its checksum
(edited or corrupted on disk) or that does not hold what these settings give (a
``(frames, num_mel_bins)`` float array with 1..target_length finite frames) is a miss: the
fbank is recomputed and the entry rewritten, and a warning names the entry.

Layout: ``<root>/<settings hash>/settings.json`` and ``<root>/<settings hash>/<ab>/<key>.npy``.
Writes go to a temporary file in the same directory and are published with ``os.replace``
(atomic on POSIX), so no reader ever sees a half-written entry.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np
import torch

from fastast_pl.data.features import FeatureConfig
from fastast_pl.utils.io import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

#: Bad entries named one by one in the log per process; later ones are only counted.
_LOGGED_BAD = 5


def file_fingerprint(path: str | Path) -> str:
    """BLAKE2b (256 bits) of a file's bytes: what identifies a clip's content (an edited or
    replaced file gets another fingerprint, whatever its size and mtime)."""
    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: Bytes of the SHA-256 that follows each entry's .npy data.
_CHECKSUM_BYTES = 32


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
        self.num_mel_bins = config.num_mel_bins
        self.target_length = config.target_length
        self.hits = 0
        self.misses = 0
        self.bad = 0  # entries found but unusable (counted in misses too)

    def entry_path(self, audio_path: str | Path) -> Path:
        """Where the entry for ``audio_path`` (as it is on disk now) lives."""
        key = file_fingerprint(audio_path)
        return self.dir / key[:2] / f"{key}.npy"

    def load(self, audio_path: str | Path) -> torch.Tensor | None:
        """The cached fbank ``(frames, F)``, or None on a miss (or a bad entry, reported)."""
        try:
            entry = self.entry_path(audio_path)
        except OSError:  # the audio file itself is missing: decoding will say so
            self.misses += 1
            return None
        if not entry.is_file():
            self.misses += 1
            return None
        try:
            data = entry.read_bytes()
            body, checksum = data[:-_CHECKSUM_BYTES], data[-_CHECKSUM_BYTES:]
            if len(data) <= _CHECKSUM_BYTES or hashlib.sha256(body).digest() != checksum:
                problem = "its bytes do not match the checksum stored with it (edited or corrupted)"
            else:
                array = np.load(io.BytesIO(body), allow_pickle=False)
                problem = self._problem(array)
        except (OSError, ValueError, EOFError) as err:  # truncated, not a .npy
            problem = f"unreadable ({type(err).__name__}: {err})"
        if problem is not None:
            self.misses += 1
            self.bad += 1
            if self.bad <= _LOGGED_BAD:
                log.warning(
                    "feature cache entry %s (for %s) is bad: %s; recomputing it%s",
                    entry, audio_path, problem,
                    "" if self.bad < _LOGGED_BAD else " (further bad entries only counted)",
                )  # fmt: skip
            return None
        self.hits += 1
        return torch.from_numpy(array)

    def _problem(self, array: np.ndarray) -> str | None:
        """What is wrong with a loaded entry for these settings, or None."""
        expected = f"(1..{self.target_length}, {self.num_mel_bins}) float32"
        if array.ndim != 2 or array.dtype != np.float32:
            return f"expected {expected}, found {array.shape} {array.dtype}"
        frames, width = array.shape
        if width != self.num_mel_bins or not 1 <= frames <= self.target_length:
            return f"expected {expected}, found {array.shape}"
        if not np.isfinite(array).all():
            return "it holds NaN or infinity"
        return None

    def save(self, audio_path: str | Path, fbank: torch.Tensor) -> None:
        """Store ``fbank`` for ``audio_path`` atomically (write temp file, then os.replace)."""
        entry = self.entry_path(audio_path)
        entry.parent.mkdir(parents=True, exist_ok=True)
        settings = self.dir / "settings.json"
        if not settings.exists():
            atomic_write_text(settings, json.dumps(self._settings, indent=2, sort_keys=True) + "\n")
        buffer = io.BytesIO()
        np.save(buffer, fbank.detach().cpu().numpy().astype(np.float32), allow_pickle=False)
        body = buffer.getvalue()
        with atomic_write(entry) as fh:
            fh.write(body + hashlib.sha256(body).digest())
