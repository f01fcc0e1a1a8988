"""A built-in synthetic sound-event dataset, so the demo and the tests need no download.

Each class is a kind of time-frequency structure (steady tone, rising/falling chirp,
band-limited noise burst, click train, amplitude- and frequency-modulated tones, harmonic
stack), drawn with random frequency, onset, duration and level, mixed into pink background
noise at a random SNR and scaled to a random peak level, so loudness alone says nothing
about the class. Every clip depends only on ``(seed, class, clip)``: the same settings
give byte-identical WAV files.

On disk (``root`` is a directory this generator owns, recognised by its meta file)::

    root/synthetic_meta.json          generator settings + "complete" flag
    root/synthetic.csv                path,label,split (paths relative to root)
    root/audio/<class>/<class>_0000.wav
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from fastast_pl.utils.io import atomic_write, atomic_write_text

log = logging.getLogger(__name__)

META_FILE = "synthetic_meta.json"
LOCK_FILE = ".synthetic.lock"
MANIFEST_FILE = "synthetic.csv"
GENERATOR_NAME = "fastast_pl.data.synthetic"
GENERATOR_VERSION = 1

CLASS_NAMES = (
    "tone",
    "chirp_up",
    "chirp_down",
    "noise_burst",
    "click_train",
    "am_tone",
    "fm_tone",
    "harmonic",
)


@dataclass(frozen=True)
class SyntheticConfig:
    """Settings of the synthetic dataset (any change regenerates it).

    Args:
        num_classes: How many of the 8 sound classes to use (2-8), in the fixed order
            tone, chirp_up, chirp_down, noise_burst, click_train, am_tone, fm_tone, harmonic.
        clips_per_class: Clips generated per class (split into train/val/test).
        clip_seconds: Length of every clip in seconds (the longest, with min_clip_seconds).
        min_clip_seconds: None: every clip lasts clip_seconds. A number: each clip's length
            is drawn uniformly from [min_clip_seconds, clip_seconds] (seeded per clip), a
            dataset of variable-length clips (e.g. to measure short-clip inference).
        sample_rate: Sample rate of the written WAV files in Hz.
        seed: Seed of the generator; the same seed gives byte-identical files.
        snr_db_min: Lowest signal-to-background-noise ratio in dB.
        snr_db_max: Highest signal-to-background-noise ratio in dB.
        val_fraction: Share of each class's clips in the validation split.
        test_fraction: Share of each class's clips in the test split.
    """

    num_classes: int = 8
    clips_per_class: int = 40
    clip_seconds: float = 1.0
    min_clip_seconds: float | None = None
    sample_rate: int = 16000
    seed: int = 0
    snr_db_min: float = 0.0
    snr_db_max: float = 20.0
    val_fraction: float = 0.15
    test_fraction: float = 0.15

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(CLASS_NAMES):
            raise ValueError(
                f"synthetic num_classes must be in [2, {len(CLASS_NAMES)}], got {self.num_classes}"
            )
        if self.clips_per_class < 3:
            raise ValueError(
                f"synthetic clips_per_class must be >= 3 (one per split), got {self.clips_per_class}"
            )
        if not 0.1 <= self.clip_seconds <= 30:
            raise ValueError(
                f"synthetic clip_seconds must be in [0.1, 30], got {self.clip_seconds}"
            )
        if (
            self.min_clip_seconds is not None
            and not 0.1 <= self.min_clip_seconds <= self.clip_seconds
        ):
            raise ValueError(
                f"synthetic min_clip_seconds must be in [0.1, clip_seconds={self.clip_seconds}], "
                f"got {self.min_clip_seconds}"
            )
        if self.snr_db_min > self.snr_db_max:
            raise ValueError(
                f"synthetic snr_db_min ({self.snr_db_min}) must not exceed snr_db_max ({self.snr_db_max})"
            )
        if not (
            0 < self.val_fraction
            and 0 < self.test_fraction
            and self.val_fraction + self.test_fraction < 1
        ):
            raise ValueError(
                "synthetic val_fraction and test_fraction must be > 0 and sum to < 1, got "
                f"{self.val_fraction} and {self.test_fraction}"
            )

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES[: self.num_classes])

    def to_dict(self) -> dict:
        """The settings; an unset ``min_clip_seconds`` is left out, so that datasets written
        before the option existed still match their settings (and are not regenerated)."""
        out = dataclasses.asdict(self)
        if out["min_clip_seconds"] is None:
            del out["min_clip_seconds"]
        return out


# ---------------------------------------------------------------------------------------
# Sound events: each returns a unit-peak event of length n (zeros outside the event)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _envelope(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Random onset and duration (35-90% of the clip) with 10 ms raised-cosine fades."""
    length = int(n * rng.uniform(0.35, 0.9))
    onset = int(rng.integers(0, n - length + 1))
    env = np.zeros(n)
    fade = max(1, min(int(0.01 * sr), length // 4))
    body = np.ones(length)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, fade))
    body[:fade] = ramp
    body[-fade:] = ramp[::-1]
    env[onset : onset + length] = body
    return env


