"""Check, before torchaudio is first used, that it really works beside this torch.

It runs where audio is first needed: when ``fastast_pl.data`` is imported (every feature,
decoding and augmentation module is there; ``inference`` and the CLI import it) and when a
waveform teacher is built (``models/waveform_teacher.py``), not in the package
``__init__``: ``fastast_pl.tome`` and ``fastast_pl.models`` import without torchaudio.

torchaudio's native library is built against one torch release; beside another it can
fail deep inside the loader (an undefined symbol) with a message that does not say what to
do, while version numbers alone say nothing reliable (torchaudio 2.11.1 needs a newer torch
than 2.11.0; the same torchaudio runs beside torch 2.14). So we ask the real question: load
the extension and run, once on a few samples, the functions the data pipeline uses (Kaldi
fbank, resampling, SpecAugment masking), and on failure raise one ImportError with the fix.
"""

from __future__ import annotations

import functools
import re
from importlib import metadata
from pathlib import Path

# Present in a source checkout (make install); absent from an installed wheel.
_LOCK = Path(__file__).resolve().parents[3] / "requirements.lock"


def _installed_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _locked_pair() -> str:
    """'torch==A torchaudio==B' from the checkout's lock, or a pointer to it."""
    try:
        text = _LOCK.read_text()
    except OSError:
        return "the pair in fastast-pl's requirements.lock"
    pins = re.findall(r"^(torch|torchaudio)==(\S+)", text, flags=re.MULTILINE)
    return " ".join(f"{name}=={version}" for name, version in pins) or str(_LOCK)


def _loader_line(err: BaseException) -> str:
    """The innermost error's last non-empty line: the loader's own words."""
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else '(no message)'}"


def _exercise_torchaudio() -> None:
    """Import torchaudio (which loads its native library) and run what we use on tiny input."""
    import torch
    import torchaudio  # noqa: F401  (loads libtorchaudio beside this torch)
    from torchaudio.compliance import kaldi
    from torchaudio.functional import resample
    from torchaudio.transforms import FrequencyMasking, TimeMasking

    wave = torch.zeros(1, 800)  # (channels, samples): two 25 ms windows at 16 kHz
    fbank = kaldi.fbank(wave, sample_frequency=16000, num_mel_bins=8, htk_compat=True)
    resample(wave, 16000, 8000)
    TimeMasking(1)(FrequencyMasking(1)(fbank.T.unsqueeze(0)))  # (1, F, T)


@functools.cache
def check_torch_family() -> None:
    """Raise ImportError naming both versions, the loader's error and the fix (the check
    runs once per process; a failure raises again on every call)."""
    try:
        _exercise_torchaudio()
    except Exception as err:  # an OSError from the loader, an AttributeError from a stub...
        raise ImportError(
            f"torchaudio {_installed_version('torchaudio')} does not work beside torch "
            f"{_installed_version('torch')}: {_loader_line(err)}. Fix: run `make install` "
            f"(it installs the lock), or install the tested pair: {_locked_pair()}."
        ) from err
