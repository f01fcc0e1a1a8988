"""Proportional attention (ToMe, Bolya et al., ICLR 2023, eq. 1): softmax(QK^T/sqrt(d) + log s).

``s`` is the number of input patches each key token stands for, so a merged token gets the
attention weight of the tokens it replaced. Two kernels compute it:

- ``"sdpa"``: ``scaled_dot_product_attention`` with ``log(s)`` as a float ``attn_mask``.
  Runs everywhere, but a float mask rules out the FlashAttention kernel on CUDA.
- ``"flex"``: ``torch.nn.attention.flex_attention`` with a ``score_mod`` that adds
  ``log(s)[b, kv]`` to each score, compiled with ``torch.compile`` into one fused kernel
  (the size bias never becomes a (B, 1, N, N) tensor). On CPU it runs uncompiled (an
  unfused reference that materialises the scores, forward only: torch has no flex backward
  on CPU); that is what the parity test uses, compiling on CPU takes ~20 s per shape.

``"auto"`` picks flex on CUDA without attention dropout, sdpa otherwise.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

AttentionBackend = Literal["auto", "sdpa", "flex"]
BACKENDS = ("auto", "sdpa", "flex")


@functools.cache
def _compiled_flex() -> Callable[..., torch.Tensor]:
    """flex_attention compiled once per process (torch.compile caches per shape)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)


def _flex(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_size: torch.Tensor, compiled: bool
) -> torch.Tensor:
    from torch.nn.attention.flex_attention import flex_attention

    def add_log_size(score, b, h, q_idx, kv_idx):  # noqa: ANN001, ARG001 (flex signature)
        return score + log_size[b, kv_idx]

    if torch.compiler.is_compiling():  # inside a compiled model: the outer compile fuses it
        return flex_attention(q, k, v, score_mod=add_log_size)
    if compiled:
        return _compiled_flex()(q, k, v, score_mod=add_log_size)
    with warnings.catch_warnings():
        # The uncompiled flex path warns that it is unfused: here that is the point.
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile")
        return flex_attention(q, k, v, score_mod=add_log_size)


def resolve_backend(backend: AttentionBackend, device: torch.device, dropout_p: float) -> str:
    """The kernel ``backend`` means for tensors on ``device`` ("sdpa" or "flex")."""
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r}: expected one of {BACKENDS}")
    if backend == "auto":
        return "flex" if device.type == "cuda" and dropout_p == 0.0 else "sdpa"
    if backend == "flex" and dropout_p > 0.0:
        raise ValueError(
            f"attention backend 'flex' has no attention dropout; found dropout_p={dropout_p}"
        )
    return backend


def proportional_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    size: torch.Tensor | None,
    dropout_p: float = 0.0,
    backend: AttentionBackend = "auto",
) -> torch.Tensor:
    """Attention of q, k, v (B, H, N, Dh) with ``log(size)`` (size: (B, N, 1)) on the key logits.

    ``size=None`` is plain attention through SDPA (no bias, so every SDPA kernel applies).
    Returns (B, H, N, Dh).
    """
    if size is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    bsz, _, n_tok, _ = q.shape
    log_size = size.log().to(q.dtype).reshape(bsz, n_tok)  # (B, N)
    kernel = resolve_backend(backend, q.device, dropout_p)
    if kernel == "flex":
        return _flex(q, k, v, log_size, compiled=q.device.type == "cuda")
    bias = log_size.reshape(bsz, 1, 1, n_tok)  # (B, 1, 1, N), broadcast over heads and queries
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
