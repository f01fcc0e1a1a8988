"""Training-step benchmark: forward + backward + optimiser step of the student per schedule.

Variants per merge schedule: "student" (student forward, cross-entropy, backward, AdamW
step) and, with ``distill``, "distill" (the frozen CNN teacher's forward under no_grad
first, then the student's step on the CMKD loss). The student is in train mode (dropout
and drop path are 0 in AST-Base, so no randomness in what is timed).

FLOPs per clip: ``tome.flops.training_flops`` of the tokens each block sees, i.e. 3x the
forward's matrix products (backward = 2x forward: each product Y = XW needs dX and dW);
the matching (no gradient) and the optimiser step (elementwise, the same for every
schedule) are left out. The distillation rows add the teacher's forward FLOPs as torch's
``FlopCounterMode`` counts them (convolutions and linear layers) on one clip. The FLOP
ratio of a schedule against r=0 is therefore that of the forward for the student, and a
little lower for the distillation step (the teacher's share does not shrink).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from fastast_pl.speed.engine import Variant
from fastast_pl.speed.measure import (
    RunSettings,
    finish_meta,
    flop_ratio_checks,
    measure_batches,
    start_meta,
)
from fastast_pl.speed.models import (
    ModelSize,
    build_student,
    build_teacher,
    plan_schedules,
    set_schedule,
)
from fastast_pl.tome import MergeSpec
from fastast_pl.tome.flops import training_flops

LEARNING_RATE = 1e-5  # small: the weights barely move over a benchmark's few steps


def _teacher_name(tiny: bool) -> str:
    """CMKD's EfficientNet-B2 teacher (Gong et al., 2022); a small MobileNetV3 (as in the
    demo) for smoke tests."""
    return "mobilenetv3_small_050" if tiny else "efficientnet_b2"


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """The CMKD loss of our distillation module (single-label, its default lambda and T)."""
    from fastast_pl.losses import cmkd_loss

    return cmkd_loss(student_logits, teacher_logits, target, multi_label=False)["loss"]


def counted_gflops(module: torch.nn.Module, x: torch.Tensor) -> float:
    """GFLOPs per clip of one forward of ``module`` as torch's FlopCounterMode counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x[:1])
    return counter.get_total_flops() / 1e9


def make_variants(
    size: ModelSize, settings: RunSettings, distill: bool, tiny: bool = False
) -> list[Variant]:
    """Student (and teacher), one shared AdamW, and one variant per schedule and step kind."""
    device, dtype, attn_backend = settings.device, settings.dtype, settings.attn_backend
    student = build_student(size).to(device).train()
    optimiser = torch.optim.AdamW(student.parameters(), lr=LEARNING_RATE)
    teacher = build_teacher(size, _teacher_name(tiny)).to(device) if distill else None
    x0 = torch.zeros(1, size.input_tdim, size.input_fdim, device=device)  # (1, T, F)
    teacher_gflops = counted_gflops(teacher, x0) if teacher is not None else 0.0

    def labels(x: torch.Tensor) -> torch.Tensor:
        g = torch.Generator(device=x.device).manual_seed(x.shape[0])
        return torch.randint(size.num_classes, (x.shape[0],), device=x.device, generator=g)

    def step(loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        def run(x: torch.Tensor) -> None:
            loss = loss_of(x, labels(x))
            optimiser.zero_grad(set_to_none=True)
            # Backward outside autocast (autocast covers the forward only, as Lightning does).
            with torch.autocast(device.type, enabled=False):
                loss.backward()
                optimiser.step()

        return run

    def student_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(student(x).float(), y)

    def distill_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = teacher.logits(x)
        target = F.one_hot(y, size.num_classes).float()  # (B, C)
        return distillation_loss(student(x).float(), teacher_logits.float(), target)

    def set_merge(spec: MergeSpec) -> Callable[[], None]:
        return lambda: set_schedule(student, spec, attn_backend)

    kinds = [("student", student_loss, 0.0)]
    if distill:
        kinds.append(("distill", distill_loss, teacher_gflops))
    variants = []
    for name, loss_of, extra in kinds:
        for plan in plan_schedules(student, settings.targets, settings.shape):
            sched = student.merge_schedule(plan.spec)
            gflops = training_flops(sched.tokens, size.embed_dim, size.mlp_ratio) / 1e9 + extra
            variants.append(Variant(name, plan.name, plan.target, sched.r, sched.tokens, gflops,
                                    step(loss_of), set_merge(plan.spec), dtype=dtype))  # fmt: skip
    return variants


def run_training_benchmark(
    size: ModelSize,
    batch_sizes: Sequence[int],
    settings: RunSettings,
    distill: bool = True,
    with_memory: bool = False,
    tiny: bool = False,
) -> dict:
    """Time every training-step variant at every batch size; ``{"meta", "rows", "checks"}``."""
    meta = start_meta(settings)
    variants = make_variants(size, settings, distill, tiny)
    rows = measure_batches(variants, (size.input_tdim, size.input_fdim), batch_sizes, settings,
                           "training steps", with_memory)  # fmt: skip
    finish_meta(meta, "train", size, optimiser=f"AdamW(lr={LEARNING_RATE})",
                teacher=_teacher_name(tiny) if distill else None,
                flops_method="tome.flops.training_flops: 3x the forward matmuls of the blocks "
                "(backward = 2x forward), matching and optimiser step left out; distill rows "
                "add the teacher's forward as torch FlopCounterMode counts it")  # fmt: skip
    return {"meta": meta, "rows": rows, "checks": flop_ratio_checks(rows, "training-step")}
