"""Proportional attention: SDPA and FlexAttention kernels against the formula written out.

FlexAttention runs here uncompiled (eager, forward only: torch has no flex backward on the
CPU, and compiling it on the CPU takes ~20 s per shape, too slow for the suite); on CUDA
the same ``score_mod`` is compiled into one fused kernel.
"""

from __future__ import annotations

import copy

import pytest
import torch
from timm.models.deit import VisionTransformerDistilled

from fastast_pl.tome import apply_tome
from fastast_pl.tome.attention import proportional_attention, resolve_backend


def _formula(q, k, v, size):
    """softmax(q k^T / sqrt(d) + log s_k) v, in float64 (ToMe eq. 1)."""
    q, k, v = q.double(), k.double(), v.double()
    logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # (B, H, N, N)
    logits = logits + size.double().log().reshape(size.shape[0], 1, 1, -1)
    return (logits.softmax(dim=-1) @ v).float()


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
def test_kernels_match_the_formula(backend):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 37, 16, generator=g) for _ in range(3))  # (B, H, N, Dh)
    size = torch.randint(1, 9, (2, 37, 1), generator=g).float()  # (B, N, 1)
    out = proportional_attention(q, k, v, size, backend=backend)
    torch.testing.assert_close(out, _formula(q, k, v, size), rtol=1e-5, atol=1e-5)
    # Sizes matter: with all sizes 1 the result is different.
    plain = proportional_attention(q, k, v, torch.ones_like(size), backend=backend)
    assert not torch.allclose(out, plain, atol=1e-3)


def test_flex_and_sdpa_give_the_same_merged_model_outputs():
    torch.manual_seed(0)
    model = VisionTransformerDistilled(
        img_size=32, patch_size=4, embed_dim=32, depth=3, num_heads=4, num_classes=5
    ).eval()
    flex = copy.deepcopy(model)
    apply_tome(model, r=8, attn_backend="sdpa")
    apply_tome(flex, r=8, attn_backend="flex")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        torch.testing.assert_close(flex(x), model(x), rtol=1e-5, atol=1e-5)


def test_backend_choice():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_backend("auto", cuda, 0.0) == "flex"
    assert resolve_backend("auto", cuda, 0.1) == "sdpa"  # flex has no attention dropout
    assert resolve_backend("auto", cpu, 0.0) == "sdpa"
    assert resolve_backend("flex", cpu, 0.0) == "flex"
    with pytest.raises(ValueError, match="dropout_p=0.1"):
        resolve_backend("flex", cuda, 0.1)
    with pytest.raises(ValueError, match="'fused'"):
        resolve_backend("fused", cpu, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attn_backend='fused'"):
        apply_tome(
            VisionTransformerDistilled(
                img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=4
            ),
            r=2,
            attn_backend="fused",
        )
