"""ASTModel structure and forward, checked against HF transformers' AST as a peer.

Weights are copied from our model into an HF ``ASTForAudioClassification`` with a key map
written here (independent of ``fastast_pl.models.checkpoints``).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import replace

import pytest
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import Block
from transformers import ASTConfig, ASTForAudioClassification

from fastast_pl.models import ASTArch, ASTModel
from fastast_pl.tome import apply_tome, tome_state

TINY = ASTArch(embed_dim=64, depth=2, num_heads=4)


def hf_state_from_ours(sd: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """Our ASTModel state dict in HF ``ASTForAudioClassification`` key names."""
    e = "audio_spectrogram_transformer."
    out = {
        e + "embeddings.cls_token": sd["cls_token"],
        e + "embeddings.distillation_token": sd["dist_token"],
        e + "embeddings.position_embeddings": sd["pos_embed"],
        e + "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        e + "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
        e + "layernorm.weight": sd["norm.weight"],
        e + "layernorm.bias": sd["norm.bias"],
        "classifier.layernorm.weight": sd["head.0.weight"],
        "classifier.layernorm.bias": sd["head.0.bias"],
        "classifier.dense.weight": sd["head.1.weight"],
        "classifier.dense.bias": sd["head.1.bias"],
    }
    for i in range(depth):
        b, h = f"blocks.{i}.", f"{e}encoder.layer.{i}."
        for kind in ("weight", "bias"):
            q, k, v = sd[b + f"attn.qkv.{kind}"].chunk(3, dim=0)
            out[h + f"attention.attention.query.{kind}"] = q
            out[h + f"attention.attention.key.{kind}"] = k
            out[h + f"attention.attention.value.{kind}"] = v
            out[h + f"attention.output.dense.{kind}"] = sd[b + f"attn.proj.{kind}"]
            out[h + f"layernorm_before.{kind}"] = sd[b + f"norm1.{kind}"]
            out[h + f"layernorm_after.{kind}"] = sd[b + f"norm2.{kind}"]
            out[h + f"intermediate.dense.{kind}"] = sd[b + f"mlp.fc1.{kind}"]
            out[h + f"output.dense.{kind}"] = sd[b + f"mlp.fc2.{kind}"]
    return out


def test_forward_matches_hf_transformers_peer(tmp_path) -> None:
    """Our weights, written in HF's on-disk key names and loaded by HF itself, give our logits."""
    torch.manual_seed(0)
    ours = ASTModel(
        num_classes=7, input_tdim=128, input_fdim=64, arch=replace(TINY, norm_eps=1e-12)
    ).eval()
    cfg = ASTConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_length=128,
        num_mel_bins=64,
        num_labels=7,
    )
    cfg.save_pretrained(tmp_path)
    tensors = {k: v.contiguous() for k, v in hf_state_from_ours(ours.state_dict(), 2).items()}
    save_file(tensors, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    hf = ASTForAudioClassification.from_pretrained(tmp_path, attn_implementation="eager").eval()
    fbank = torch.randn(2, 128, 64)
    with torch.no_grad():
        expected = hf(input_values=fbank).logits
        got = ours(fbank)
    assert got.shape == (2, 7)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_audioset_geometry() -> None:
    m = ASTModel(num_classes=527, input_tdim=1024, input_fdim=128, arch=TINY)
    assert m.grid_size == (12, 101)
    assert m.num_patches == 1212
    assert m.pos_embed.shape == (1, 1214, 64)
    assert m.num_prefix_tokens == 2
    assert m.patch_embed.proj.in_channels == 1
    assert m.patch_embed.proj.stride == (10, 10)
    assert isinstance(m.blocks, torch.nn.Sequential) and len(m.blocks) == 2
    assert all(type(b) is Block for b in m.blocks)


def test_patch_order_is_frequency_major() -> None:
    """Token 2 + f * t_dim + t covers frequency rows [10 f, 10 f + 16) and frames [10 t, 10 t + 16)."""
    m = ASTModel(num_classes=3, input_tdim=64, input_fdim=48, arch=TINY)
    f_dim, t_dim = m.grid_size
    assert (f_dim, t_dim) == (4, 5)
    fbank = torch.zeros(1, 64, 48)
    fbank[0, 30:46, 20:36] = torch.randn(16, 16)  # frames 30.., mel bins 20..: patch (f=2, t=3)
    with torch.no_grad():
        tokens = m.patch_embed(fbank)  # (1, 20, D)
        expected = torch.einsum(
            "dhw,hw->d", m.patch_embed.proj.weight[:, 0], fbank[0, 30:46, 20:36].T
        )
    torch.testing.assert_close(tokens[0, 2 * t_dim + 3], expected + m.patch_embed.proj.bias)


@pytest.mark.parametrize(
    ("arch", "dims"),
    [
        ("tiny", (192, 12, 3)),
        ("small", (384, 12, 6)),
        ("base", (768, 12, 12)),
        ("deit_tiny_distilled_patch16_224", (192, 12, 3)),
        ("deit_small_distilled_patch16_384", (384, 12, 6)),
        ("deit_base_distilled_patch16_384", (768, 12, 12)),
    ],
)
def test_named_sizes(arch: str, dims: tuple[int, int, int]) -> None:
    with torch.device("meta"):  # full-size models, no memory or init time spent
        m = ASTModel(num_classes=2, input_tdim=32, input_fdim=32, arch=ASTArch(size=arch))
    assert (m.embed_dim, m.depth, m.num_heads) == dims
    assert m.blocks[0].attn.num_heads == dims[2]


def test_explicit_sizes_override_arch_and_unknown_arch_fails() -> None:
    m = ASTModel(
        num_classes=2,
        input_tdim=32,
        input_fdim=32,
        arch=ASTArch(size="base", embed_dim=32, depth=1, num_heads=2),
    )
    assert (m.embed_dim, m.depth, m.num_heads) == (32, 1, 2)
    with pytest.raises(
        ValueError, match=r"unknown AST arch 'huge'.*deit_base_distilled_patch16_384"
    ):
        ASTModel(arch=ASTArch(size="huge"))


def test_norm_eps_reaches_every_layernorm() -> None:
    m = ASTModel(num_classes=2, input_tdim=32, input_fdim=32, arch=replace(TINY, norm_eps=1e-12))
    norms = [mod for mod in m.modules() if isinstance(mod, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 2 + 2  # norm1/norm2 per block, final norm, head norm
    assert all(n.eps == 1e-12 for n in norms)


def test_model_takes_the_arch_whole_and_keeps_it_resolved() -> None:
    params = inspect.signature(ASTModel.__init__).parameters
    assert not set(params) & {f.name for f in dataclasses.fields(ASTArch)}  # not repeated
    arch = ASTArch(embed_dim=32, depth=2, num_heads=2, drop_path_rate=0.1)
    m = ASTModel(num_classes=3, input_tdim=32, input_fdim=32, arch=arch)
    assert m.arch == arch  # all sizes explicit: resolving changes nothing
    with torch.device("meta"):
        named = ASTModel(input_tdim=32, input_fdim=32, arch=ASTArch(size="tiny", depth=1))
    assert named.arch == ASTArch(size="tiny", embed_dim=192, depth=1, num_heads=3)
    assert m.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)  # timm: linear in depth


def test_bad_input_shape_names_expected_grid() -> None:
    m = ASTModel(num_classes=2, input_tdim=128, input_fdim=64, arch=TINY)
    with pytest.raises(ValueError, match=r"T=100 frames and F=64.*5x9.*5x12"):
        m(torch.randn(1, 100, 64))
    with pytest.raises(ValueError, match=r"\(B, T, F\).*\(128, 64\)"):
        m(torch.randn(128, 64))


def test_merge_schedule_runs_and_r0_is_untouched() -> None:
    torch.manual_seed(0)
    m = ASTModel(num_classes=4, input_tdim=128, input_fdim=64, arch=TINY).eval()
    fbank = torch.randn(2, 128, 64)
    with torch.no_grad():
        plain = m(fbank)
    assert m.merge_schedule().r == [0, 0]

    m.set_merge(10)
    assert m.merge == 10
    with torch.no_grad():
        merged = m(fbank)
    # 2 prefix + 5 * 12 patches = 62 tokens in; 10 merged away in each of the 2 layers.
    assert tome_state(m).tokens_seen == [62, 52, 42] == m.merge_schedule().tokens
    assert merged.shape == (2, 4)

    m.set_merge(0)
    assert all(type(b) is Block for b in m.blocks)
    with torch.no_grad():
        assert torch.equal(m(fbank), plain)


def test_bad_merge_fails_at_construction_and_set_merge() -> None:
    with pytest.raises(ValueError, match="merge"):
        ASTModel(num_classes=2, input_tdim=128, input_fdim=64, merge=[1, 2, 3], arch=TINY)
    m = ASTModel(num_classes=2, input_tdim=128, input_fdim=64, arch=TINY)
    with pytest.raises(ValueError, match="merge"):
        m.set_merge(100)  # more than half of the 60 patches
    assert m.merge == 0


def test_train_mode_runs_merge_and_eval_mode_runs_eval_merge() -> None:
    torch.manual_seed(0)
    m = ASTModel(
        num_classes=4, input_tdim=128, input_fdim=64, arch=TINY, merge=10, eval_merge=[5, 0]
    )
    fbank = torch.randn(2, 128, 64)
    assert m.training and m.merge_schedule().r == [10, 10]
    m(fbank)
    assert tome_state(m).tokens_seen == [62, 52, 42]
    with torch.no_grad():
        m.eval()(fbank)
    assert tome_state(m).tokens_seen == [62, 57, 57] == m.merge_schedule().tokens
    m.train()(fbank)
    assert tome_state(m).tokens_seen == [62, 52, 42] == m.merge_schedule().tokens
    # a flag set without train(), as Lightning restores modes after validation, is followed
    m.training = False
    with torch.no_grad():
        m(fbank)
    assert tome_state(m).tokens_seen == [62, 57, 57]


def test_eval_merge_zero_matches_the_unmerged_model_and_keeps_tome_settings() -> None:
    torch.manual_seed(0)
    plain = ASTModel(num_classes=4, input_tdim=128, input_fdim=64, arch=TINY).eval()
    m = ASTModel(num_classes=4, input_tdim=128, input_fdim=64, arch=TINY, merge=10, eval_merge=0)
    m.load_state_dict(plain.state_dict())
    apply_tome(m, r=m.merge, trace_source=True)  # a caller's own ToMe setting
    fbank = torch.randn(2, 128, 64)
    with torch.no_grad():
        assert torch.equal(m.eval()(fbank), plain(fbank))  # r=0 parity in eval mode
    assert tome_state(m).trace_source and tome_state(m).tokens_seen == [62, 62, 62]
    m.train()
    assert tome_state(m).spec == 10 and tome_state(m).trace_source


def test_set_merge_sets_both_schedules_and_zero_removes_tome() -> None:
    m = ASTModel(num_classes=2, input_tdim=128, input_fdim=64, arch=TINY)
    m.set_merge(4)
    assert (m.merge, m.eval_merge) == (4, 4)
    m.set_merge(4, eval_merge=[2, 0])
    assert m.eval().merge_schedule().r == [2, 0] and m.train().merge_schedule().r == [4, 4]
    with pytest.raises(ValueError, match="merge"):
        m.set_merge(0, eval_merge=100)
    assert (m.merge, m.eval_merge) == (4, [2, 0])  # unchanged after a refused schedule
    m.set_merge(0)
    assert all(type(b) is Block for b in m.blocks)
