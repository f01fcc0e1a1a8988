"""Token Merging (ToMe, Bolya et al., ICLR 2023) for timm ViTs; knows nothing about audio."""

from fastast_pl.tome.flops import (
    attention_flops,
    flops_ratio,
    matching_flops,
    mlp_flops,
    plan_schedules,
    schedule_for_flops_reduction,
    training_flops,
    vit_flops,
    vit_macs,
)
from fastast_pl.tome.merge import bipartite_soft_matching, group_merge, merge_source, merge_wavg
from fastast_pl.tome.patch import apply_tome, merge_before_blocks, remove_tome, tome_state
from fastast_pl.tome.schedule import (
    InflectSchedule,
    MergeSchedule,
    MergeSpec,
    ResolvedSchedule,
    resolve_schedule,
    validate_merge_spec,
)

__all__ = [
    "InflectSchedule",
    "MergeSchedule",
    "MergeSpec",
    "ResolvedSchedule",
    "apply_tome",
    "attention_flops",
    "flops_ratio",
    "matching_flops",
    "mlp_flops",
    "plan_schedules",
    "schedule_for_flops_reduction",
    "training_flops",
    "vit_flops",
    "vit_macs",
    "bipartite_soft_matching",
    "group_merge",
    "merge_before_blocks",
    "merge_source",
    "merge_wavg",
    "remove_tome",
    "resolve_schedule",
    "tome_state",
    "validate_merge_spec",
]
