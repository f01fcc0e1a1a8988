"""Put Token Merging into a timm ViT in place: ``apply_tome`` / ``remove_tome`` / ``tome_state``.

Works on any module with ``.blocks`` (timm ``Block``s with timm ``Attention``) and an int
``.num_prefix_tokens``: timm ``VisionTransformer`` (1), ``VisionTransformerDistilled`` (2)
and our ``ASTModel`` (2). Only the patched instances change: each block's ``__class__`` is
swapped to a ToMe subclass of its own class, and one forward pre-hook on the model resets
the per-forward state. Nothing global is touched.

In a patched block: attention (with proportional attention, ``log(size)`` added to the key
logits by ``tome.attention``: SDPA's float mask, or a compiled FlexAttention kernel on
CUDA) -> merge r tokens by
bipartite soft matching on the keys -> MLP. A block whose r is 0 while no token has been
merged yet runs the original timm forward, so ``r=0`` is bit-identical to the unpatched model.
Gradient checkpointing of the blocks is refused while merging (recomputation would see the
sizes of the finished forward).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from timm.layers import Attention
from timm.models.vision_transformer import Block
from torch import nn

from fastast_pl.tome.attention import BACKENDS, AttentionBackend, proportional_attention
from fastast_pl.tome.merge import MergeFn, bipartite_soft_matching, merge_source, merge_wavg
from fastast_pl.tome.schedule import (
    MergeSpec,
    ResolvedSchedule,
    resolve_schedule,
    validate_merge_spec,
)


@dataclass
class ToMeState:
    """Settings and per-forward state shared by a patched model and its blocks.

    ``spec`` is what the user asked for; ``schedule`` is it resolved for the token count of
    the last forward (cached per token count). After a forward, ``tokens_seen`` holds the
    tokens entering each block plus the final count, ``size`` (B, N, 1) the patches per
    token and ``source`` (B, N, N0) the input tokens each token contains (with trace_source).
    ``attn_backend`` is the kernel of proportional attention (``tome.attention``).
    """

    spec: MergeSpec
    prop_attn: bool
    trace_source: bool
    num_prefix_tokens: int
    depth: int
    attn_backend: AttentionBackend = "auto"
    schedule: ResolvedSchedule | None = None
    size: torch.Tensor | None = None
    source: torch.Tensor | None = None
    tokens_seen: list[int] = field(default_factory=list)
    _cache: dict[int, ResolvedSchedule] = field(default_factory=dict, repr=False)

    @property
    def r(self) -> list[int] | None:
        """r per layer used by the last forward (None before the first forward)."""
        return None if self.schedule is None else self.schedule.r

    def resolve(self, num_tokens: int) -> ResolvedSchedule:
        """The schedule for inputs of ``num_tokens`` tokens (resolved once, then cached)."""
        if num_tokens not in self._cache:
            self._cache[num_tokens] = resolve_schedule(
                self.spec, num_tokens, self.depth, self.num_prefix_tokens
            )
        return self._cache[num_tokens]

    def reset(self) -> None:
        """Forget the previous forward's sizes, sources and token counts."""
        self.size = None
        self.source = None
        self.tokens_seen = []


class _ResetHook:
    """Model forward pre-hook (a class, not a closure, so patched models still pickle)."""

    def __init__(self, state: ToMeState) -> None:
        self.state = state

    def __call__(self, module: nn.Module, args: tuple) -> None:
        if getattr(module, "grad_checkpointing", False) and self.state.spec != 0:
            # Recomputing a block in backward would read the sizes left by the whole forward.
            raise RuntimeError(
                f"{type(module).__name__} has grad_checkpointing on, which ToMe does not "
                "support (merged sizes are per-forward state); turn one of them off"
            )
        self.state.reset()


