"""Checks of what an audio file claims against what it holds, shared by loading and check-data.

``bad_audio_reason`` decides what counts as bad audio: the dataset's ``on_bad_audio``
(through ``load_audio``) and ``python -m fastast_pl check-data`` call the same function, so
a file the scan passes is a file training reads, and the other way round. Bad: the header
promises more samples than the file holds (libsndfile quietly reads what is there), no
samples, NaN/inf, or fewer samples than one analysis window (0 fbank frames: pure padding
with a label), samples far beyond full scale (a float file whose peak exceeds
``FULL_SCALE_LIMIT``: scored as normal audio its fbank sits ~20 dB above the training
statistics), or channels that cancel in the mono downmix (``CANCEL_RATIO``). Only reported
by check-data, not bad: silence and sample-rate surprises.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from fastast_pl.data.cache import file_fingerprint

#: Peak amplitude at or below which a clip counts as silent (about -100 dBFS).
SILENCE_PEAK = 1e-5

#: Peak amplitude above which decoded samples are not audio at full scale [-1, 1]. Integer
#: files decode to at most 1.0; a float file may overshoot a little (resampled or
#: inter-sample peaks reach ~1.1), but 1.5 (+3.5 dBFS) means the file holds another scale
#: (e.g. int16 values stored as floats), which the fbank would score as a very loud clip.
FULL_SCALE_LIMIT = 1.5

#: Mono-downmix RMS below this fraction of the channels' mean RMS (-20 dB) means the
#: channels cancel (one is the other inverted): the mono clip the model sees is not the
#: audio the file holds. Uncorrelated channels give ~0.71, identical ones 1.0.
CANCEL_RATIO = 0.1


def wav_header_frames(path: str | Path) -> int | None:
    """Sample frames a RIFF/WAVE file's ``data`` chunk header promises; None if not a WAV
    or the header does not say (streamed WAVs write 0 or 0xFFFFFFFF).

    Our own reader because libsndfile (soundfile), Python's ``wave`` and torchaudio all
    clamp the count to what the file holds (or refuse float WAVs), which hides truncation.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"RIFF" or (fh.read(4), fh.read(4))[1] != b"WAVE":
                return None
            block_align = None
            while True:
                head = fh.read(8)
                if len(head) < 8:
                    return None
                chunk, size = head[:4], struct.unpack("<I", head[4:])[0]
                if chunk == b"fmt ":
                    fmt = fh.read(size + (size & 1))
                    if len(fmt) < 14:
                        return None
                    block_align = struct.unpack("<H", fmt[12:14])[0]
                elif chunk == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    fh.seek(size + (size & 1), 1)  # chunks are padded to even sizes
    except OSError:
        return None


def bad_audio_reason(
    path: str | Path, data: np.ndarray, file_rate: int, window_ms: float | None = None
) -> str | None:
    """Why decoded ``data`` ``(N, channels)`` of ``path`` is bad audio, or None if it is not.

    Args:
        file_rate: The file's sample rate.
        window_ms: The analysis window; a clip with fewer samples gives no fbank frame
            (None: no length check).
    """
    n = data.shape[0]
    if n == 0:
        return "the file holds no audio samples"
    promised = wav_header_frames(path)
    if promised is not None and promised > n:
        return (
            f"truncated: the WAV header promises {promised} samples but the file holds {n} "
            f"(expected {promised}, found {n})"
        )
    if not math.isfinite(float(data.sum(dtype=np.float64))):
        return "the decoded samples contain NaN or infinity"
    window = int(file_rate * window_ms * 0.001) if window_ms else 0
    if n < window:
        return (
            f"{n} samples at {file_rate} Hz is shorter than one {window_ms} ms window "
            f"(expected at least {window} samples, found {n}): no fbank frame, only padding"
        )
    peak = float(np.abs(data).max())
    if peak > FULL_SCALE_LIMIT:
        return (
            f"samples far beyond full scale: peak amplitude {peak:.4g} (expected at most "
            f"{FULL_SCALE_LIMIT}, audio lies in [-1, 1]); rescale the file"
        )
    return _cancelling_channels(data)


def _cancelling_channels(data: np.ndarray) -> str | None:
    """Why the mono downmix of ``data`` ``(N, channels)`` loses the audio, or None."""
    if data.shape[1] < 2:
        return None
    channel_rms = float(np.sqrt(np.mean(np.square(data, dtype=np.float64))))
    if channel_rms <= SILENCE_PEAK:
        return None
    mono = data.mean(axis=1, dtype=np.float64)  # (N,)
    mono_rms = float(np.sqrt(np.mean(np.square(mono))))
    if mono_rms < CANCEL_RATIO * channel_rms:
        return (
            f"the {data.shape[1]} channels cancel in the mono downmix: downmix RMS "
            f"{mono_rms:.3g} against channel RMS {channel_rms:.3g} (expected at least "
            f"{CANCEL_RATIO:g} of it); keep one channel or fix the polarity"
        )
    return None