def _phase(freq: np.ndarray, sr: int) -> np.ndarray:
    """Instantaneous phase of a tone with per-sample frequency ``freq`` (Hz)."""
    return 2 * np.pi * np.cumsum(freq) / sr


def _tone(rng, t, sr):
    f = _log_uniform(rng, 300, 3000)
    return np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))


def _chirp(rng, t, sr, rising: bool):
    f0 = _log_uniform(rng, 250, 1500)
    f1 = f0 * rng.uniform(2.0, 4.0)
    if not rising:
        f0, f1 = f1, f0
    freq = f0 * (f1 / f0) ** (t / t[-1])  # exponential sweep over the clip
    return np.sin(_phase(freq, sr))


def _noise_burst(rng, t, sr):
    n = len(t)
    centre = _log_uniform(rng, 500, 5000)
    half_band = centre * rng.uniform(0.1, 0.25)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / sr)
    spectrum[np.abs(freqs - centre) > half_band] = 0
    return np.fft.irfft(spectrum, n)


def _click_train(rng, t, sr):
    n = len(t)
    rate = rng.uniform(6, 30)  # clicks per second
    out = np.zeros(n)
    click_len = int(0.002 * sr)
    click = rng.standard_normal(click_len) * np.exp(-np.arange(click_len) / (0.0004 * sr))
    start = rng.uniform(0, sr / rate)
    for pos in np.arange(start, n - click_len, sr / rate).astype(int):
        out[pos : pos + click_len] += click
    return out


def _am_tone(rng, t, sr):
    f = _log_uniform(rng, 300, 3000)
    rate = rng.uniform(4, 16)
    carrier = np.sin(2 * np.pi * f * t)
    return carrier * 0.5 * (1 + np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)))


def _fm_tone(rng, t, sr):
    f = _log_uniform(rng, 400, 3000)
    rate = rng.uniform(4, 10)
    depth = f * rng.uniform(0.06, 0.12)
    freq = f + depth * np.sin(2 * np.pi * rate * t)
    return np.sin(_phase(freq, sr))


def _harmonic(rng, t, sr):
    f0 = _log_uniform(rng, 100, 400)
    count = int(rng.integers(4, 10))
    out = np.zeros_like(t)
    for k in range(1, count + 1):
        if k * f0 < sr / 2 - 500:
            out += np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
    return out


_EVENTS: dict[str, Callable] = {
    "tone": _tone,
    "chirp_up": lambda rng, t, sr: _chirp(rng, t, sr, rising=True),
    "chirp_down": lambda rng, t, sr: _chirp(rng, t, sr, rising=False),
    "noise_burst": _noise_burst,
    "click_train": _click_train,
    "am_tone": _am_tone,
    "fm_tone": _fm_tone,
    "harmonic": _harmonic,
}


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    scale = 1 / np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum * scale, n)


def synthesize_clip(config: SyntheticConfig, class_index: int, clip_index: int) -> np.ndarray:
    """One clip as float32 samples in [-1, 1], determined by (seed, class, clip) only."""
    rng = np.random.default_rng([config.seed, class_index, clip_index])
    sr = config.sample_rate
    seconds = config.clip_seconds
    if config.min_clip_seconds is not None:  # its own stream: fixed-length clips unchanged
        length_rng = np.random.default_rng([config.seed, class_index, clip_index, 1])
        seconds = length_rng.uniform(config.min_clip_seconds, config.clip_seconds)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    event = _EVENTS[CLASS_NAMES[class_index]](rng, t, sr) * _envelope(rng, n, sr)
    noise = _pink_noise(rng, n)
    snr_db = rng.uniform(config.snr_db_min, config.snr_db_max)
    event_power = np.mean(event**2) + 1e-12
    noise_power = np.mean(noise**2) + 1e-12
    noise *= np.sqrt(event_power / (noise_power * 10 ** (snr_db / 10)))
    mixture = event + noise
    peak_db = rng.uniform(-30, -3)  # random level: loudness carries no class information
    mixture *= 10 ** (peak_db / 20) / (np.max(np.abs(mixture)) + 1e-12)
    return mixture.astype(np.float32)


def _split_of(config: SyntheticConfig, class_index: int) -> list[str]:
    """Seeded assignment of each clip of a class to train/val/test."""
    n = config.clips_per_class
    n_val = max(1, int(round(n * config.val_fraction)))
    n_test = max(1, int(round(n * config.test_fraction)))
    order = np.random.default_rng([config.seed, class_index, 1_000_003]).permutation(n)
    splits = ["train"] * n
    for rank, clip in enumerate(order):
        if rank < n_val:
            splits[clip] = "val"
        elif rank < n_val + n_test:
            splits[clip] = "test"
    return splits


