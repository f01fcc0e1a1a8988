"""PaSST (Koutini et al. 2022, "Efficient Training of Audio Transformers with Patchout") as
a frozen waveform teacher, from a local weights file, through ``hear21passt`` (the optional
extra: ``pip install 'fastast-pl[passt]'``).

PaSST reads its own log-mel spectrogram (hear21passt's ``AugmentMelSTFT``: pre-emphasis,
STFT, Kaldi mel banks, ``(log(mel + 1e-5) + 4.5) / 5``), not our Kaldi fbank, so it is a
waveform teacher (``waveform_teacher.py``): it hears the batch's clean waveform, resampled
from the data's rate to its own (32 kHz for the released models). Both parts are
hear21passt's own classes, ``hear21passt.models.passt.PaSST`` and
``hear21passt.models.preprocess.AugmentMelSTFT``; nothing of them is re-implemented here.
Only those two modules are imported: hear21passt's ``get_model`` and ``base`` are not used,
since they download the released weights by default and print the whole model; we build the
model with random weights and load the local file ourselves, so nothing reaches the network.
(All of hear21passt 0.0.26 imports beside torch 2.14, timm 1.0.31 and torchaudio 2.11: it
carries its own ViT helpers and takes only timm's download helper, which it does not call
here.)

hear21passt 0.0.26 was written for older torch: its model prints tensor shapes on its first
forward (the module flag ``first_RUN``, switched off here), and it warns on every call about
a clip shorter than the positional table (which PaSST cuts, as designed), torch's
``stft(return_complex=False)`` and ``torch.cuda.amp.autocast``; those three warnings are
filtered around the teacher's forward only.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fastast_pl.models.checkpoints.files import is_tensor_dict, load_state_dict_named, load_torch
from fastast_pl.models.teacher import FrozenTeacher
from fastast_pl.models.waveform_teacher import (
    PASST_KIND,
    checked_torchaudio,
    log_waveform_teacher,
    resample,
    waveform_teacher_info,
)

log = logging.getLogger(__name__)

#: What a PaSST weights file is expected to be, for error messages.
PASST_FORMAT = (
    "Expected a PaSST state dict as hear21passt releases them (e.g. "
    "passt-s-f128-p16-s10-ap.476-swa.pt: keys cls_token, dist_token, time_new_pos_embed, "
    "patch_embed.proj.weight, blocks.N.*, head.1.weight, head_dist.weight), possibly under "
    "'model' or 'state_dict'."
)
#: hear21passt's base.py gives AugmentMelSTFT fmax=None and fmax_aug_range=2000, which it
#: turns into fmax = sample_rate / 2 - 1000 Hz: the band the released models were trained on.
_FMAX_BELOW_NYQUIST = 1000
#: Library warnings that ask nothing of the user (see the module docstring).
_NOISE = (
    r"Input image size .* doesn't match model",
    r"stft with return_complex=False is deprecated",
    r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",
)


@dataclass
class PasstArch:
    """PaSST and its mel front-end as hear21passt builds them. Setting
    ``model.init_args.teacher_passt`` makes ``teacher_checkpoint`` a PaSST weights file.

    Defaults: the released PaSST-S AudioSet model ``passt-s-f128-p16-s10-ap.476-swa.pt``
    (hear21passt's ``passt_s_swa_p16_128_ap476`` with the front-end of its ``base.py``).
    Other released files need other values (README, "PaSST teacher"); a file that does not
    fit these values is refused key by key. A weights file holds the network's shapes only:
    the front-end (``n_mels`` beyond the patch grid, ``sample_rate`` to ``fmax``) and
    ``multi_label`` must be those it was trained with, since nothing in it can check them
    (the run's log prints them).

    Args:
        num_classes: classes of the file's head (AudioSet: 527); must equal the data's.
        embed_dim: token width (PaSST-S: 768).
        depth: transformer blocks (PaSST-S: 12, PaSST-L: 7).
        num_heads: attention heads (12).
        patch_size: side of the square patches, in mel bins and frames (16).
        fstride: patch stride over frequency (10; the s16 models: 16).
        tstride: patch stride over time (10; the s16 models: 16).
        input_tdim: frames the time positional embedding was made for (998: 10 s at a 10 ms
            hop); it holds ``input_tdim // tstride`` time patches. A clip with more patches
            (released PaSST-S: more than 1005 frames) or shorter than one patch is refused;
            one with fewer uses the table's first positions.
        n_mels: mel bins, also the frequency size of the patch grid (128).
        sample_rate: the rate its front-end expects (32000); the data's waveform is
            resampled to it.
        win_length: STFT window in samples (800: 25 ms at 32 kHz).
        hop_length: STFT hop in samples (320: 10 ms; the stfthop100/160 models: 100/160).
        n_fft: FFT size (1024).
        fmin: lowest mel band edge in Hz (0).
        fmax: highest mel band edge in Hz; None: hear21passt's default, sample_rate / 2
            - 1000 Hz (15000 at 32 kHz).
        multi_label: whether the file's head was trained multi-label (sigmoid; every
            hear21passt release: AudioSet, FSD50K, OpenMIC) or single-label (softmax), checked
            against the data's label kind, since the KD targets read the logits that way;
            None: not said, not checked (warned). A weights file records none of it.
    """

    num_classes: int = 527
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    patch_size: int = 16
    fstride: int = 10
    tstride: int = 10
    input_tdim: int = 998
    n_mels: int = 128
    sample_rate: int = 32000
    win_length: int = 800
    hop_length: int = 320
    n_fft: int = 1024
    fmin: float = 0.0
    fmax: float | None = None
    multi_label: bool | None = None

    def __post_init__(self) -> None:
        """Refuse a mel band its front-end cannot build, at configuration time: Kaldi's mel
        banks would fail only on the first batch, naming no key."""
        nyquist = self.sample_rate / 2
        if not 0 <= self.fmin < self.band_top <= nyquist:
            raise ValueError(
                f"teacher_passt: the mel band fmin {self.fmin:g} Hz to fmax {self.band_top:g} "
                f"Hz (fmax {self.fmax}) must satisfy 0 <= fmin < fmax <= sample_rate / 2 = "
                f"{nyquist:g} Hz (sample_rate {self.sample_rate})"
            )

    @property
    def band_top(self) -> float:
        """The highest mel band edge in Hz (``fmax`` or hear21passt's default)."""
        return self.fmax if self.fmax is not None else self.sample_rate // 2 - _FMAX_BELOW_NYQUIST


def _hear21passt() -> tuple[Any, Any]:
    """hear21passt's PaSST model module and its AugmentMelSTFT class."""
    checked_torchaudio()  # AugmentMelSTFT uses torchaudio: a broken pair fails here, with the fix
    try:
        from hear21passt.models import passt
        from hear21passt.models.preprocess import AugmentMelSTFT
    except ImportError as err:
        raise ImportError(
            "a PaSST teacher (model.init_args.teacher_passt) needs hear21passt: "
            "pip install 'fastast-pl[passt]'"
        ) from err
    passt.first_RUN = False  # its shape prints on the first forward (module docstring)
    return passt, AugmentMelSTFT


def build_passt(arch: PasstArch) -> tuple[nn.Module, nn.Module]:
    """(front-end, network) of ``arch``, built by hear21passt with random weights, eval mode."""
    passt, augment_mel_stft = _hear21passt()
    mel = augment_mel_stft(
        n_mels=arch.n_mels, sr=arch.sample_rate, win_length=arch.win_length,
        hopsize=arch.hop_length, n_fft=arch.n_fft, freqm=0, timem=0, htk=False,
        fmin=arch.fmin, fmax=arch.band_top, fmin_aug_range=1, fmax_aug_range=1,
    )  # fmt: skip
    # freqm/timem 0 and aug ranges 1: no masking and no random band edges, in any mode.
    net = passt.PaSST(
        img_size=(arch.n_mels, arch.input_tdim), patch_size=arch.patch_size,
        stride=(arch.fstride, arch.tstride), in_chans=1, num_classes=arch.num_classes,
        embed_dim=arch.embed_dim, depth=arch.depth, num_heads=arch.num_heads, distilled=True,
    )  # fmt: skip
    return mel.eval(), net.eval()


def read_passt_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """The state dict in a PaSST weights file (plain, or under 'model' / 'state_dict')."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"PaSST teacher weights {str(path)!r} is not a file; weights are never downloaded. "
            f"{PASST_FORMAT}"
        )
    obj = load_torch(path, expected=PASST_FORMAT, trusted=False)
    if isinstance(obj, dict) and not is_tensor_dict(obj):
        obj = next((obj[k] for k in ("model", "state_dict") if is_tensor_dict(obj.get(k))), obj)
    if not is_tensor_dict(obj):
        raise ValueError(f"{path}: found no state dict of tensors. {PASST_FORMAT}")
    return dict(obj)


def describe_passt(state: dict[str, Tensor]) -> str:
    """What a PaSST state dict's shapes say about its architecture ('?' where a key is absent)."""

    def dim(key: str, axis: int) -> object:
        value = state.get(key)
        return int(value.shape[axis]) if value is not None and value.ndim > axis else "?"

    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    return (
        f"depth {len(blocks)}, embed_dim {dim('cls_token', -1)}, "
        f"{dim('head.1.weight', 0)} classes, patch {dim('patch_embed.proj.weight', -1)}, "
        f"frequency x time patch grid {dim('freq_new_pos_embed', 2)} x "
        f"{dim('time_new_pos_embed', 3)}"
    )


class PasstWaveformTeacher(nn.Module):
    """``(B, N)`` waveforms at ``data_sample_rate`` -> ``(B, C)`` PaSST logits."""

    def __init__(self, weights: str | os.PathLike, arch: PasstArch, data_sample_rate: int) -> None:
        super().__init__()
        self.arch = arch
        self.data_sample_rate = int(data_sample_rate)
        self.path = str(weights)
        self.mel, self.net = build_passt(arch)
        state = read_passt_weights(weights)
        what = (
            f"the PaSST that model.init_args.teacher_passt configures "
            f"({describe_passt(self.net.state_dict())}; the file holds {describe_passt(state)}; "
            "the patch grid is n_mels // fstride x input_tdim // tstride)"
        )
        load_state_dict_named(self.net, state, self.path, what)

    def _check_frames(self, frames: int) -> None:
        """Refuse a clip PaSST cannot place in time. Its patch embedding cuts ``(frames -
        patch_size) // tstride + 1`` time patches, and its time positional table holds
        ``input_tdim // tstride`` of them (hear21passt's grid); fewer patches take the table's
        first positions, as PaSST is meant to; more would fail there with a tensor broadcast
        error, and a clip shorter than one patch with a convolution error. (A 10 s clip at
        32 kHz gives 1000 frames, more than the released ``input_tdim`` 998, and fits: it is
        what those models were trained on.)"""
        arch = self.arch
        positions = int(self.net.time_new_pos_embed.shape[-1])
        longest = positions * arch.tstride + arch.patch_size - 1  # frames that give `positions`
        if arch.patch_size <= frames <= longest:
            return
        raise ValueError(
            f"PaSST teacher {self.path}: a clip of {frames} frames (hop {arch.hop_length} at "
            f"{arch.sample_rate} Hz) does not fit its time positional embedding, which places "
            f"{arch.patch_size} to {longest} frames ({positions} patches of {arch.patch_size} "
            f"frames, stride {arch.tstride}, input_tdim {arch.input_tdim}); use other clip "
            "lengths (data.features.target_length) or the input_tdim its weights have"
        )

    @torch.no_grad()
    def forward(self, waveform: Tensor) -> Tensor:
        """(B, N) waveforms -> (B, C) float32 logits: resampled, PaSST's mel, PaSST."""
        wave = resample(waveform.detach().float(), self.data_sample_rate, self.arch.sample_rate)
        with warnings.catch_warnings():
            for message in _NOISE:
                warnings.filterwarnings("ignore", message=message)
            with torch.autocast(wave.device.type, enabled=False):
                spec = self.mel(wave)  # (B, n_mels, frames), float32 as trained
            self._check_frames(spec.shape[-1])
            logits, _ = self.net(spec.unsqueeze(1))  # (B, 1, n_mels, frames) -> (B, C)
        return logits.float()


def load_passt_teacher(
    weights: str | os.PathLike, arch: PasstArch, data_sample_rate: int
) -> FrozenTeacher:
    """The PaSST of ``arch`` with the local ``weights`` (checked key by key), frozen."""
    teacher = PasstWaveformTeacher(weights, arch, data_sample_rate)
    info = waveform_teacher_info(
        kind=PASST_KIND,
        num_classes=arch.num_classes,
        multi_label=arch.multi_label,  # a bare state dict does not say: the user may
        arch={**dataclasses.asdict(arch), "fmax": arch.band_top},
        path=teacher.path,
    )
    # The file records none of the front-end: the log shows what it is read with, and how
    # long its time table is in seconds (10 s, 20 s or 30 s for the released files).
    what = (
        f"PaSST ({describe_passt(teacher.net.state_dict())}; hear21passt's mel front-end: "
        f"{arch.n_mels} bins, {arch.fmin:g}-{arch.band_top:g} Hz, hop {arch.hop_length} at "
        f"{arch.sample_rate} Hz; time table {arch.input_tdim} frames = "
        f"{arch.input_tdim * arch.hop_length / arch.sample_rate:g} s)"
    )
    log_waveform_teacher(log, what, info, data_sample_rate, arch.sample_rate)
    return FrozenTeacher(teacher, info)
