"""CNN teacher for cross-model distillation: a timm CNN over the 1-channel fbank + pooling head.

Follows PSLA (Gong et al., 2021) and the CNN side of CMKD (Gong et al., 2022): an
ImageNet CNN (EfficientNet-B2 by default) sees the spectrogram as a one-channel image,
the frequency axis of its last feature map is averaged away, and a multi-head attention
pooling head turns the per-frame features into clip-level class probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import timm
import torch
from torch import Tensor, nn

PoolingKind = Literal["attention", "mean"]
OutputKind = Literal["logits", "probabilities"]

#: Probabilities are clamped to [PROB_EPS, 1 - PROB_EPS] before taking their logit, so
#: teacher logits stay finite (|logit| <= ~13.8).
PROB_EPS = 1e-6


def probabilities_to_logits(p: Tensor, eps: float = PROB_EPS) -> Tensor:
    """logit(clamp(p, eps, 1 - eps)): the logits whose sigmoid gives back `p`."""
    return torch.logit(p.float().clamp(eps, 1.0 - eps))


class AttentionPooling(nn.Module):
    """PSLA multi-head attention pooling over time; outputs probabilities in (0, 1).

    Per head h and class k: frame scores c_hkt = sigmoid(W_c x_t), attention
    a_hkt = sigmoid(W_a x_t) clamped to [1e-7, 1 - 1e-7] and normalised to sum to one
    over time (PSLA's normalised sigmoid, not a softmax), clip score
    p_hk = sum_t a_hkt c_hkt. Heads are combined with learned weights. PSLA uses raw
    learned weights initialised to 1/H; we pass them through a softmax (initialised
    uniform, so the start is the same) to keep the output a convex combination of
    probabilities, i.e. inside (0, 1) for any weights.
    """

    def __init__(self, in_features: int, num_classes: int, num_heads: int = 4) -> None:
        super().__init__()
        if num_heads < 1:
            raise ValueError(
                f"CNNTeacher: num_heads must be >= 1 for attention pooling, got {num_heads}"
            )
        self.num_classes = num_classes
        self.num_heads = num_heads
        # One linear map per role for all heads at once (== H separate 1x1 convolutions).
        self.att = nn.Linear(in_features, num_heads * num_classes)
        self.cla = nn.Linear(in_features, num_heads * num_classes)
        self.head_logits = nn.Parameter(torch.zeros(num_heads))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T', C) per-frame features -> (B, K) clip probabilities, float32.

        Runs in float32 even under bf16 autocast: bf16 rounds any p above ~0.998 to 1.0,
        whose logit (for the losses and the distillation) is infinite.
        """
        with torch.autocast(x.device.type, enabled=False):
            return self._pool(x.float())

    def _pool(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        att = torch.sigmoid(self.att(x)).view(
            b, t, self.num_heads, self.num_classes
        )  # (B, T', H, K)
        cla = torch.sigmoid(self.cla(x)).view(
            b, t, self.num_heads, self.num_classes
        )  # (B, T', H, K)
        att = att.clamp(1e-7, 1.0 - 1e-7)
        att = att / att.sum(dim=1, keepdim=True)  # normalised over time
        per_head = (att * cla).sum(dim=1)  # (B, H, K)
        weights = torch.softmax(self.head_logits, dim=0)  # (H,)
        return torch.einsum("bhk,h->bk", per_head, weights)  # (B, K)


class MeanPooling(nn.Module):
    """Mean over time, then a linear classifier; outputs logits."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T', C) per-frame features -> (B, K) logits."""
        return self.fc(x.mean(dim=1))


@dataclass
class TeacherArch:
    """The architecture fields of ``CNNTeacher`` (everything but the data-linked sizes).

    ``CNNTeacher(num_classes=..., input_fdim=..., **dataclasses.asdict(arch))`` builds
    the model, so a LightningModule can take one typed arg. Defaults are PSLA's best
    AudioSet model: EfficientNet-B2, 4-head attention pooling, ImageNet initialisation
    (give ``pretrained_path``; left None, the backbone starts from random weights).

    Args:
        backbone: Any timm CNN name (PSLA: "efficientnet_b2"); built with one input channel.
        pooling: "attention" (PSLA multi-head attention pooling over time, outputs
            probabilities) or "mean" (mean over time + linear layer, outputs logits).
        num_heads: Attention pooling heads (PSLA: 4).
        pretrained_path: Local timm checkpoint of the backbone (ImageNet weights); the first
            convolution is adapted to one channel. A file recording another variant than
            ``backbone`` (timm's ``arch`` key, e.g. ``{"arch": "tf_efficientnet_b2",
            "state_dict": ...}``) is refused, as ``init_from`` does; a bare state dict
            records none and is loaded with a warning. None: random initialisation.
        drop_rate: Dropout on the per-frame features before pooling.
        drop_path_rate: Stochastic depth rate of the backbone, where it supports one.
        backbone_kwargs: Extra keyword arguments for ``timm.create_model``.
    """

    backbone: str = "efficientnet_b2"
    pooling: PoolingKind = "attention"
    num_heads: int = 4
    pretrained_path: str | None = None
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    backbone_kwargs: dict[str, Any] | None = None


class CNNTeacher(nn.Module):
    """A timm CNN with a PSLA pooling head, taking the normalised fbank (B, T, F).

    Args:
        num_classes: number of output classes.
        backbone: any timm CNN name whose `forward_features`-style output is a 2-D map,
            built with ``in_chans=1, num_classes=0, global_pool=''``.
        pooling: ``"attention"`` (PSLA multi-head attention pooling, outputs
            probabilities) or ``"mean"`` (mean over time + linear, outputs logits).
        num_heads: attention heads (attention pooling only; PSLA uses 4).
        pretrained_path: a local timm checkpoint of the backbone (ImageNet weights) or
            None for random initialisation. The RGB first convolution is adapted to one
            channel by timm's ``adapt_input_conv``, which SUMS the kernel over the three
            input channels (so a grey image gives the same activations as the RGB one);
            the ImageNet classifier is dropped. Nothing is ever downloaded. The file's
            recorded variant is checked by ``TeacherModule`` (``checkpoints/cnn_weights.py``,
            which this module cannot import without an import circle).
        input_fdim: number of mel bins the teacher expects (checked on every forward).
        drop_rate: dropout on the per-frame features before the pooling head.
        drop_path_rate: stochastic depth inside the backbone (where timm supports it).
        backbone_kwargs: extra keyword arguments for ``timm.create_model``.

    ``output_kind`` tells what ``forward`` returns; ``logits(x)`` always returns logits.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "efficientnet_b2",
        pooling: PoolingKind = "attention",
        num_heads: int = 4,
        pretrained_path: str | None = None,
        input_fdim: int = 128,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        backbone_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"CNNTeacher: num_classes must be >= 1, got {num_classes}")
        if pooling not in ("attention", "mean"):
            raise ValueError(f"CNNTeacher: pooling must be 'attention' or 'mean', got {pooling!r}")
        self.num_classes = num_classes
        self.pooling = pooling
        self.input_fdim = input_fdim
        self.backbone = self._build_backbone(
            backbone, pretrained_path, drop_path_rate, dict(backbone_kwargs or {})
        )
        channels = self._infer_channels(input_fdim)
        self.dropout = nn.Dropout(drop_rate)
        self.head: nn.Module
        if pooling == "attention":
            self.head = AttentionPooling(channels, num_classes, num_heads)
        else:
            self.head = MeanPooling(channels, num_classes)

    @property
    def output_kind(self) -> OutputKind:
        """What `forward` returns: 'probabilities' (attention pooling) or 'logits' (mean)."""
        return "probabilities" if self.pooling == "attention" else "logits"

    @staticmethod
    def _build_backbone(
        name: str, pretrained_path: str | None, drop_path_rate: float, kwargs: dict[str, Any]
    ) -> nn.Module:
        common = dict(in_chans=1, num_classes=0, global_pool="", **kwargs)
        if drop_path_rate > 0:
            common["drop_path_rate"] = drop_path_rate
        if pretrained_path is None:
            return timm.create_model(name, pretrained=False, **common)
        path = Path(pretrained_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"CNNTeacher: pretrained_path {str(path)!r} is not a file; expected a local "
                f"timm checkpoint of backbone {name!r} (weights are never downloaded)."
            )
        # timm loads the file, adapts the first conv to one channel (sum over RGB) and
        # drops the classifier because num_classes=0.
        return timm.create_model(
            name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **common
        )

    @torch.no_grad()
    def _infer_channels(self, input_fdim: int) -> int:
        """Channels of the backbone's last feature map, from one tiny eval-mode forward."""
        was_training = self.backbone.training
        self.backbone.eval()
        probe = torch.zeros(1, 1, input_fdim, 64)  # (B, 1, F, T)
        fmap = self.backbone(probe)
        self.backbone.train(was_training)
        if fmap.ndim != 4:
            raise ValueError(
                f"CNNTeacher: backbone output has shape {tuple(fmap.shape)}; expected a "
                "(B, C, F', T') feature map. Choose a CNN backbone."
            )
        return int(fmap.shape[1])

    def frame_features(self, x: Tensor) -> Tensor:
        """(B, T, F) fbank -> (B, T', C) per-frame features (frequency averaged away)."""
        if x.ndim != 3 or x.shape[-1] != self.input_fdim:
            raise ValueError(
                f"CNNTeacher: expected input (B, T, F={self.input_fdim}), got {tuple(x.shape)}"
            )
        x = x.unsqueeze(1).transpose(2, 3)  # (B, 1, F, T)
        fmap = self.backbone(x)  # (B, C, F', T')
        frames = fmap.mean(dim=2).transpose(1, 2)  # (B, T', C)
        return self.dropout(frames)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, F) -> (B, K): probabilities or logits, as `output_kind` says."""
        return self.head(self.frame_features(x))

    def logits(self, x: Tensor) -> Tensor:
        """(B, T, F) -> (B, K) logits whatever the head (probabilities -> clamped logit)."""
        out = self(x)
        if self.output_kind == "probabilities":
            return probabilities_to_logits(out)
        return out


@dataclass(frozen=True)
class TeacherInfo:
    """What a teacher checkpoint says about the data it was trained on.

    ``multi_label`` is None where the checkpoint does not say (official AST releases, HF
    directories, plain state dicts); ``kind`` is "cnn" (CNNTeacher), "ast" (ASTModel) or a
    waveform teacher's ("hf-waveform", "passt": ``models/waveform_teacher.py``).
    ``class_names`` and ``data`` (the training data's identity) come from our checkpoints'
    record; None elsewhere.
    """

    num_classes: int
    multi_label: bool | None
    target_length: int
    num_mel_bins: int
    feature_config: dict[str, Any] | None
    arch: dict[str, Any]
    path: str = ""
    kind: str = "cnn"
    class_names: list[str] | None = None
    data: dict[str, Any] | None = None


class FrozenTeacher(nn.Module):
    """A trained teacher (``CNNTeacher``, ``ASTModel``, a waveform teacher) pinned to eval mode,
    without gradients.

    ``train(mode)`` always keeps it in eval mode (as DINOv2 pins its teacher), so
    ``LightningModule.train()`` cannot switch BatchNorm, dropout or drop-path back on; the
    parameters have ``requires_grad=False``. ``forward`` returns logits whatever the
    teacher's head outputs.
    """

    def __init__(self, teacher: nn.Module, info: TeacherInfo) -> None:
        super().__init__()
        self.teacher = teacher
        self.info = info
        self.teacher.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenTeacher:
        """Ignore `mode`: a frozen teacher is always in eval mode."""
        return super().train(False)

    @property
    def output_kind(self) -> str:
        """What the wrapped model's ``forward`` gives; ``FrozenTeacher.forward`` gives logits."""
        return getattr(self.teacher, "output_kind", "logits")

    @torch.no_grad()
    def forward(self, fbank: Tensor) -> Tensor:
        """(B, T, F) fbank, or (B, N) waveform for a waveform teacher -> (B, K) teacher logits
        (no graph is built)."""
        if isinstance(self.teacher, CNNTeacher):
            return self.teacher.logits(fbank)
        return self.teacher(fbank)  # ASTModel: logits