def _attention_with_keys(
    attn: Attention, x: torch.Tensor, size: torch.Tensor | None, backend: AttentionBackend = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """timm ``Attention.forward`` plus ``log(size)`` on the key logits; also returns the keys
    averaged over heads (B, N, head_dim) as the merge metric.

    Mirrors timm 1.0 ``Attention`` (gate, q/k norm, attention dropout, scale norm, proj,
    proj dropout); the r=0 parity tests guard it against timm changes.
    """
    bsz, n_tok, _ = x.shape
    gate = getattr(attn, "gate", None)
    gate = gate(x).sigmoid() if gate is not None else None
    attn_dim = getattr(attn, "attn_dim", attn.num_heads * attn.head_dim)
    qkv = attn.qkv(x).reshape(bsz, n_tok, 3, attn.num_heads, attn.head_dim)  # (B, N, 3, H, Dh)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, N, Dh)
    q, k = attn.q_norm(q), attn.k_norm(k)
    dropout_p = attn.attn_drop.p if attn.training else 0.0
    out = proportional_attention(q, k, v, size, dropout_p, backend)  # (B, H, N, Dh)
    out = out.transpose(1, 2).reshape(bsz, n_tok, attn_dim)  # (B, N, H * Dh)
    out = getattr(attn, "norm", nn.Identity())(out)
    if gate is not None:
        out = out * gate
    out = attn.proj_drop(attn.proj(out))
    return out, k.mean(dim=1)  # (B, N, C), (B, N, Dh)


class _ToMeBlockMixin:
    """Forward of a ToMe block; mixed in front of the block's own class."""

    _tome_state: ToMeState
    _tome_index: int
    _tome_orig_class: type

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        state = self._tome_state
        index = self._tome_index
        if index == 0:
            state.schedule = state.resolve(int(x.shape[1]))  # int: a traced size is a tensor
            if state.trace_source and state.source is None:  # else set by merge_before_blocks
                bsz, n_tok = x.shape[:2]
                eye = torch.eye(n_tok, device=x.device, dtype=x.dtype)
                state.source = eye.expand(bsz, n_tok, n_tok)  # (B, N0, N0)
        if state.schedule is None:
            raise RuntimeError(f"ToMe block {index} ran before block 0 of its model")
        state.tokens_seen.append(x.shape[1])
        r = state.schedule.r[index]
        if r == 0 and state.size is None:
            x = super().forward(x, attn_mask=attn_mask, is_causal=is_causal)  # type: ignore[misc]
        else:
            if attn_mask is not None or is_causal:
                raise ValueError(
                    "ToMe blocks do not support attn_mask / is_causal: merging changes the "
                    "token count, so a fixed mask no longer fits"
                )
            size = state.size if state.prop_attn else None
            out, metric = _attention_with_keys(self.attn, self.norm1(x), size, state.attn_backend)
            x = x + self.drop_path1(self.ls1(out))
            if r > 0:
                merge, _ = bipartite_soft_matching(metric, r, state.num_prefix_tokens)
                if state.trace_source:
                    state.source = merge_source(merge, x, state.source)
                x, state.size = merge_wavg(merge, x, state.size)
            x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        if index == state.depth - 1:
            state.tokens_seen.append(x.shape[1])
        return x


class ToMeBlock(_ToMeBlockMixin, Block):
    """ToMe version of timm's ``Block`` (module level, so patched models pickle)."""


_SUBCLASSES: dict[type, type] = {Block: ToMeBlock}


def _tome_class(cls: type) -> type:
    if cls not in _SUBCLASSES:
        _SUBCLASSES[cls] = type(f"ToMe{cls.__name__}", (_ToMeBlockMixin, cls), {})
    return _SUBCLASSES[cls]


def _blocks_of(model: nn.Module) -> list[nn.Module]:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, Iterable):
        raise TypeError(
            f"apply_tome needs a model with an iterable `.blocks` of timm Blocks; "
            f"{type(model).__name__} has blocks={blocks!r}"
        )
    blocks = list(blocks)
    if not blocks:
        raise ValueError(f"apply_tome: {type(model).__name__}.blocks is empty")
    for i, blk in enumerate(blocks):
        if not isinstance(blk, Block) or not isinstance(blk.attn, Attention):
            raise TypeError(
                f"apply_tome: {type(model).__name__}.blocks[{i}] is a {type(blk).__name__} "
                f"with attn {type(getattr(blk, 'attn', None)).__name__}; expected a timm "
                "Block with timm Attention"
            )
    return blocks


def _num_prefix_tokens(model: nn.Module) -> int:
    p = getattr(model, "num_prefix_tokens", None)
    if not isinstance(p, int) or isinstance(p, bool) or p < 0:
        raise TypeError(
            f"apply_tome needs an int `.num_prefix_tokens` >= 0 on {type(model).__name__}, "
            f"found {p!r}"
        )
    return p


def _static_num_tokens(model: nn.Module, num_prefix_tokens: int) -> int | None:
    """Token count of a timm-style model with a fixed input size, else None."""
    if getattr(model, "dynamic_img_size", False):
        return None
    num_patches = getattr(getattr(model, "patch_embed", None), "num_patches", None)
    if isinstance(num_patches, int):
        return num_patches + num_prefix_tokens
    return None