# ---------------------------------------------------------------------------------------
# The owned directory


def read_meta(root: str | Path) -> dict | None:
    """The generator meta of ``root``, or None if ``root`` is not a synthetic directory."""
    path = Path(root) / META_FILE
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a readable synthetic-dataset meta file: {err}") from err
    if not isinstance(meta, dict) or meta.get("generator") != GENERATOR_NAME:
        raise ValueError(
            f"{path} exists but was not written by {GENERATOR_NAME}; refusing to touch {root}"
        )
    return meta


def _write_json_atomic(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def generate_synthetic(root: str | Path, config: SyntheticConfig) -> Path:
    """Write the dataset into ``root`` (which must be empty, missing or already ours).

    Returns the manifest path. Old audio of a previous generation is removed first.
    """
    root = Path(root)
    meta = read_meta(root)
    if meta is None and root.exists() and any(p.name != LOCK_FILE for p in root.iterdir()):
        raise FileExistsError(
            f"refusing to generate the synthetic dataset into {root}: the directory is not empty "
            f"and holds no {META_FILE}, so it is not a synthetic directory. Choose an empty or new "
            "data_dir for dataset: synthetic."
        )
    root.mkdir(parents=True, exist_ok=True)
    payload = {
        "generator": GENERATOR_NAME,
        "version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "complete": False,
    }
    _write_json_atomic(root / META_FILE, payload)  # claim the directory before writing audio
    audio_dir = root / "audio"
    if audio_dir.exists():
        shutil.rmtree(audio_dir)
    rows = []
    for c, name in enumerate(config.class_names):
        (audio_dir / name).mkdir(parents=True, exist_ok=True)
        splits = _split_of(config, c)
        for j in range(config.clips_per_class):
            rel = Path("audio") / name / f"{name}_{j:04d}.wav"
            samples = synthesize_clip(config, c, j)
            sf.write(str(root / rel), samples, config.sample_rate, subtype="PCM_16", format="WAV")
            rows.append((rel.as_posix(), name, splits[j]))
    manifest = root / MANIFEST_FILE
    with atomic_write(manifest, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "split"])
        writer.writerows(rows)
    payload["complete"] = True
    _write_json_atomic(root / META_FILE, payload)
    return manifest


def ensure_synthetic(root: str | Path, config: SyntheticConfig) -> Path:
    """Generate the dataset in ``root`` unless a complete one with the same settings is there.

    A synthetic directory generated with other settings (or left incomplete) is regenerated,
    with a log message; a non-empty directory that is not synthetic is refused.
    """
    root = Path(root)
    unclaimed = read_meta(root) is None and not (root / LOCK_FILE).exists()  # else: see below
    if unclaimed and root.exists() and any(root.iterdir()):
        generate_synthetic(root, config)  # raises: not ours (checked before creating anything)
    root.mkdir(parents=True, exist_ok=True)
    # Several nodes' rank 0 may share a filesystem; one generating writes temporary files
    # before its metadata, so a directory holding our lock is judged only under the lock.
    with _exclusive(root / LOCK_FILE):
        meta = read_meta(root)
        if meta is not None:
            same = (
                meta.get("config") == config.to_dict() and meta.get("version") == GENERATOR_VERSION
            )
            if same and meta.get("complete") and (root / MANIFEST_FILE).is_file():
                return root / MANIFEST_FILE
            reason = "was left incomplete" if same else "was generated with other settings"
            log.warning("synthetic dataset in %s %s; regenerating it", root, reason)
        return generate_synthetic(root, config)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (no-op where fcntl is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: no concurrent generation support
        yield
        return
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_synthetic(root: str | Path, config: SyntheticConfig) -> Path:
    """Return the manifest if ``root`` holds a complete dataset made with ``config``; else raise."""
    root = Path(root)
    meta = read_meta(root)
    if meta is None or not meta.get("complete"):
        raise FileNotFoundError(
            f"no complete synthetic dataset in {root}: it is generated by AudioDataModule."
            "prepare_data() (the Trainer calls it), or call "
            "fastast_pl.data.synthetic.ensure_synthetic(root, config)."
        )
    if meta.get("config") != config.to_dict() or meta.get("version") != GENERATOR_VERSION:
        diff = {
            k: (meta.get("config", {}).get(k), v)
            for k, v in config.to_dict().items()
            if meta.get("config", {}).get(k) != v
        }
        raise ValueError(
            f"the synthetic dataset in {root} was generated with other settings "
            f"(on disk -> requested: {diff}); run prepare_data() to regenerate it"
        )
    return root / MANIFEST_FILE
