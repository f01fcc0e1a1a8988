"""TeacherModule: trains the CNN teacher on labels; loads a trained one frozen for distillation.

The checkpoint's record (``fastast_pl.models.checkpoints.record``, written by
``ClassificationModule``) carries what a student checks before training: classes, label
kind, the data's feature settings and identity, and the CNN's architecture.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

from torch import Tensor

from fastast_pl.models.checkpoints.cnn_weights import (
    check_variant,
    init_cnn_teacher,
    read_cnn_weights,
)
from fastast_pl.models.checkpoints.teacher import load_teacher
from fastast_pl.models.teacher import CNNTeacher, FrozenTeacher, TeacherArch
from fastast_pl.modules.base import ClassificationModule

log = logging.getLogger(__name__)


def datamodule_feature_config(trainer: Any) -> dict[str, Any] | None:
    """The datamodule's ``feature_config()`` when the trainer has a datamodule offering it."""
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    fn = getattr(datamodule, "feature_config", None)
    return dict(fn()) if callable(fn) else None


class TeacherModule(ClassificationModule):
    """CNN teacher (PSLA) trained on labels with the shared loss, metrics and optimiser.

    ``forward`` returns logits: for the attention head (which outputs probabilities p)
    these are logit(clamp(p, 1e-6, 1 - 1e-6)). Hence the shared task loss is
    - multi-label: BCE-with-logits on logit(p), which equals PSLA's BCE on the
      (clamped) probabilities;
    - single-label: cross-entropy on logit(p), i.e. the class distribution is
      softmax(logit(p)) -- the same distribution distillation later hands the student
      (softmax of teacher logits / T), so the teacher is trained for what it teaches.

    The data-linked sizes and ``optim`` are ClassificationModule's (``**shared_args``).

    Args:
        teacher: the teacher's architecture (backbone, pooling, heads, ImageNet file).
        init_from: a trained teacher to start from (fine-tuning): a TeacherModule checkpoint,
            a timm checkpoint of ``teacher.backbone`` (a directory or hub id with timm's
            config.json, or a state dict file) or PSLA's released EfficientNet
            (``efficientnet_pytorch`` keys, converted to timm's ``tf_efficientnet_bX``). A
            file recording another backbone variant than ``teacher.backbone`` is refused
            (``efficientnet_bX`` and ``tf_efficientnet_bX`` share keys and shapes, not
            padding and BatchNorm eps). The pooling head is loaded where its shapes fit
            (same pooling, heads and classes), else starts fresh (logged); so does, at fit,
            a TeacherModule checkpoint's head named for other classes than the data's. Give either this
            or ``teacher.pretrained_path``, whose file gets the same variant check before
            timm loads it.
    """

    def __init__(
        self,
        *,
        teacher: TeacherArch | None = None,
        init_from: str | None = None,
        **shared_args: Any,
    ) -> None:
        super().__init__(**shared_args)
        self.save_hyperparameters()
        if isinstance(teacher, dict):  # hyper-parameters read back from YAML
            teacher = TeacherArch(**teacher)
        self.arch = teacher or TeacherArch()
        if init_from and self.arch.pretrained_path:
            raise ValueError(
                f"TeacherModule: give model.init_from ({init_from!r}) or "
                f"model.teacher.pretrained_path ({self.arch.pretrained_path!r}), not both"
            )
        pretrained = self.arch.pretrained_path
        if pretrained and Path(pretrained).is_file():  # a missing file: CNNTeacher names it
            check_variant(read_cnn_weights(pretrained), self.arch.backbone)
        self.model = CNNTeacher(
            num_classes=self.num_classes,
            input_fdim=self.num_mel_bins,
            **dataclasses.asdict(self.arch),
        )
        self._init_head: tuple[str, list[str], dict[str, Tensor]] | None = None
        if init_from:
            fresh = copy.deepcopy(self.model.head.state_dict())
            classes = init_cnn_teacher(self.model, init_from, self.arch.backbone)
            if classes is not None:
                self._init_head = (init_from, classes, fresh)

    def setup(self, stage: str) -> None:
        """Before fitting: an ``init_from`` head trained for other classes than the data's
        (same count, other names or order) starts fresh, as one of another shape does."""
        super().setup(stage)
        if stage != "fit" or self._init_head is None:
            return
        path, classes, fresh = self._init_head
        differs = self.differing_class(classes)
        if differs is not None:
            self.model.head.load_state_dict(fresh)
            log.warning(
                "init_from %s: its pooling head was trained for other classes (class %d: %r "
                "there, %r in the data); the head starts fresh, the backbone is kept",
                path,
                *differs[:3],
            )

    def forward(self, fbank: Tensor) -> Tensor:
        """(B, T, F) normalized fbank -> (B, num_classes) logits."""
        return self.model.logits(fbank)

    def architecture(self) -> dict[str, Any]:
        """The CNN teacher's architecture for the checkpoint record."""
        return {"kind": "cnn", **dataclasses.asdict(self.arch)}

    @staticmethod
    def load_frozen(path: str | Path) -> FrozenTeacher:
        """Load a TeacherModule checkpoint as a ``FrozenTeacher`` on the CPU."""
        return FrozenTeacher(*load_teacher(path))
