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
            of r per layer, or a MergeSchedule (ratio, shape, overrides). 0 = no merging.
        eval_merge: Schedule for validate/test/predict; None = the same as `merge`.
        prop_attn: Proportional attention (log of token size added to attention logits).
        init_from: Checkpoint to initialise the AST from: an official AST release, an HF
            transformers AST directory, a timm DeiT checkpoint or a fastast-pl checkpoint.
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
            prop_attn=prop_attn,
        )
        self.train_merge = merge
        self.eval_merge = merge if eval_merge is None else eval_merge
        # Validate the evaluation schedule now, not after an epoch of training.
        self.model.merge_schedule(self.eval_merge)
        if init_from:
            self.model.load_pretrained(init_from)

    def forward(self, fbank: Tensor) -> Tensor:
        """(B, T, F) normalized fbank -> (B, num_classes) logits."""
        return self.model(fbank)

    # Training runs under `merge`, every evaluation under `eval_merge`.
    def on_train_epoch_start(self) -> None:
        self.model.set_merge(self.train_merge)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self.model.set_merge(self.eval_merge)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.model.set_merge(self.train_merge)  # validation may run mid-epoch

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.model.set_merge(self.eval_merge)

    def on_predict_epoch_start(self) -> None:
        self.model.set_merge(self.eval_merge)

    def architecture(self) -> dict[str, Any]:
        """The AST's architecture for the checkpoint record."""
        return ast_arch_record(self.model.arch)

    def merge_metadata(self) -> tuple[list[int] | None, list[int] | None]:
        """(eval, train) schedules as r per layer, stored for inference with the checkpoint."""
        return self.model.merge_schedule(self.eval_merge).r, self.model.merge_schedule(
            self.train_merge
        ).r

    def on_fit_start(self) -> None:
        schedule = self.model.merge_schedule()
        log.info(
            "Token Merging for training: r per layer %s, tokens %s", schedule.r, schedule.tokens
        )
