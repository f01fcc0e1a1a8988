"""Balanced (label-frequency weighted) sampling that also works under DDP.

For imbalanced multi-label data the AST recipe draws clips with weight
``sum over the clip's labels of 1 / label_count``, so clips with rare labels are seen more
often. Under DDP every rank must draw a different share of the same epoch: all ranks draw
the same global sequence from a generator seeded by ``seed + epoch`` and rank ``r`` keeps
positions ``r, r + R, r + 2R, ...`` of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler


def balanced_weights(labels: Sequence[Sequence[int]], num_classes: int) -> torch.Tensor:
    """Per-clip weights ``sum_{l in labels(clip)} 1 / count(l)``, shape ``(num_clips,)``.

    A clip without labels gets the smallest positive weight seen, so it can still be drawn.
    """
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for clip_labels in labels:
        for label in clip_labels:
            counts[label] += 1
    inverse = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    weights = torch.tensor(
        [float(sum(inverse[lab] for lab in clip)) for clip in labels], dtype=torch.float64
    )
    if len(weights) and (weights == 0).any():
        positive = weights[weights > 0]
        weights[weights == 0] = positive.min() if len(positive) else 1.0
    return weights


class DistributedWeightedSampler(DistributedSampler):
    """Weighted random sampling, split across DDP ranks, deterministic per epoch.

    A ``DistributedSampler`` subclass, so Lightning keeps it instead of injecting its own;
    Lightning calls ``set_epoch`` at every epoch start.

    Args:
        weights: Non-negative sampling weight per clip, ``(num_clips,)``.
        num_samples: Draws per epoch over all ranks (default: the number of clips).
        num_replicas: Number of ranks (default: the process group's world size, else 1).
        rank: This rank (default: the process group's rank, else 0).
        replacement: Draw with replacement (AST recipe). Without replacement every rank gets
            distinct clips within an epoch (the sequence repeats if more draws than clips).
        seed: Base seed; epoch ``e`` uses ``seed + e`` on every rank.
    """

    def __init__(
        self,
        weights: Sequence[float] | torch.Tensor,
        num_samples: int | None = None,
        num_replicas: int | None = None,
        rank: int | None = None,
        replacement: bool = True,
        seed: int = 0,
    ) -> None:
        # DistributedSampler.__init__ insists on a dataset and a process group; set its
        # attributes directly instead.
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas - 1}], got {rank}")
        self.weights = torch.as_tensor(weights, dtype=torch.float64)
        if self.weights.dim() != 1 or len(self.weights) == 0:
            raise ValueError(
                f"weights must be a non-empty 1-D sequence, got shape {tuple(self.weights.shape)}"
            )
        if (
            (self.weights < 0).any()
            or not torch.isfinite(self.weights).all()
            or self.weights.sum() <= 0
        ):
            raise ValueError("weights must be finite, non-negative and not all zero")
        total = len(self.weights) if num_samples is None else int(num_samples)
        if total <= 0:
            raise ValueError(f"num_samples must be > 0, got {num_samples}")
        self.dataset = None
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = False
        self.shuffle = True
        self.seed = seed
        self.replacement = replacement
        self.num_samples = math.ceil(total / num_replicas)  # per rank
        self.total_size = self.num_samples * num_replicas

    def global_order(self) -> torch.Tensor:
        """The epoch's full draw, shared by all ranks, ``(total_size,)``."""
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        if self.replacement:
            return torch.multinomial(
                self.weights, self.total_size, replacement=True, generator=generator
            )
        n = int((self.weights > 0).sum())  # clips with weight 0 are never drawn
        order = torch.multinomial(self.weights, n, replacement=False, generator=generator)
        repeats = math.ceil(self.total_size / n)
        return order.repeat(repeats)[: self.total_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.global_order()[self.rank : self.total_size : self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples
