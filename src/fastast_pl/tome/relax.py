"""A differentiable stand-in for the discrete r per layer of Token Merging.

After the idea of DiffRate (Chen et al., "DiffRate: Differentiable Compression Rate for
Efficient Vision Transformers", ICCV 2023): each layer l holds a learnable distribution
``p_l`` over the candidate token counts ``r in {0, ..., R}`` (R = half the mergeable input
tokens). The network always runs one *discrete* schedule, the mode of every ``p_l`` (capped
as ``resolve_schedule`` caps), and the gradient reaches ``p_l`` through a straight-through
merge mask: the A token ranked j-th by ToMe's bipartite matching merges with weight
``m_j = P(r_l > j)`` in the backward pass and with ``1[j < r_l]`` in the forward pass.

To give every ``m_j`` a gradient in both directions, merged-away tokens are not dropped but
moved behind the live tokens as "ghosts" whose size is ``(1 - m_j) * size`` (0 in the
forward pass): attention weighs every key by its size *multiplicatively* (ToMe's
proportional attention, ``softmax(QK^T + log s)``, written as ``s * exp(QK^T)`` so that a
size of 0 has a finite gradient), and each merge destination receives the mass
``m_j * size``. With the forward values the live tokens, their order and their values are
those of ``apply_tome`` with the mode schedule (a test checks the logits), at the cost of
the unmerged token count per layer.

Why our own code: DiffRate's release prunes and merges by class-token attention inside its
own ViT; nothing in timm or ToMe relaxes ToMe's bipartite r, so this follows the paper's
idea on ``tome.merge``'s matching, for any timm ``Block`` stack.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fastast_pl.tome.flops import attention_flops, mlp_flops
from fastast_pl.tome.merge import bipartite_soft_matching, max_merge


class RateRelaxation(nn.Module):
    """Learnable logits ``(depth, R + 1)`` over r per layer, softmax at a temperature.

    ``hard=True`` makes ``probs()`` the one-hot of the mode in the forward pass (with the
    softmax's gradient: straight-through), so the expected token counts and FLOPs are
    exactly those of the schedule the search returns.
    """

    def __init__(self, depth: int, num_tokens: int, num_prefix_tokens: int, init_r: int) -> None:
        super().__init__()
        self.depth, self.num_tokens, self.num_prefix_tokens = depth, num_tokens, num_prefix_tokens
        self.max_r = max_merge(num_tokens, num_prefix_tokens)
        if not 0 <= init_r <= self.max_r:
            raise ValueError(f"init_r={init_r}: expected 0..{self.max_r} for {num_tokens} tokens")
        candidates = torch.arange(self.max_r + 1, dtype=torch.float32)  # (K,)
        self.register_buffer("candidates", candidates, persistent=False)
        # A bell around the starting r, wide enough that the neighbours get a gradient.
        width = max(1.0, self.max_r / 8)
        bell = -0.5 * ((candidates - init_r) / width) ** 2  # (K,)
        self.logits = nn.Parameter(bell.repeat(depth, 1))  # (depth, K)
        self.temperature = 1.0
        self.hard = False

    def probs(self) -> torch.Tensor:
        """``(depth, K)`` probabilities (one-hot forward values when ``hard``)."""
        soft = torch.softmax(self.logits / self.temperature, dim=-1)
        return self.straight_through(soft) if self.hard else soft

    @staticmethod
    def straight_through(probs: torch.Tensor) -> torch.Tensor:
        """The one-hot of each row's mode in the forward pass, ``probs``' gradient backward."""
        one_hot = nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
        return one_hot + probs - probs.detach()

    def mode(self) -> list[int]:
        """The most likely r of every layer, before capping."""
        return [int(k) for k in self.logits.detach().argmax(-1)]

    def schedule(self) -> list[int]:
        """The mode, capped as ``resolve_schedule`` caps: the r per layer the network runs."""
        n, out = self.num_tokens, []
        for r in self.mode():
            r = min(r, max_merge(n, self.num_prefix_tokens))
            out.append(r)
            n -= r
        return out

    def merge_mask(self, probs: torch.Tensor, layer: int, cap: int, r: int) -> torch.Tensor:
        """``(cap,)`` straight-through merge weights of the A tokens ranked 0..cap-1.

        Backward: ``P(r_l > j)``; forward: ``1[j < r]`` with ``r`` the layer's capped mode.
        """
        tail = probs[layer].flip(0).cumsum(0).flip(0)  # (K,): tail[k] = P(r_l >= k)
        soft = tail[1 : cap + 1]  # (cap,): P(r_l > j) for j < cap
        hard = (torch.arange(cap, device=soft.device) < r).to(soft.dtype)
        return hard + soft - soft.detach()

    def expected_tokens(self, probs: torch.Tensor | None = None) -> torch.Tensor:
        """``(depth + 1,)`` expected tokens entering each layer (and leaving the last).

        r is capped at half the mergeable tokens expected at that layer, as in ToMe.
        """
        probs = self.probs() if probs is None else probs
        tokens = [torch.tensor(float(self.num_tokens), device=probs.device)]
        for layer in range(self.depth):
            n = tokens[-1]
            cap = max_merge(int(torch.round(n.detach())), self.num_prefix_tokens)
            r = (probs[layer] * self.candidates.clamp(max=cap)).sum()
            tokens.append(n - r)
        return torch.stack(tokens)

    def expected_flops(
        self, dim: int, mlp_ratio: float = 4.0, probs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """FLOPs of the blocks at the expected token counts (``tome.flops.vit_flops``'s count)."""
        n = self.expected_tokens(probs).double()
        return (attention_flops(n[:-1], dim) + mlp_flops(n[1:], dim, mlp_ratio)).sum()


@dataclass
class RelaxState:
    """Per-forward state of a relaxed model: live count, sizes and presences of all tokens."""

    relaxation: RateRelaxation
    prop_attn: bool
    num_prefix_tokens: int
    depth: int
    enabled: bool = True
    probs: torch.Tensor | None = None
    schedule: list[int] | None = None
    live: int = 0
    size: torch.Tensor | None = None  # (B, T, 1) float32, ghosts 0 in the forward pass
    presence: torch.Tensor | None = None  # (B, T, 1) 1 for live tokens, (1 - m) for ghosts


def _weighted_attention(
    attn: nn.Module, x: torch.Tensor, weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm ``Attention`` with each key's ``exp(logit)`` multiplied by ``weight`` (B, T).

    Same layers as ``tome.patch._attention_with_keys`` (gate, q/k norm, norm, proj); returns
    the output (B, T, C) and the keys averaged over heads (B, T, Dh), ToMe's merge metric.
    """
    bsz, n_tok, _ = x.shape
    gate = getattr(attn, "gate", None)
    gate = gate(x).sigmoid() if gate is not None else None
    attn_dim = getattr(attn, "attn_dim", attn.num_heads * attn.head_dim)
    qkv = attn.qkv(x).reshape(bsz, n_tok, 3, attn.num_heads, attn.head_dim)  # (B, T, 3, H, Dh)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, T, Dh)
    q, k = attn.q_norm(q), attn.k_norm(k)
    logits = (q * attn.scale) @ k.transpose(-2, -1)  # (B, H, T, T)
    logits = logits - logits.amax(dim=-1, keepdim=True).detach()
    scores = logits.exp() * weight.to(logits.dtype)[:, None, None, :]  # (B, H, T, T)
    out = (scores / scores.sum(dim=-1, keepdim=True)) @ v  # (B, H, T, Dh)
    out = out.transpose(1, 2).reshape(bsz, n_tok, attn_dim)  # (B, T, H * Dh)
    out = getattr(attn, "norm", nn.Identity())(out)
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out)), k.mean(dim=1)


def _prefix_first(a: torch.Tensor, b: torch.Tensor, prefix: int) -> torch.Tensor:
    """ToMe's order ``[prefix in place, A, B]`` from the kept A and all B tokens (merge.py)."""
    head = [
        a[:, i // 2 : i // 2 + 1] if i % 2 == 0 else b[:, i // 2 : i // 2 + 1]
        for i in range(prefix)
    ]
    return torch.cat([*head, a[:, (prefix + 1) // 2 :], b[:, prefix // 2 :]], dim=1)


def relaxed_merge(
    state: RelaxState, layer: int, x: torch.Tensor, metric: torch.Tensor
) -> torch.Tensor:
    """Merge the live tokens of x (B, T, C) with the layer's straight-through mask."""
    n, prefix = state.live, state.num_prefix_tokens
    cap = max_merge(n, prefix)
    r = state.schedule[layer]
    if cap == 0:
        return x
    _, info = bipartite_soft_matching(metric[:, :n], cap, prefix)
    src, dst = info.src_idx, info.dst_idx  # (B, cap, 1) A tokens by rank, their B partners
    m = state.relaxation.merge_mask(state.probs, layer, cap, r)[None, :, None]  # (1, cap, 1)
    live_x, ghost_x = x[:, :n], x[:, n:]
    size, presence = state.size, state.presence
    xa, xb = live_x[:, ::2], live_x[:, 1::2]  # (B, Na, C), (B, Nb, C)
    sa, sb = size[:, :n:2], size[:, 1:n:2]  # (B, Na, 1), (B, Nb, 1)
    bsz, n_a, dim = xa.shape
    moved = m * sa.gather(1, src)  # (B, cap, 1): mass leaving each ranked A token
    sum_b = (xb * sb).scatter_add(
        1, dst.expand(-1, -1, dim), moved * xa.gather(1, src.expand(-1, -1, dim))
    )
    size_b = sb.scatter_add(1, dst, moved)  # (B, Nb, 1)
    xb = (sum_b / size_b).to(x.dtype)  # (B, Nb, C) size-weighted mean, as merge_wavg
    keep = torch.ones_like(sa).scatter(1, src, (1 - m).expand(bsz, -1, -1))  # (B, Na, 1)
    sa, pa = sa * keep, presence[:, :n:2] * keep
    kept = torch.cat([src[:, r:], info.unm_idx], dim=1).sort(dim=1).values  # (B, Na - r, 1)
    gone = src[:, :r]  # (B, r, 1) the new ghosts

    # ToMe keeps the order when it merges nothing (r = 0): A and B back to their positions.
    positions = torch.arange(n, device=x.device)
    in_place = torch.where(positions % 2 == 0, positions // 2, n_a + positions // 2)  # (n,)

    def reorder(
        t: torch.Tensor, a: torch.Tensor, b: torch.Tensor, old: torch.Tensor
    ) -> torch.Tensor:
        """``[live tokens in ToMe's order, older ghosts, new ghosts]`` of one per-token tensor."""
        width = t.shape[-1]
        if r == 0:
            live = torch.cat([a, b], dim=1).index_select(1, in_place)  # (B, n, .)
        else:
            live = _prefix_first(
                a.gather(1, kept.expand(-1, -1, width)), b, prefix
            )  # (B, n - r, .)
        return torch.cat([live, old, a.gather(1, gone.expand(-1, -1, width))], dim=1)  # (B, T, .)

    state.size = reorder(size, sa, size_b, size[:, n:])
    state.presence = reorder(presence, pa, presence[:, 1:n:2], presence[:, n:])
    state.live = n - r
    return reorder(x, xa, xb, ghost_x)


class _RelaxedBlockMixin:
    """Block forward with the relaxed merge; mixed in front of the block's own class."""

    _relax_state: RelaxState
    _relax_index: int
    _relax_orig_class: type

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        state, index = self._relax_state, self._relax_index
        if not state.enabled:
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)  # type: ignore[misc]
        if attn_mask is not None or is_causal:
            raise ValueError("the relaxed merge does not support attn_mask / is_causal")
        if index == 0:
            state.probs = state.relaxation.probs()
            state.schedule = state.relaxation.schedule()
            state.live = int(x.shape[1])
            state.size = torch.ones_like(x[..., :1], dtype=torch.float32)  # (B, T, 1)
            state.presence = torch.ones_like(state.size)
        weight = (state.size if state.prop_attn else state.presence)[..., 0]  # (B, T)
        out, metric = _weighted_attention(self.attn, self.norm1(x), weight)
        x = x + self.drop_path1(self.ls1(out))
        x = relaxed_merge(state, index, x, metric)
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


_CLASSES: dict[type, type] = {}


def relax(model: nn.Module, relaxation: RateRelaxation, prop_attn: bool = True) -> RelaxState:
    """Swap every ``model.blocks`` entry to its relaxed subclass; undo with ``unrelax``.

    The model must not carry ``apply_tome`` (the relaxation replaces it while searching).
    The prefix tokens stay at positions ``0..p-1``, ghosts go last: a model that pools its
    prefix tokens (AST, DeiT, a class-token ViT) sees exactly the merged model's output.
    """
    if getattr(model, "_tome_state", None) is not None:
        raise ValueError(f"{type(model).__name__} has Token Merging applied; remove_tome first")
    blocks = list(model.blocks)
    if len(blocks) != relaxation.depth:
        raise ValueError(f"relaxation for depth {relaxation.depth}, model has {len(blocks)} blocks")
    state = RelaxState(relaxation, prop_attn, relaxation.num_prefix_tokens, len(blocks))
    for i, blk in enumerate(blocks):
        cls = type(blk)
        if cls not in _CLASSES:
            _CLASSES[cls] = type(f"Relaxed{cls.__name__}", (_RelaxedBlockMixin, cls), {})
        blk._relax_orig_class = cls
        blk.__class__ = _CLASSES[cls]
        blk._relax_state, blk._relax_index = state, i
    return state


def unrelax(model: nn.Module) -> nn.Module:
    """Undo ``relax``: the blocks' own classes, no state."""
    for blk in model.blocks:
        if isinstance(blk, _RelaxedBlockMixin):
            blk.__class__ = blk._relax_orig_class
            for name in ("_relax_orig_class", "_relax_state", "_relax_index"):
                blk.__dict__.pop(name, None)
    return model
