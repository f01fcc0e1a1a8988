"""What every waveform teacher of the teacher zoo shares: an HF audio classifier
(``hf_teacher.py``) and PaSST (``passt_teacher.py``) hear the batch's clean ``waveform``
(``data.waveforms: true``) at the data's sample rate, resample it to their own rate and
featurize it themselves; no fbank setting of ours reaches them.

torchaudio is imported here only when a teacher is built, after the check that it works
beside this torch (``utils/torchaudio_compat.py``), so ``fastast_pl.models`` itself still
imports without torchaudio.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor

from fastast_pl.models.teacher import TeacherInfo
from fastast_pl.utils.torchaudio_compat import check_torch_family

#: TeacherInfo.kind of the teachers that read ``batch["waveform"]`` instead of the fbank.
HF_WAVEFORM_KIND = "hf-waveform"
PASST_KIND = "passt"
WAVEFORM_KINDS = frozenset({HF_WAVEFORM_KIND, PASST_KIND})


def hears_waveforms(info: TeacherInfo) -> bool:
    """Whether a teacher with this info reads the batch's waveform rather than its fbank."""
    return info.kind in WAVEFORM_KINDS


def checked_torchaudio() -> Any:
    """torchaudio, once it has been seen to work beside this torch (else one ImportError
    naming both versions and the fix)."""
    check_torch_family()
    import torchaudio

    return torchaudio


def resample(wave: Tensor, from_rate: int, to_rate: int) -> Tensor:
    """``(B, N)`` waveforms at ``from_rate`` -> ``(B, N')`` at ``to_rate`` (torchaudio's
    band-limited sinc interpolation; the same call the data pipeline resamples files with)."""
    if from_rate == to_rate:
        return wave
    return checked_torchaudio().functional.resample(wave, from_rate, to_rate)


def waveform_teacher_info(
    *,
    kind: str,
    num_classes: int,
    multi_label: bool | None,
    arch: dict[str, Any],
    path: str,
    class_names: list[str] | None = None,
) -> TeacherInfo:
    """The TeacherInfo of a waveform teacher: no fbank length, mel bins or feature settings
    to match against the data (it featurizes the waveform itself)."""
    return TeacherInfo(
        num_classes=num_classes,
        multi_label=multi_label,
        target_length=0,
        num_mel_bins=0,
        feature_config={},
        arch=arch,
        path=path,
        kind=kind,
        class_names=class_names,
    )


def log_waveform_teacher(
    logger: logging.Logger, what: str, info: TeacherInfo, data_rate: int, own_rate: int
) -> None:
    """One INFO line (on the teacher module's ``logger``) saying what the teacher hears (the
    clean clip, resampled) and how; a WARNING where the data's rate is below the teacher's:
    upsampling adds no band, so the teacher hears nothing above the data's Nyquist
    frequency, unlike the audio it was trained on (PaSST at 32 kHz on 16 kHz data), and
    its targets are those of a teacher with its top bands silent."""
    logger.info(
        "%s: %s as a frozen waveform teacher (%d classes; hears the batch's clean waveform at "
        "%d Hz, resampled to its %d Hz, through its own front-end)",
        info.path,
        what,
        info.num_classes,
        data_rate,
        own_rate,
    )
    if data_rate < own_rate:
        logger.warning(
            "%s: the data's %d Hz audio is upsampled to the teacher's %d Hz, so it hears "
            "nothing above %d Hz, unlike its training audio; where the files hold more, "
            "data.features.sample_rate: %d gives it all (the student's fbank then spans it too)",
            info.path,
            data_rate,
            own_rate,
            data_rate // 2,
            own_rate,
        )