@dataclass
class AudioReport:
    """What one file claims and holds; ``bad`` is None for usable audio."""

    path: Path
    file_rate: int | None = None
    channels: int | None = None
    header_frames: int | None = None
    decoded_frames: int | None = None
    peak: float | None = None
    bad: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "bad" if self.bad else "warn" if self.warnings else "ok"

    @property
    def problems(self) -> list[str]:
        return ([self.bad] if self.bad else []) + self.warnings


def inspect_audio(path: str | Path, features) -> AudioReport:
    """Decode ``path`` once and report every check (``features``: a FeatureConfig).

    Bad audio as ``load_audio`` sees it (same ``bad_audio_reason``), plus the warnings only
    check-data gives: silence and a rate below the feature ``sample_rate``.
    """
    report = AudioReport(Path(path))
    report.header_frames = wav_header_frames(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (N, channels)
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError, ValueError) as err:
        report.bad = f"cannot decode: {type(err).__name__}: {err}"
        return report
    report.file_rate = int(rate)
    report.channels, report.decoded_frames = data.shape[1], data.shape[0]
    report.bad = bad_audio_reason(path, data, int(rate), features.frame_length)
    if data.size and report.bad is None:
        report.peak = float(np.abs(data).max())
        if report.peak <= SILENCE_PEAK:
            report.warnings.append(f"silent (peak amplitude {report.peak:.2e})")
    if rate < features.sample_rate:
        report.warnings.append(
            f"sample rate {int(rate)} Hz is below the feature sample_rate "
            f"{features.sample_rate} Hz (upsampled: no content above {int(rate) // 2} Hz)"
        )
    return report


def flag_rate_outliers(reports: list[AudioReport]) -> None:
    """Warn on files whose rate differs from the majority rate of their group (a split)."""
    rates = Counter(r.file_rate for r in reports if r.file_rate is not None)
    if len(rates) < 2:
        return
    majority = rates.most_common(1)[0][0]
    for r in reports:
        if r.file_rate is not None and r.file_rate != majority:
            note = f"sample rate {r.file_rate} Hz differs from the split's usual {majority} Hz"
            if note not in r.warnings:
                r.warnings.append(note)


#: Bytes of a file's start hashed first when sizes collide: equal-length clips (ESC-50's
#: 5 s WAVs, AudioSet's 10 s ones) all share a size, and their starts tell them apart, so
#: whole files are read only where the starts match too.
HEAD_BYTES = 1 << 14


def _head_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.blake2b(fh.read(HEAD_BYTES), digest_size=16).hexdigest()


def same_audio(reference: list[Path], candidates: list[Path]) -> dict[Path, list[Path]]:
    """Each of ``candidates`` whose audio is also a ``reference`` file: the same file (listed
    twice, a symlink) or identical bytes under another name -> the matching reference files.

    Files are compared by size, then by a hash of their first ``HEAD_BYTES``, and only
    where both match by the hash of all their bytes (``cache.file_fingerprint``, BLAKE2b),
    so lists without collisions cost one ``stat`` per file; unreadable files match nothing.
    """
    by_size: dict[int, list[Path]] = {}
    for p in reference:
        try:
            by_size.setdefault(Path(p).stat().st_size, []).append(Path(p))
        except OSError:
            continue
    heads: dict[Path, str] = {}
    digests: dict[Path, str] = {}

    def head(p: Path) -> str:
        real = p.resolve()
        if real not in heads:
            heads[real] = _head_digest(real)
        return heads[real]

    def digest(p: Path) -> str:
        real = p.resolve()
        if real not in digests:
            digests[real] = file_fingerprint(real)  # what keys the feature cache
        return digests[real]

    by_head: dict[tuple[int, str], list[Path]] = {}  # (size, head hash) -> reference files
    indexed: set[int] = set()
    found: dict[Path, list[Path]] = {}
    for p in dict.fromkeys(Path(q) for q in candidates):
        try:
            size = p.stat().st_size
            if size not in by_size:
                continue
            if size not in indexed:  # the reference files of this size, hashed once
                indexed.add(size)
                for t in by_size[size]:
                    try:
                        by_head.setdefault((size, head(t)), []).append(t)
                    except OSError:
                        continue
            same_head = by_head.get((size, head(p)), [])
            match = [t for t in same_head if digest(t) == digest(p)]
        except OSError:
            continue
        if match:
            found[p] = match
    return found


def leaks_across_splits(paths: dict[str, list[Path]], training: str = "training") -> list[str]:
    """Evaluation clips (``val``, ``test``) whose audio is also a training clip, one line each
    (``same_audio``; ``training`` names what the ``train`` list holds in the lines)."""
    held_out = {s: list(dict.fromkeys(Path(q) for q in paths.get(s, []))) for s in ("val", "test")}
    found = same_audio(paths.get("train", []), held_out["val"] + held_out["test"])
    lines: list[str] = []
    for split, clips in held_out.items():
        for p, match in ((q, found[q]) for q in clips if q in found):
            lines.append(
                f"{split} clip {p} has the same audio bytes as {training} clip {match[0]}"
                + (f" (and {len(match) - 1} more)" if len(match) > 1 else "")
            )
    return lines
