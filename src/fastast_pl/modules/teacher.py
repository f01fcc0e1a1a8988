"""TeacherModule: trains the CNN teacher on labels; loads a trained one frozen for distillation.

The checkpoint carries what a student needs to check compatibility before training: the
number of classes, the label kind and the data's feature settings (``feature_config()``
of the datamodule), under the ``"fastast_teacher"`` key.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fastast_pl.models.teacher import CNNTeacher, TeacherArch
from fastast_pl.modules.base import ClassificationModule, OptimConfig

log = logging.getLogger(__name__)

#: Checkpoint entry holding the teacher's data-linked settings.
TEACHER_CKPT_KEY = "fastast_teacher"


def datamodule_feature_config(trainer: Any) -> dict[str, Any] | None:
    """The datamodule's ``feature_config()`` when the trainer has a datamodule offering it."""
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    fn = getattr(datamodule, "feature_config", None)
    return dict(fn()) if callable(fn) else None


@dataclass(frozen=True)
class TeacherInfo:
    """What a teacher checkpoint says about the data it was trained on."""

    num_classes: int
    multi_label: bool
    target_length: int
    num_mel_bins: int
    feature_config: dict[str, Any] | None
    arch: dict[str, Any]
    path: str = ""


class FrozenTeacher(nn.Module):
    """A trained ``CNNTeacher`` that stays in eval mode and never takes gradients.

    ``train(mode)`` always keeps it in eval mode (as DINOv2 pins its teacher), so
    ``LightningModule.train()`` cannot switch BatchNorm or dropout back on; the
    parameters have ``requires_grad=False``. ``forward`` returns logits whatever the
    teacher's head outputs.
    """

    def __init__(self, teacher: CNNTeacher, info: TeacherInfo) -> None:
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
        return self.teacher.output_kind

    @torch.no_grad()
    def forward(self, fbank: Tensor) -> Tensor:
        """(B, T, F) fbank -> (B, K) teacher logits (no graph is built)."""
        return self.teacher.logits(fbank)


class TeacherModule(ClassificationModule):
    """CNN teacher (PSLA) trained on labels with the shared loss, metrics and optimiser.

    ``forward`` returns logits: for the attention head (which outputs probabilities p)
    these are logit(clamp(p, 1e-6, 1 - 1e-6)). Hence the shared task loss is
    - multi-label: BCE-with-logits on logit(p), which equals PSLA's BCE on the
      (clamped) probabilities;
    - single-label: cross-entropy on logit(p), i.e. the class distribution is
      softmax(logit(p)) -- the same distribution distillation later hands the student
      (softmax of teacher logits / T), so the teacher is trained for what it teaches.

    Args:
        num_classes, target_length, num_mel_bins, multi_label: linked from the data.
        teacher: the teacher's architecture (backbone, pooling, heads, ImageNet file).
        optim: optimiser and LR schedule.
    """

    def __init__(
        self,
        num_classes: int = 527,
        target_length: int = 1024,
        num_mel_bins: int = 128,
        multi_label: bool = False,
        teacher: TeacherArch | None = None,
        optim: OptimConfig | None = None,
    ) -> None:
        super().__init__(num_classes, target_length, num_mel_bins, multi_label, optim)
        self.save_hyperparameters()
        if isinstance(teacher, dict):  # hyper-parameters read back from YAML
            teacher = TeacherArch(**teacher)
        self.arch = teacher or TeacherArch()
        self.model = CNNTeacher(
            num_classes=num_classes, input_fdim=num_mel_bins, **dataclasses.asdict(self.arch)
        )
        self._feature_config: dict[str, Any] | None = None

    def forward(self, fbank: Tensor) -> Tensor:
        """(B, T, F) normalized fbank -> (B, num_classes) logits."""
        return self.model.logits(fbank)

    def setup(self, stage: str) -> None:
        self._feature_config = datamodule_feature_config(self.trainer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[TEACHER_CKPT_KEY] = {
            "num_classes": self.num_classes,
            "multi_label": self.multi_label,
            "target_length": self.target_length,
            "num_mel_bins": self.num_mel_bins,
            "feature_config": self._feature_config,
            "arch": dataclasses.asdict(self.arch),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(TEACHER_CKPT_KEY, {})
        self._feature_config = saved.get("feature_config", self._feature_config)

    @staticmethod
    def read_info(path: str | Path) -> tuple[TeacherInfo, dict[str, Tensor]]:
        """Teacher settings and model weights (without the ``model.`` prefix) of a checkpoint."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"teacher checkpoint {str(path)!r} does not exist; train one with "
                "`python -m fastast_pl fit --config experiments/<dataset>/teacher.yaml`"
            )
        # Lightning checkpoints pickle the hyper-parameter dataclasses, so weights_only
        # loading would refuse them; checkpoints are the user's own files.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        saved = checkpoint.get(TEACHER_CKPT_KEY) if isinstance(checkpoint, dict) else None
        if saved is None:
            found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint)
            raise ValueError(
                f"{str(path)!r} is not a TeacherModule checkpoint: no {TEACHER_CKPT_KEY!r} entry "
                f"(found {found}). Pass a checkpoint written by `fit` of a TeacherModule."
            )
        state = {
            k.removeprefix("model."): v
            for k, v in checkpoint["state_dict"].items()
            if k.startswith("model.")
        }
        info = TeacherInfo(
            num_classes=int(saved["num_classes"]),
            multi_label=bool(saved["multi_label"]),
            target_length=int(saved["target_length"]),
            num_mel_bins=int(saved["num_mel_bins"]),
            feature_config=saved.get("feature_config"),
            arch=dict(saved["arch"]),
            path=str(path),
        )
        return info, state

    @staticmethod
    def load_frozen(path: str | Path) -> FrozenTeacher:
        """Load a TeacherModule checkpoint as a ``FrozenTeacher`` on the CPU.

        The ImageNet file the teacher started from is not needed (nor read): the
        trained weights replace it.
        """
        info, state = TeacherModule.read_info(path)
        arch = dict(info.arch, pretrained_path=None)
        teacher = CNNTeacher(num_classes=info.num_classes, input_fdim=info.num_mel_bins, **arch)
        teacher.load_state_dict(state)
        return FrozenTeacher(teacher, info)
