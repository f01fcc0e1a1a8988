"""DistillationModule: the AST student trained with CMKD (``fastast_pl.losses``) from a frozen
teacher (the CNN teacher, a trained AST, an HF audio classifier or PaSST); the checks that the
teacher fits the data live in ``teacher_checks.py``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fastast_pl.losses import (
    DEFAULT_KD_FORM,
    DEFAULT_KD_LAMBDA,
    DEFAULT_KD_TEMPERATURE,
    KDForm,
    check_kd_settings,
    cmkd_loss,
)
from fastast_pl.metrics import ClassificationMetrics
from fastast_pl.models.frozen import load_frozen_teacher
from fastast_pl.models.hf_teacher import is_waveform_teacher, load_waveform_teacher
from fastast_pl.models.passt_teacher import PasstArch, load_passt_teacher
from fastast_pl.models.teacher import FrozenTeacher
from fastast_pl.models.waveform_teacher import hears_waveforms
from fastast_pl.modules.base import Batch
from fastast_pl.modules.kd_cache import (
    TeacherLogitsCache,
    batch_clip_keys,
    cache_key,
)
from fastast_pl.modules.student import StudentModule
from fastast_pl.modules.teacher import datamodule_feature_config
from fastast_pl.modules.teacher_checks import (
    check_teacher_compatibility,
    check_waveform_data,
    training_augmentations,
)

log = logging.getLogger(__name__)


class DistillationModule(StudentModule):
    """AST student (with Token Merging) trained with CMKD from a frozen teacher.

    The teacher is loaded in ``setup()`` from ``teacher_checkpoint``: a TeacherModule
    checkpoint (the CNN teacher), any AST checkpoint ``ASTModel.from_pretrained`` reads
    (a trained StudentModule/DistillationModule ``.ckpt``, an official AST release, an HF
    AST directory; run without Token Merging, see ``fastast_pl.models.frozen``), or any
    other Hugging Face audio classifier (wav2vec2, HuBERT, Whisper, ...; a directory or a
    hub id through the hub cache) or, with ``teacher_passt``, a PaSST weights file. These
    two hear the batch's clean ``waveform`` (``data.waveforms: true``) through their own
    front-end at their own sample rate (``fastast_pl.models.hf_teacher``,
    ``fastast_pl.models.passt_teacher``): SpecAugment, noise and roll then reach only the
    student (warned), mixup must mix waveforms. It is checked against the data (classes, label kind, feature settings), kept
    in eval mode without gradients, left out of the optimiser and dropped from this
    module's checkpoints: a distilled checkpoint tests and predicts without it. Outside
    ``fit`` a missing ``teacher_checkpoint`` only skips the teacher's metrics.

    Logged: ``train/loss``, ``train/loss_task``, ``train/loss_kd``; the student's metrics
    as in StudentModule, and the teacher's once per run (first validation epoch, and
    test) as ``{val,test}/teacher_{acc,mAP,d_prime}``.

    Every StudentModule argument is accepted too (``**student_args``, passed on unchanged;
    LightningCLI lists them under the same ``init_args``).

    Args:
        teacher_checkpoint: the trained teacher: a TeacherModule checkpoint, an AST checkpoint,
            a Hugging Face audio classifier (directory or hub id) that hears waveforms, or
            (with ``teacher_passt``) a local PaSST weights file.
        teacher_passt: read ``teacher_checkpoint`` as the weights of this PaSST (hear21passt,
            ``pip install 'fastast-pl[passt]'``; the defaults are the released PaSST-S
            AudioSet model); None: the teacher is one of the others.
        kd_lambda: weight of the distillation term: ``(1 - kd_lambda) * task + kd_lambda *
            kd`` (``fastast_pl.losses``); 0 = labels only. CMKD's lambda weights the other
            term, the ground-truth loss (``lambda * L_gt + (1 - lambda) * L_kd``, Gong et
            al. 2022), so ``kd_lambda = 1 - lambda``: the two agree only at CMKD's 0.5.
            0.5 is kept by docs/benchmarks.md ("Why the teacher's knowledge does or does not
            transfer"): 0.9 and 1.0 did no better; the teacher helped only with scarce
            labels, so compare with a ``kd_lambda: 0`` run of the same length.
        kd_temperature: softening temperature of the teacher (see DEFAULT_KD_TEMPERATURE);
            1 is kept by the same study: 2 and 4, in either form, never did better.
        kd_form: "cmkd" (CMKD: temperature on the teacher only, no T^2) or "hinton"
            (Hinton et al. 2015: student and teacher at T, times T^2); equal at T = 1.
        cache_teacher_logits: cache the teacher's logits of the training clips on disk
            (used only when training augmentation leaves the teacher's input unchanged).
        teacher_cache_dir: where the cache lives; default ``<teacher checkpoint dir>/teacher_logits``.
        teacher_other_data: the teacher was trained on another data source or split than this
            data on purpose (e.g. a larger corpus with the same classes, a Hugging Face
            model); otherwise a teacher whose checkpoint records another source is refused.
            Its class names may then be spelled otherwise (warned, matched by index); the
            data's classes in another order are refused either way.
    """

    def __init__(
        self,
        *,
        teacher_checkpoint: str | None = None,
        teacher_passt: PasstArch | None = None,
        kd_lambda: float = DEFAULT_KD_LAMBDA,
        kd_temperature: float = DEFAULT_KD_TEMPERATURE,
        kd_form: KDForm = DEFAULT_KD_FORM,
        cache_teacher_logits: bool = False,
        teacher_cache_dir: str | None = None,
        teacher_other_data: bool = False,
        **student_args: Any,
    ) -> None:
        super().__init__(**student_args)
        self.save_hyperparameters()
        check_kd_settings(kd_lambda, kd_temperature, kd_form)
        self.teacher_checkpoint = teacher_checkpoint
        self.teacher_passt = teacher_passt
        self.kd_lambda = kd_lambda
        self.kd_temperature = kd_temperature
        self.kd_form = kd_form
        self.cache_teacher_logits = cache_teacher_logits
        self.teacher_cache_dir = teacher_cache_dir
        self.teacher_other_data = teacher_other_data
        self.teacher: FrozenTeacher | None = None
        self.teacher_metrics = nn.ModuleDict(
            {
                stage: ClassificationMetrics(
                    self.num_classes, self.multi_label, prefix=f"{stage}/teacher_"
                )
                for stage in ("val", "test")
            }
        )
        self._teacher_val_done = False
        self._cache: TeacherLogitsCache | None = None
        self.cache_counts = {"hits": 0, "misses": 0}

    learns_from_unlabeled = True  # the teacher's targets teach them

    # ------------------------------------------------------------------ teacher
    def setup(self, stage: str) -> None:
        """Before the run: load the teacher, check it against the data (every stage: the
        data may be another) and, for fit, decide on the teacher-logits cache."""
        super().setup(stage)  # the student's own checks (its init_from head)
        if self.teacher is None:
            self._load_teacher(stage)
        if self.teacher is None:
            return
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        identity = getattr(datamodule, "data_identity", None)
        check_teacher_compatibility(
            self.teacher.info,
            self.num_classes,
            self.multi_label,
            self._data_feature_config(),
            getattr(datamodule, "class_names", None),
            identity().get("source") if callable(identity) else None,
            self.teacher_other_data,
        )
        if self.hears_waveforms and stage == "fit":
            check_waveform_data(datamodule, self.teacher_checkpoint)
        if stage == "fit":
            self._setup_cache()

    def _load_teacher(self, stage: str) -> None:
        path = self.teacher_checkpoint
        if stage == "fit" and not path:
            raise ValueError(
                "DistillationModule needs model.teacher_checkpoint (a TeacherModule checkpoint "
                "or a trained AST checkpoint) to fit; got None"
            )
        if stage != "fit" and (not path or not Path(path).exists()):
            log.warning(
                "no teacher checkpoint (%r) for %s: evaluating the student only", path, stage
            )
            return
        if self.teacher_passt is not None:
            teacher = load_passt_teacher(path, self.teacher_passt, self._data_sample_rate())
        elif is_waveform_teacher(path):
            teacher = load_waveform_teacher(path, self._data_sample_rate())
        else:
            teacher = load_frozen_teacher(path, target_length=self.target_length)
        self.teacher = teacher.to(self.device)

    def _data_sample_rate(self) -> int:
        rate = self._data_feature_config().get("sample_rate")
        if rate is None:
            raise ValueError(
                f"waveform teacher {self.teacher_checkpoint!r} needs the data's sample rate: the "
                "datamodule's feature_config() has no 'sample_rate'"
            )
        return int(rate)

    @property
    def hears_waveforms(self) -> bool:
        """Whether the teacher reads the batch's ``waveform`` rather than its ``fbank``."""
        return self.teacher is not None and hears_waveforms(self.teacher.info)

    def teacher_input(self, batch: Batch) -> Tensor:
        """What the teacher reads of a batch: ``waveform`` (a waveform teacher) or ``fbank``."""
        if not self.hears_waveforms:
            return batch["fbank"]
        if "waveform" not in batch:
            raise ValueError(
                f"teacher {self.teacher_checkpoint!r} hears waveforms, but the batch has none: "
                "set data.waveforms: true"
            )
        return batch["waveform"]

    def _data_feature_config(self) -> dict[str, Any]:
        features = datamodule_feature_config(self._trainer)
        if features is None:  # built by hand, no datamodule: what the module itself knows
            features = {"num_mel_bins": self.num_mel_bins, "target_length": self.target_length}
        return features

    def _setup_cache(self) -> None:
        self._cache = None
        if not self.cache_teacher_logits:
            return
        datamodule = getattr(self._trainer, "datamodule", None)
        if datamodule is None:
            log.warning("not caching teacher logits: no datamodule to check augmentation on")
            return
        augmentations = training_augmentations(datamodule)
        if augmentations:
            log.warning(
                "not caching teacher logits: training augmentation changes the teacher's input "
                "every epoch (%s)",
                ", ".join(augmentations),
            )
            return
        assert self.teacher_checkpoint is not None  # checked in _load_teacher
        directory = (
            self.teacher_cache_dir or Path(self.teacher_checkpoint).parent / "teacher_logits"
        )
        extra = _data_identity(datamodule)
        if self.teacher_passt is not None:  # the same weights file read as another PaSST
            extra["teacher_passt"] = self.teacher.info.arch if self.teacher else None
        key = cache_key(
            self.teacher_checkpoint, datamodule_feature_config(self._trainer), "train", extra=extra
        )
        self._cache = TeacherLogitsCache(directory, "train", key, self.num_classes)
        log.info(
            "teacher-logits cache %s: %s (%d clips stored)",
            self._cache.path, self._cache.status, len(self._cache),
        )  # fmt: skip

    def teacher_logits(self, batch: Batch) -> Tensor:
        """(B, C) teacher logits for a training batch, from the cache where it has them.

        A clip the batch marks ``augmented`` is neither read from nor stored in the cache:
        its stored logits belong to its clean input, not to the one the student sees.
        """
        assert self.teacher is not None
        inputs = self.teacher_input(batch)  # (B, T, F) fbank or (B, N) waveform
        if self._cache is None:
            return self.teacher(inputs)
        keys = batch_clip_keys(batch)
        stored, found = self._cache.lookup(keys)
        clean = ~batch["augmented"].cpu() if "augmented" in batch else torch.ones_like(found)
        found &= clean
        device = batch["fbank"].device
        out = stored.to(device)  # (B, C)
        missing = (~found).nonzero().squeeze(1)  # (M,)
        self.cache_counts["hits"] += int(found.sum())
        self.cache_counts["misses"] += int(missing.numel())
        if missing.numel():
            computed = self.teacher(inputs[missing.to(inputs.device)]).float().to(device)  # (M, C)
            out[missing.to(device)] = computed
            kept = clean[missing].nonzero().squeeze(1).tolist()  # rows of `computed` to store
            self._cache.store([keys[int(missing[i])] for i in kept], computed[kept])
        return out

    # --------------------------------------------------------------------- loss
    def training_loss(self, batch: Batch, logits: Tensor) -> dict[str, Tensor]:
        """CMKD: logged as train/loss, train/loss_task, train/loss_kd; the task term over the
        batch's labeled clips only (unlabeled audio is taught by the teacher alone)."""
        teacher_logits = self.teacher_logits(batch)
        return cmkd_loss(
            logits, teacher_logits, batch["target"], self.multi_label,
            self.kd_lambda, self.kd_temperature, self.kd_form, labeled=batch.get("labeled"),
        )  # fmt: skip

    def on_train_epoch_end(self) -> None:
        if self._cache is None:
            return
        self._cache.sync()
        if self.trainer.is_global_zero and self._cache.dirty:
            self._cache.save()
        self._cache.dirty = False
        log.info(
            "teacher-logits cache: %d clips stored, counts %s", len(self._cache), self.cache_counts
        )

    # --------------------------------------------------------------- evaluation
    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        if (
            self.teacher is not None
            and not self._teacher_val_done
            and not self.trainer.sanity_checking
        ):
            self.teacher_metrics["val"].update(
                self.teacher(self.teacher_input(batch)), batch["target"]
            )

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        super().test_step(batch, batch_idx)
        if self.teacher is not None:
            self.teacher_metrics["test"].update(
                self.teacher(self.teacher_input(batch)), batch["target"]
            )

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self._log_teacher_metrics("val"):
            self._teacher_val_done = True

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_teacher_metrics("test")

    def _log_teacher_metrics(self, stage: str) -> bool:
        return self.log_and_reset(self.teacher_metrics[stage])

    # -------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop the teacher's weights (they live in the teacher's own checkpoint), then record."""
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("teacher.")]:
            del state[key]
        super().on_save_checkpoint(checkpoint)  # the record, with the checksum of what is kept

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Put the loaded teacher's weights back so strict loading of the student succeeds."""
        super().on_load_checkpoint(checkpoint)
        if self.teacher is not None:
            state = checkpoint["state_dict"]
            for key, value in self.teacher.state_dict().items():
                state.setdefault(f"teacher.{key}", value)


def _data_identity(datamodule: Any) -> dict[str, Any]:
    """What tells one training set from another beyond the feature settings (for the cache
    key): the datamodule's ``data_identity()`` where it offers one (docs/architecture.md)."""
    identity: dict[str, Any] = {"class": type(datamodule).__qualname__}
    data_identity = getattr(datamodule, "data_identity", None)
    if callable(data_identity):
        # Without the split fingerprints: entries are per clip, so adding a clip must not
        # invalidate the others (the record's fingerprints guard resumed splits instead).
        identity["data"] = {k: v for k, v in data_identity().items() if k != "splits"}
    return identity
