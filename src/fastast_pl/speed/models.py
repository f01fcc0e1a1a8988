"""What the benchmarks measure: model sizes, one builder per model, the merge schedules.

Each model is built in exactly one function here, so a change of a constructor
(``ASTModel``, ``CNNTeacher``, the HF baseline) is adapted in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from fastast_pl.models.arch import ASTArch
from fastast_pl.models.ast import ASTModel
from fastast_pl.tome import MergeSpec, apply_tome
from fastast_pl.tome.attention import AttentionBackend
from fastast_pl.tome.flops import PlannedSchedule
from fastast_pl.tome.flops import plan_schedules as tome_plan


@dataclass(frozen=True)
class ModelSize:
    """Transformer and input sizes shared by our model and the HF baseline."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    input_tdim: int
    input_fdim: int
    num_classes: int
    patch_size: int = 16
    fstride: int = 10
    tstride: int = 10

    @classmethod
    def of(cls, model: ASTModel) -> ModelSize:
        """The sizes of an existing model (``benchmark --checkpoint``)."""
        a = model.arch
        return cls(model.embed_dim, model.depth, model.num_heads, a.mlp_ratio, model.input_tdim,
                   model.input_fdim, model.num_classes, a.patch_size, a.fstride, a.tstride)  # fmt: skip


# AST-Base on a 1024x128 fbank: 12 x 101 patches + cls + dist = 1214 tokens.
BASE = ModelSize(768, 12, 12, 4.0, 1024, 128, 527)
# A small model for smoke tests: 12 x 12 patches + 2 = 146 tokens.
TINY = ModelSize(64, 4, 4, 4.0, 128, 128, 10)


def build_student(size: ModelSize) -> ASTModel:
    """Our AST at ``size`` with random weights, no merging, proportional attention on."""
    return ASTModel(
        num_classes=size.num_classes,
        input_tdim=size.input_tdim,
        input_fdim=size.input_fdim,
        arch=ASTArch(
            embed_dim=size.embed_dim,
            depth=size.depth,
            num_heads=size.num_heads,
            mlp_ratio=size.mlp_ratio,
            patch_size=size.patch_size,
            fstride=size.fstride,
            tstride=size.tstride,
        ),
        merge=0,
        prop_attn=True,
    )


def build_hf(size: ModelSize) -> nn.Module:
    """HF transformers' ``ASTForAudioClassification`` of the same size (random init, SDPA)."""
    from transformers import ASTConfig, ASTForAudioClassification

    config = ASTConfig(
        hidden_size=size.embed_dim,
        num_hidden_layers=size.depth,
        num_attention_heads=size.num_heads,
        intermediate_size=int(size.embed_dim * size.mlp_ratio),
        max_length=size.input_tdim,
        num_mel_bins=size.input_fdim,
        num_labels=size.num_classes,
        patch_size=size.patch_size,
        frequency_stride=size.fstride,
        time_stride=size.tstride,
        attn_implementation="sdpa",
    )
    return ASTForAudioClassification(config)


def build_teacher(size: ModelSize, backbone: str) -> nn.Module:
    """The CNN teacher of distillation (timm ``backbone``, attention pooling), random weights,
    frozen in eval mode."""
    from fastast_pl.models.teacher import CNNTeacher

    teacher = CNNTeacher(size.num_classes, backbone=backbone, input_fdim=size.input_fdim)
    return teacher.eval().requires_grad_(False)


def set_schedule(model: ASTModel, spec: MergeSpec, attn_backend: AttentionBackend = "auto") -> None:
    """Switch the model to ``spec``, proportional attention on the given kernel."""
    model.set_merge(spec)
    if any(model.merge_schedule().r):
        apply_tome(model, r=spec, prop_attn=model.prop_attn, attn_backend=attn_backend)


def plan_schedules(
    model: ASTModel, targets: Sequence[float], shape: str = "constant"
) -> list[PlannedSchedule]:
    """r=0 plus, per FLOP target, the ``shape`` schedule closest to it (``tome.flops``'s
    planner; forward FLOPs: the training ratio is the same, see tome.flops)."""
    return tome_plan(targets, model.num_tokens, model.depth, model.num_prefix_tokens,
                     model.embed_dim, model.arch.mlp_ratio, shape)  # fmt: skip


def load_checkpoint(source: str, targets: Sequence[float], shape: str = "constant"):
    """``(model, plans)`` of a user's checkpoint (path or HF hub id): the model as stored
    (eval mode) and r=0, the checkpoint's own evaluation and training schedules where it
    records them (``read_inference_info``), then one schedule per FLOP target."""
    from fastast_pl.models.checkpoints import read_inference_info
    from fastast_pl.tome.flops import flops_ratio

    model = ASTModel.from_pretrained(source).eval()
    info = read_inference_info(source)
    plans = plan_schedules(model, targets, shape)
    seen = {plan.r for plan in plans}
    for name, spec in (("ckpt eval", info.merge), ("ckpt train", info.train_merge)):
        if spec is None:
            continue
        resolved = model.merge_schedule(spec)
        if tuple(resolved.r) in seen:
            continue
        seen.add(tuple(resolved.r))
        ratio = flops_ratio(resolved, model.embed_dim, model.arch.mlp_ratio)
        plans.insert(1, PlannedSchedule(name, ratio, list(resolved.r), tuple(resolved.r),
                                        tuple(resolved.tokens), ratio))  # fmt: skip
    return model, plans
