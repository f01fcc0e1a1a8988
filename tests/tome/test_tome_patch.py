"""apply_tome / remove_tome on timm ViTs: r=0 parity, a reference forward, state, compile."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from fastast_pl.tome import MergeSchedule, apply_tome, remove_tome, resolve_schedule, tome_state

IMG = 32  # 8 x 8 patches of 4 px


def make_model(distilled: bool = False, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    cls = VisionTransformerDistilled if distilled else VisionTransformer
    args = dict(img_size=IMG, patch_size=4, embed_dim=32, depth=3, num_heads=4, num_classes=5)
    args.update(kwargs)
    return cls(**args)


def images(bsz: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(bsz, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("distilled", [False, True])
@pytest.mark.parametrize("train", [False, True])
def test_r0_is_bit_identical(distilled, train):
    model = make_model(distilled, init_values=1e-5, qk_norm=True)
    reference = copy.deepcopy(model)
    model.train(train)
    reference.train(train)
    x = images()
    apply_tome(model, r=0)
    assert isinstance(model.blocks[0], Block)
    out, ref = model(x), reference(x)
    if isinstance(out, tuple):  # distilled training returns (cls, dist) logits
        assert all(torch.equal(a, b) for a, b in zip(out, ref))
    else:
        assert torch.equal(out, ref)
    prefix = 2 if distilled else 1
    assert tome_state(model).tokens_seen == [64 + prefix] * 4


def test_apply_remove_round_trip_and_reapply():
    model = make_model(distilled=True).eval()
    pristine = copy.deepcopy(model)
    x = images()
    before = model(x)
    apply_tome(model, r=6)
    merged = model(x)
    assert not torch.allclose(merged, before)
    apply_tome(model, r=[10, 2])  # updates the settings, no double patching
    model(x)
    assert tome_state(model).tokens_seen == [66, 56, 54, 54]
    assert len(model._forward_pre_hooks) == 1
    assert sum(c.__name__.startswith("ToMe") for c in type(model.blocks[0]).__mro__) == 1
    remove_tome(model)
    assert type(model.blocks[0]) is Block and not model._forward_pre_hooks
    assert not hasattr(model, "_tome_state") and not hasattr(model.blocks[0], "_tome_state")
    assert torch.equal(model(x), pristine(x))
    with pytest.raises(ValueError, match="apply_tome first"):
        tome_state(model)


@pytest.mark.parametrize(
    "spec", [4, [8, 0, 3], MergeSchedule(ratio=0.2, shape="decreasing", r_overrides={2: 5})]
)
def test_tokens_seen_match_resolved_schedule(spec):
    model = apply_tome(make_model(distilled=True).eval(), r=spec)
    model(images(3))
    expected = resolve_schedule(spec, num_tokens=66, depth=3, num_prefix_tokens=2)
    state = tome_state(model)
    assert state.tokens_seen == expected.tokens
    assert state.r == expected.r
    assert state.size.shape == (3, expected.tokens[-1], 1)
    assert torch.all(state.size.sum(dim=1) == 66)


def test_prop_attn_changes_outputs_once_sizes_differ():
    x = images()
    with_prop = apply_tome(make_model().eval(), r=[12, 0, 0], prop_attn=True)
    without = apply_tome(make_model().eval(), r=[12, 0, 0], prop_attn=False)
    a, b = with_prop(x), without(x)
    assert tome_state(with_prop).tokens_seen == [65, 53, 53, 53]
    assert not torch.allclose(a, b)


def reference_forward(model, x, rs, prop_attn, naive_merge):
    """ToMe forward written from the paper with explicit softmax attention and loop merging."""
    prefix = model.num_prefix_tokens
    h = model.norm_pre(model._pos_embed(model.patch_embed(x)))  # (B, N, C)
    outs = []
    for b in range(h.shape[0]):
        t = h[b : b + 1]
        size = torch.ones(t.shape[1], dtype=torch.float64)
        for blk, r in zip(model.blocks, rs):
            attn = blk.attn
            y = blk.norm1(t)
            n = t.shape[1]
            qkv = F.linear(y, attn.qkv.weight, attn.qkv.bias).reshape(1, n, 3, attn.num_heads, -1)
            q, k, v = qkv[0, :, 0], qkv[0, :, 1], qkv[0, :, 2]  # (N, H, Dh) each
            q, k = attn.q_norm(q.transpose(0, 1)), attn.k_norm(k.transpose(0, 1))  # (H, N, Dh)
            logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # (H, N, N)
            if prop_attn:
                logits = logits + size.log().float()[None, None, :]
            o = logits.softmax(-1) @ v.transpose(0, 1)  # (H, N, Dh)
            o = attn.norm(o.transpose(0, 1).reshape(1, n, -1))  # (1, N, C)
            if attn.gate is not None:
                o = o * torch.sigmoid(attn.gate(y))
            o = attn.proj(o)
            gamma1 = blk.ls1.gamma if hasattr(blk.ls1, "gamma") else 1.0
            t = t + gamma1 * o
            if r:
                merged, size, _ = naive_merge(t[0], size, k.mean(0), r, prefix)
                t = merged.float()[None]
            gamma2 = blk.ls2.gamma if hasattr(blk.ls2, "gamma") else 1.0
            t = t + gamma2 * blk.mlp(blk.norm2(t))
        outs.append(t)
    return model.forward_head(model.norm(torch.cat(outs)))


@pytest.mark.parametrize("prop_attn", [True, False])
def test_matches_reference_forward_with_layerscale_gate_qknorm(prop_attn, naive_merge):
    model = make_model(distilled=True, init_values=1e-5, qk_norm=True).eval()
    with torch.no_grad():
        for blk in model.blocks:  # LayerScale that matters, and timm's optional gate
            blk.ls1.gamma.normal_(0.0, 0.5)
            blk.ls2.gamma.normal_(0.0, 0.5)
        model.blocks[1].attn.gate = nn.Linear(32, 32)
    pristine = copy.deepcopy(model)
    x = images()
    rs = [10, 7, 6]
    apply_tome(model, r=rs, prop_attn=prop_attn)
    with torch.no_grad():
        ref = reference_forward(pristine, x, rs, prop_attn, naive_merge)
        out = model(x)
    assert tome_state(model).tokens_seen == [66, 56, 49, 43]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    # And r=0 with LayerScale still equals the untouched model exactly.
    apply_tome(model, r=0)
    assert torch.equal(model(x), pristine(x))


def test_trace_source_rows_sum_to_size():
    model = apply_tome(make_model(distilled=True).eval(), r=[9, 9, 9], trace_source=True)
    model(images(2))
    state = tome_state(model)
    assert state.source.shape == (2, 66 - 27, 66)
    torch.testing.assert_close(state.source.sum(-1, keepdim=True), state.size)
    assert torch.equal(state.source[:, 0, 0], torch.ones(2))  # class token is itself
    assert torch.equal(state.source[:, 1, 1], torch.ones(2))  # distillation token is itself


def test_bf16_batched_cpu():
    model = apply_tome(make_model(distilled=True).eval().to(torch.bfloat16), r=5)
    out = model(images(4).bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == (4, 5) and torch.isfinite(out).all()
    assert tome_state(model).tokens_seen == [66, 61, 56, 51]


def test_errors():
    with pytest.raises(TypeError, match="blocks"):
        apply_tome(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="r=40 at layer 0 is impossible"):
        apply_tome(make_model(), r=40)  # 64 patches: at most 32 per layer
    with pytest.raises(ValueError, match="4 entries .* depth 3"):
        apply_tome(make_model(), r=[1, 1, 1, 1])
    model = apply_tome(make_model(), r=2)
    with pytest.raises(ValueError, match="attn_mask"):
        model.forward_features(images(), attn_mask=torch.zeros(65, 65))


def test_patched_model_pickles_and_deepcopies():
    model = apply_tome(make_model().eval(), r=4)
    x = images()
    expected = model(x)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(loaded(x), expected)
    clone = copy.deepcopy(model)
    assert torch.equal(clone(x), expected)
    assert tome_state(clone) is not tome_state(model)


@pytest.mark.slow
def test_torch_compile_agrees_with_eager():
    model = apply_tome(make_model(distilled=True).eval(), r=[6, 4, 2], trace_source=True)
    x = images()
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, backend="eager", fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager)
    assert tome_state(model).tokens_seen == [66, 60, 56, 54]
    assert tome_state(model).source.shape == (2, 54, 66)


@pytest.mark.slow
def test_compiled_model_compiles_once():
    """The schedule is resolved at apply time, so call 2 does not recompile (call 1 filled
    no cache that the graph depended on)."""
    from torch._dynamo.testing import CompileCounter

    model = apply_tome(make_model(distilled=True).eval(), r=[6, 4, 2])
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, dynamic=False)
    with torch.no_grad():
        for _ in range(3):
            compiled(images())
    assert counter.frame_count == 1


def test_backward_through_merges_in_train_mode():
    model = apply_tome(make_model(distilled=True, drop_path_rate=0.1).train(), r=[8, 8, 8])
    out = model(images())
    loss = sum(o.square().mean() for o in out) if isinstance(out, tuple) else out.square().mean()
    loss.backward()
    grads = [p.grad for p in model.blocks.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_grad_checkpointing_is_refused_while_merging():
    model = apply_tome(make_model(), r=2)
    model.set_grad_checkpointing(True)
    with pytest.raises(RuntimeError, match="grad_checkpointing"):
        model(images())
    apply_tome(model, r=0)
    model(images())  # r=0 runs timm's own blocks: checkpointing is fine