def apply_tome(
    model: nn.Module,
    r: MergeSpec = 0,
    prop_attn: bool = True,
    trace_source: bool = False,
    attn_backend: AttentionBackend = "auto",
) -> nn.Module:
    """Patch ``model`` in place to merge tokens per the spec ``r``; returns the model.

    ``attn_backend`` chooses the proportional-attention kernel: "auto" (compiled
    FlexAttention on CUDA, SDPA elsewhere), "sdpa" or "flex" (see ``tome.attention``).

    Calling it again on a patched model only updates the settings. The spec is validated now
    (and fully resolved when the model has a fixed ``patch_embed.num_patches``); otherwise it
    is resolved from the token count on the first forward.
    """
    blocks = _blocks_of(model)
    prefix = _num_prefix_tokens(model)
    validate_merge_spec(r, len(blocks))
    if attn_backend not in BACKENDS:
        raise ValueError(f"apply_tome: attn_backend={attn_backend!r}; expected one of {BACKENDS}")
    num_tokens = _static_num_tokens(model, prefix)
    resolved = None
    if num_tokens is not None:
        resolved = resolve_schedule(r, num_tokens, len(blocks), prefix)  # fail at config time

    state = getattr(model, "_tome_state", None)
    if state is None:
        state = ToMeState(r, bool(prop_attn), bool(trace_source), prefix, len(blocks), attn_backend)
        model._tome_state = state
        model._tome_hook = model.register_forward_pre_hook(_ResetHook(state))
    else:
        state.spec, state.prop_attn, state.trace_source = r, bool(prop_attn), bool(trace_source)
        state.num_prefix_tokens, state.depth = prefix, len(blocks)
        state.attn_backend = attn_backend
        state._cache.clear()
        state.schedule = None
        state.reset()
    if resolved is not None:
        # Cached now, so every forward takes the same path through ``resolve`` (a compiled
        # model would otherwise recompile on its second call, when the cache fills).
        state._cache[num_tokens] = resolved
    for i, blk in enumerate(blocks):
        if not isinstance(blk, _ToMeBlockMixin):
            blk._tome_orig_class = type(blk)
            blk.__class__ = _tome_class(type(blk))
        blk._tome_state = state
        blk._tome_index = i
    return model


def merge_before_blocks(model: nn.Module, x: torch.Tensor, merge_fn: MergeFn) -> torch.Tensor:
    """Merge the tokens ``x`` (B, N, D) entering the first block by ``merge_fn`` (e.g.
    ``merge.group_merge``), as a size-weighted average whose sizes the blocks then carry:
    proportional attention counts a merged token as the patches it stands for, and later
    merges add to its size. Returns (B, N', D).

    Call it inside the model's forward (after the pre-hook has reset the per-forward
    state), on a model patched with proportional attention: without it a merged token
    would weigh as one patch, so that is refused rather than run differently.
    """
    state = getattr(model, "_tome_state", None)
    if not isinstance(state, ToMeState):
        raise ValueError(
            f"merge_before_blocks: {type(model).__name__} has no Token Merging blocks; call "
            "apply_tome(model, r=..., prop_attn=True) first (r=0 merges nothing more)"
        )
    if not state.prop_attn:
        raise ValueError(
            f"merge_before_blocks: {type(model).__name__} runs ToMe with prop_attn=False, so a "
            "merged token would count as one patch in attention; it needs prop_attn=True"
        )
    if state.size is not None or state.tokens_seen:
        raise RuntimeError("merge_before_blocks: call it once per forward, before the blocks")
    if state.trace_source:
        state.source = merge_source(merge_fn, x)  # (B, N', N)
    merged, state.size = merge_wavg(merge_fn, x)  # (B, N', D), (B, N', 1)
    return merged


def remove_tome(model: nn.Module) -> nn.Module:
    """Undo ``apply_tome``: original block classes, no hook, no state. No-op if unpatched."""
    for blk in getattr(model, "blocks", []):
        if isinstance(blk, _ToMeBlockMixin):
            blk.__class__ = blk._tome_orig_class
            for name in ("_tome_orig_class", "_tome_state", "_tome_index"):
                blk.__dict__.pop(name, None)
    hook = model.__dict__.pop("_tome_hook", None)
    if hook is not None:
        hook.remove()
    model.__dict__.pop("_tome_state", None)
    return model


def tome_state(model: nn.Module) -> ToMeState:
    """The ToMe state of a patched model (raises ValueError if it is not patched)."""
    state = getattr(model, "_tome_state", None)
    if not isinstance(state, ToMeState):
        raise ValueError(f"{type(model).__name__} has no Token Merging; call apply_tome first")
    return state
