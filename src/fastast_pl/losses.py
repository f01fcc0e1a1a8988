"""Cross-model knowledge distillation (CMKD) losses.

CMKD (Gong et al., 2022) trains the student on a mix of the ground-truth loss and a
distillation loss towards a frozen teacher's temperature-softened predictions:

    loss = (1 - kd_lambda) * task(student, target) + kd_lambda * kd(student, teacher)

The paper writes the weight on the ground-truth term (lambda * L_gt + (1 - lambda) * L_kd)
and uses 0.5, where both conventions agree; here `kd_lambda` is the weight of the KD term,
so `kd_lambda=0` is plain supervised training.

Two forms of the KD term (``form``):

- ``"cmkd"`` (default, CMKD's Eq.): the temperature softens the TEACHER only,
  ``KL(softmax(z_t / T) || softmax(z_s))``, no T^2 factor;
- ``"hinton"`` (Hinton et al. 2015): both sides at T, ``KL(softmax(z_t / T) || softmax(z_s / T)) * T^2``.

At T = 1 the two agree.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

KDForm = Literal["cmkd", "hinton"]
KD_FORMS = ("cmkd", "hinton")

#: CMKD's lambda = 0.5 (Gong et al. 2022, "CMKD", Sec. 2: equal weight on the two terms).
DEFAULT_KD_LAMBDA = 0.5
#: Temperature 1: our default, not the CMKD paper's per-dataset T (arXiv 2203.06760, not
#: re-read); at T = 1 the "cmkd" and "hinton" forms coincide. T 2 and 4 (either form) never
#: did better in docs/benchmarks.md, "Why the teacher's knowledge does or does not transfer".
DEFAULT_KD_TEMPERATURE = 1.0
#: CMKD's form (Gong et al. 2022, arXiv 2203.06760: temperature on the teacher only, no T^2).
DEFAULT_KD_FORM: KDForm = "cmkd"


def check_kd_settings(kd_lambda: float, temperature: float, form: str, who: str = "") -> None:
    """Raise ValueError naming the first distillation setting out of range (``who`` prefixes
    the message: the loss checks per call, DistillationModule once when it is built)."""
    if not 0.0 <= kd_lambda <= 1.0:  # false for NaN too
        raise ValueError(f"{who}kd_lambda must be in [0, 1], got {kd_lambda}")
    if not (0 < temperature < math.inf):  # false for NaN too
        raise ValueError(f"{who}kd_temperature must be a finite number > 0, got {temperature}")
    if form not in KD_FORMS:
        raise ValueError(f"{who}kd_form={form!r}: expected one of {list(KD_FORMS)}, not {form!r}")


def cmkd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor,
    multi_label: bool,
    kd_lambda: float = DEFAULT_KD_LAMBDA,
    temperature: float = DEFAULT_KD_TEMPERATURE,
    form: KDForm = DEFAULT_KD_FORM,
    labeled: Tensor | None = None,
) -> dict[str, Tensor]:
    """CMKD loss for (B, C) student/teacher logits and (B, C) float targets.

    ``labeled`` ((B,) bool, None: all) marks the clips whose target is a label: the task
    term averages over those only (0 if none), the KD term over every clip, so an
    unlabeled clip is taught by the teacher alone.

    single-label: task = cross-entropy with the (possibly soft, e.g. mixup) targets;
        kd = KL(softmax(teacher / T) || softmax(student / S)) averaged over the batch,
        S = 1 for "cmkd", S = T and times T^2 for "hinton".
    multi-label: task = BCE-with-logits on the targets (mean over clips and classes);
        kd = BCE-with-logits of student / S against sigmoid(teacher / T) (per-class
        Bernoulli targets instead of one softmax), S and the T^2 factor as above.

    Returns {"loss", "task", "kd"}; the teacher side is detached.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.shape != target.shape:
        raise ValueError(
            "cmkd_loss: student logits, teacher logits and target must have the same (B, C) "
            f"shape; got {tuple(student_logits.shape)}, {tuple(teacher_logits.shape)}, "
            f"{tuple(target.shape)}"
        )
    check_kd_settings(kd_lambda, temperature, form, who="cmkd_loss: ")
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)
    target = target.to(student_logits.dtype)
    student_t = temperature if form == "hinton" else 1.0
    scale = temperature**2 if form == "hinton" else 1.0
    task = masked_task_loss(student_logits, target, multi_label, labeled)
    if multi_label:
        soft = torch.sigmoid(teacher_logits / temperature)
        kd = F.binary_cross_entropy_with_logits(student_logits / student_t, soft)
    else:
        log_p_student = F.log_softmax(student_logits / student_t, dim=-1)
        log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
        kd = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    kd = kd * scale
    loss = (1.0 - kd_lambda) * task + kd_lambda * kd
    return {"loss": loss, "task": task, "kd": kd}


def masked_task_loss(
    logits: Tensor, target: Tensor, multi_label: bool, labeled: Tensor | None = None
) -> Tensor:
    """BCE-with-logits (multi-label) or cross-entropy (single-label, soft targets allowed)
    over the clips ``labeled`` marks ((B,) bool; None: all); 0, still on the graph, if none."""
    if labeled is not None and not bool(labeled.all()):
        if not bool(labeled.any()):
            return logits.sum() * 0.0
        logits, target = logits[labeled], target[labeled]
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, target)
    return F.cross_entropy(logits, target)
