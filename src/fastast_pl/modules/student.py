"""StudentModule: an AST (with Token Merging) trained or evaluated on labels.

The merge schedule used for training and the one used for evaluation can differ, so a
user can take any checkpoint and measure accuracy and speed under a new schedule with
no training (`test --model.init_from PATH --model.eval_merge ...`).
"""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor

from fastast_pl.models.arch import ASTArch
from fastast_pl.models.ast import ASTModel
from fastast_pl.models.checkpoints import read_inference_info
from fastast_pl.models.checkpoints.metadata import named_classes
from fastast_pl.models.checkpoints.record import ast_arch_record
from fastast_pl.modules.base import ClassificationModule
from fastast_pl.tome import MergeSpec

log = logging.getLogger(__name__)


class StudentModule(ClassificationModule):
    """AST student on labels: CE (single-label) or BCE (multi-label), acc/mAP/d-prime.

    The data-linked sizes and ``optim`` are ClassificationModule's (``**shared_args``,
    passed on unchanged; LightningCLI lists them under the same ``init_args``).

    Args:
        ast: Architecture of the AST (size, patch strides, drop path...).
        merge: Token Merging schedule while training: an int r for every layer, a list
            of r per layer, or a MergeSchedule (ratio, shape, ratio_overrides, r_overrides).
            0 = no merging.
        eval_merge: Schedule for validate/test/predict; None = the same as `merge`.
        prop_attn: Proportional attention (log of token size added to attention logits).
        init_from: Checkpoint to initialise the AST from: an official AST release, an HF
            transformers AST directory, a timm DeiT checkpoint or a fastast-pl checkpoint.
            Its head is kept for the same class count; where the file names its classes
            (our record, HF ``id2label``) and they differ from the data's, fit starts the
            head fresh (warned) and evaluation refuses the data's classes in another order.
    """

    def __init__(
        self,
        *,
        ast: ASTArch | None = None,
        merge: MergeSpec = 0,
        eval_merge: MergeSpec | None = None,
        prop_attn: bool = True,
        init_from: str | None = None,
        **shared_args: Any,
    ) -> None:
        super().__init__(**shared_args)
        self.save_hyperparameters()
        self.model = ASTModel(
            num_classes=self.num_classes,
            input_tdim=self.target_length,
            input_fdim=self.num_mel_bins,
            arch=ast or ASTArch(),
            merge=merge,
            eval_merge=eval_merge,
            prop_attn=prop_attn,
        )
        self._init_classes: tuple[str, list[str]] | None = None
        if init_from:
            self.model.load_pretrained(init_from)
            names = named_classes(read_inference_info(init_from).class_names)
            if names is not None and len(names) == self.num_classes:  # its head was loaded
                self._init_classes = (init_from, names)

    def setup(self, stage: str) -> None:
        """An ``init_from`` head named for other classes than the data's (same count): for
        fit it is re-initialised (warned), as for another class count; for evaluation the
        data's classes in another order are refused (each score would be read as another
        class), other names are warned about (other classes, or other spellings)."""
        super().setup(stage)
        if self._init_classes is None:
            return
        path, classes = self._init_classes
        differs = self.differing_class(classes)
        if differs is None:
            return
        at, theirs, ours, reordered = differs
        what = f"class {at}: {theirs!r} there, {ours!r} in the data"
        if stage == "fit":
            self.model.reset_head()
            log.warning("init_from %s: its head was trained for other classes (%s); the head "
                        "starts fresh, the rest of the AST is kept", path, what)  # fmt: skip
        elif reordered:
            raise ValueError(
                f"init_from {path}: its head scores the data's classes in another order "
                f"({what}); each score would be read as another class. Fine-tune it on this "
                "data first (fit re-initialises the head)"
            )
        else:
            log.warning("init_from %s: its head names other classes than the data's (%s); its "
                        "scores are read by class index", path, what)  # fmt: skip

    def forward(self, fbank: Tensor) -> Tensor:
        """(B, T, F) normalized fbank -> (B, num_classes) logits."""
        return self.model(fbank)

    def architecture(self) -> dict[str, Any]:
        """The AST's architecture for the checkpoint record."""
        return ast_arch_record(self.model.arch)

    # ASTModel runs `merge` in training mode and `eval_merge` in eval mode: Lightning's
    # train()/eval() around every loop pick the schedule, with no hook here.
    def merge_metadata(self) -> tuple[list[int] | None, list[int] | None]:
        """(eval, train) schedules as r per layer, stored for inference with the checkpoint."""
        model = self.model
        return model.merge_schedule(model.eval_merge).r, model.merge_schedule(model.merge).r

    def on_fit_start(self) -> None:
        schedule = self.model.merge_schedule(self.model.merge)
        log.info(
            "Token Merging for training: r per layer %s, tokens %s", schedule.r, schedule.tokens
        )
