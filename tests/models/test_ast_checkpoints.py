"""Checkpoint loading: HF transformers, official AST, ImageNet DeiT, Lightning and plain files.

Checkpoints are written here from key names and shapes (or by a peer library); expected
values are computed in the tests from the source tensors, never by the code under test.
"""

from __future__ import annotations

import logging
import math

import pytest
import timm
import torch
from timm.models.deit import VisionTransformerDistilled
from transformers import ASTConfig, ASTForAudioClassification

from fastast_pl.models import ASTArch, ASTModel
from fastast_pl.tome import tome_state

HF_KW = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory):
    """A tiny random HF AST (64 mel bins, 128 frames -> 5x12 patches, 7 labels) on disk."""
    torch.manual_seed(0)
    cfg = ASTConfig(**HF_KW, max_length=128, num_mel_bins=64, num_labels=7)
    hf = ASTForAudioClassification(cfg)
    with torch.no_grad():
        for p in hf.parameters():  # HF zero-initialises tokens and embeddings: make all count
            p.normal_(0.0, 0.1)
    path = tmp_path_factory.mktemp("hf_ast")
    hf.save_pretrained(path)
    hf = ASTForAudioClassification.from_pretrained(path, attn_implementation="eager").eval()
    return hf, path


def official_state(hf: ASTForAudioClassification) -> dict[str, torch.Tensor]:
    """The HF model's weights in the official AST (DataParallel) layout, plus the unused heads."""
    sd = hf.state_dict()
    e, v = "audio_spectrogram_transformer.", "module.v."
    out = {
        v + "cls_token": sd[e + "embeddings.cls_token"],
        v + "dist_token": sd[e + "embeddings.distillation_token"],
        v + "pos_embed": sd[e + "embeddings.position_embeddings"],
        v + "patch_embed.proj.weight": sd[e + "embeddings.patch_embeddings.projection.weight"],
        v + "patch_embed.proj.bias": sd[e + "embeddings.patch_embeddings.projection.bias"],
        v + "norm.weight": sd[e + "layernorm.weight"],
        v + "norm.bias": sd[e + "layernorm.bias"],
        v + "head.weight": torch.randn(1000, 64),
        v + "head.bias": torch.randn(1000),
        v + "head_dist.weight": torch.randn(1000, 64),
        v + "head_dist.bias": torch.randn(1000),
        "module.mlp_head.0.weight": sd["classifier.layernorm.weight"],
        "module.mlp_head.0.bias": sd["classifier.layernorm.bias"],
        "module.mlp_head.1.weight": sd["classifier.dense.weight"],
        "module.mlp_head.1.bias": sd["classifier.dense.bias"],
    }
    for i in range(2):
        h, b = f"{e}layers.{i}.", f"{v}blocks.{i}."
        for kind in ("weight", "bias"):
            qkv = [sd[h + f"attention.{x}_proj.{kind}"] for x in "qkv"]
            out[b + f"attn.qkv.{kind}"] = torch.cat(qkv, dim=0)
            out[b + f"attn.proj.{kind}"] = sd[h + f"attention.o_proj.{kind}"]
            out[b + f"norm1.{kind}"] = sd[h + f"layernorm_before.{kind}"]
            out[b + f"norm2.{kind}"] = sd[h + f"layernorm_after.{kind}"]
            out[b + f"mlp.fc1.{kind}"] = sd[h + f"mlp.fc1.{kind}"]
            out[b + f"mlp.fc2.{kind}"] = sd[h + f"mlp.fc2.{kind}"]
    return {k: t.clone() for k, t in out.items()}


def random_official(grid: tuple[int, int], dim: int = 64, depth: int = 2, classes: int = 5):
    """Official-layout state dict of random tensors with the given pos_embed grid."""
    torch.manual_seed(1)
    v = "module.v."
    sd = {
        v + "cls_token": torch.randn(1, 1, dim),
        v + "dist_token": torch.randn(1, 1, dim),
        v + "pos_embed": torch.randn(1, 2 + grid[0] * grid[1], dim),
        v + "patch_embed.proj.weight": torch.randn(dim, 1, 16, 16),
        v + "patch_embed.proj.bias": torch.randn(dim),
        v + "norm.weight": torch.randn(dim),
        v + "norm.bias": torch.randn(dim),
        "module.mlp_head.0.weight": torch.randn(dim),
        "module.mlp_head.0.bias": torch.randn(dim),
        "module.mlp_head.1.weight": torch.randn(classes, dim),
        "module.mlp_head.1.bias": torch.randn(classes),
    }
    for i in range(depth):
        b = f"{v}blocks.{i}."
        shapes = {
            "norm1": [(dim,), (dim,)],
            "attn.qkv": [(3 * dim, dim), (3 * dim,)],
            "attn.proj": [(dim, dim), (dim,)],
            "norm2": [(dim,), (dim,)],
            "mlp.fc1": [(4 * dim, dim), (4 * dim,)],
            "mlp.fc2": [(dim, 4 * dim), (dim,)],
        }
        for name, (w, bias) in shapes.items():
            sd[f"{b}{name}.weight"] = torch.randn(w)
            sd[f"{b}{name}.bias"] = torch.randn(bias)
    return sd


def hf_logits(hf: ASTForAudioClassification, fbank: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return hf(input_values=fbank).logits


# ------------------------------------------------------------------------------- HF


def test_hf_checkpoint_logits_match_peer(hf_dir) -> None:
    hf, path = hf_dir
    model = ASTModel.from_pretrained(path).eval()
    assert (model.embed_dim, model.depth, model.num_heads) == (64, 2, 4)
    assert model.arch.norm_eps == 1e-12 and model.grid_size == (5, 12) and model.num_classes == 7
    fbank = torch.randn(2, 128, 64)
    with torch.no_grad():
        got = model(fbank)
    torch.testing.assert_close(got, hf_logits(hf, fbank), atol=1e-5, rtol=0)


def test_hf_checkpoint_with_merging_follows_schedule(hf_dir) -> None:
    _, path = hf_dir
    model = ASTModel.from_pretrained(path, merge=[8, 4]).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 128, 64))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    # 2 prefix tokens + 5 x 12 patches = 62; minus 8 after block 0, minus 4 after block 1.
    assert tome_state(model).tokens_seen == [62, 54, 50]
    assert model.merge_schedule().tokens == [62, 54, 50]


def test_hf_weights_file_needs_its_config(hf_dir, tmp_path) -> None:
    _, path = hf_dir
    (tmp_path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors.*config\.json"):
        ASTModel.from_pretrained(tmp_path / "model.safetensors")


def test_hf_in_memory_state_dict_names_load(hf_dir, tmp_path) -> None:
    """A torch.save of a transformers 5 model's state_dict() (q_proj/k_proj names) also loads."""
    hf, path = hf_dir
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    torch.save(hf.state_dict(), tmp_path / "weights.bin")
    model = ASTModel.from_pretrained(tmp_path / "weights.bin").eval()
    fbank = torch.randn(2, 128, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(fbank), hf_logits(hf, fbank), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------- official


def test_official_checkpoint_logits_match_peer(hf_dir, tmp_path) -> None:
    hf, _ = hf_dir
    torch.save(official_state(hf), tmp_path / "audioset.pth")
    model = ASTModel.from_pretrained(
        tmp_path / "audioset.pth", checkpoint_fdim=64, input_fdim=64, num_heads=4, norm_eps=1e-12
    ).eval()
    assert model.grid_size == (5, 12) and model.num_classes == 7
    fbank = torch.randn(2, 128, 64)  # 128 frames: the inferred input_tdim (121) gives 12 too
    with torch.no_grad():
        torch.testing.assert_close(model(fbank), hf_logits(hf, fbank), atol=1e-5, rtol=0)


def test_official_pos_embed_centre_crop_both_axes(tmp_path, caplog) -> None:
    sd = random_official(grid=(12, 12))  # 128 mel bins x 128 frames
    torch.save(sd, tmp_path / "ast.pth")
    with caplog.at_level(logging.INFO, logger="fastast_pl.models.checkpoints"):
        model = ASTModel.from_pretrained(
            tmp_path / "ast.pth", input_fdim=128, input_tdim=64, num_heads=4
        )
    assert model.grid_size == (12, 5)
    assert "pos_embed 12x12 -> 12x5 (centre crop in time)" in caplog.text
    src = sd["module.v.pos_embed"]
    new = model.pos_embed.detach()
    torch.testing.assert_close(new[:, :2], src[:, :2])  # class and distillation tokens kept
    src_grid = src[0, 2:].reshape(12, 12, 64)
    # AST's centre: start = 12 // 2 - 5 // 2 = 4, so time columns 4..8 survive.
    torch.testing.assert_close(new[0, 2:].reshape(12, 5, 64), src_grid[:, 4:9])
    assert torch.equal(new[0, 2 + 3 * 5 + 0], src_grid[3, 4])

    model = ASTModel(
        num_classes=5,
        input_fdim=64,
        input_tdim=64,
        arch=ASTArch(embed_dim=64, depth=2, num_heads=4),
    )
    model.load_pretrained(
        tmp_path / "ast.pth"
    )  # checkpoint grid read with the default 128 mel bins
    assert model.grid_size == (5, 5)
    # frequency: start = 6 - 2 = 4 as well.
    torch.testing.assert_close(
        model.pos_embed[0, 2:].detach().reshape(5, 5, 64), src_grid[4:9, 4:9]
    )


def test_official_pos_embed_bilinear_in_time(tmp_path, caplog) -> None:
    sd = random_official(grid=(5, 4))  # 64 mel bins, 46 frames
    torch.save(sd, tmp_path / "ast.pth")
    with caplog.at_level(logging.INFO, logger="fastast_pl.models.checkpoints"):
        model = ASTModel.from_pretrained(
            tmp_path / "ast.pth", checkpoint_fdim=64, input_fdim=64, input_tdim=76, num_heads=4
        )
    assert model.grid_size == (5, 7)
    assert "pos_embed 5x4 -> 5x7 (bilinear interpolation in time)" in caplog.text
    src = sd["module.v.pos_embed"][0, 2:].reshape(5, 4, 64)
    new = model.pos_embed.detach()[0, 2:].reshape(5, 7, 64)
    # Linear interpolation with half-pixel centres: x = (j + 0.5) * 4 / 7 - 0.5, clamped.
    for j in range(7):
        x = min(max((j + 0.5) * 4 / 7 - 0.5, 0.0), 3.0)
        lo, frac = int(math.floor(x)), x - math.floor(x)
        hi = min(lo + 1, 3)
        expected = (1 - frac) * src[:, lo] + frac * src[:, hi]
        torch.testing.assert_close(new[:, j], expected, atol=1e-6, rtol=0)


def test_num_classes_override_reinitialises_head_only(tmp_path, caplog) -> None:
    sd = random_official(grid=(12, 12), classes=5)
    torch.save(sd, tmp_path / "ast.pth")
    with caplog.at_level(logging.INFO, logger="fastast_pl.models.checkpoints"):
        model = ASTModel.from_pretrained(tmp_path / "ast.pth", num_classes=3, num_heads=4)
    assert "head 5 -> 3 classes: re-initialised" in caplog.text
    assert model.head[1].weight.shape == (3, 64)
    assert torch.equal(model.blocks[1].mlp.fc2.weight, sd["module.v.blocks.1.mlp.fc2.weight"])
    keep = ASTModel.from_pretrained(tmp_path / "ast.pth", num_heads=4)
    assert keep.num_classes == 5
    assert torch.equal(keep.head[1].weight, sd["module.mlp_head.1.weight"])


# ------------------------------------------------------------------------------- ImageNet


def test_imagenet_deit_initialisation(tmp_path) -> None:
    """A timm VisionTransformerDistilled (the class of deit_*_distilled_*) as ImageNet init."""
    torch.manual_seed(2)
    deit = VisionTransformerDistilled(
        img_size=96, patch_size=16, embed_dim=64, depth=2, num_heads=4
    )
    src = {k: v.clone() for k, v in deit.state_dict().items()}
    assert "head_dist.weight" in src and src["patch_embed.proj.weight"].shape[1] == 3
    torch.save(src, tmp_path / "deit.pth")
    model = ASTModel.from_pretrained(
        tmp_path / "deit.pth", num_classes=10, input_tdim=48, input_fdim=48, num_heads=4
    )
    assert (model.embed_dim, model.depth, model.num_heads) == (64, 2, 4)
    assert model.grid_size == (4, 4)
    w = src["patch_embed.proj.weight"]  # (64, 3, 16, 16)
    # AST's ast_models.py: torch.sum(weight, dim=1).unsqueeze(1) -- the SUM over RGB.
    expected = w[:, 0] + w[:, 1] + w[:, 2]
    torch.testing.assert_close(model.patch_embed.proj.weight.detach()[:, 0], expected)
    assert torch.equal(model.patch_embed.proj.bias, src["patch_embed.proj.bias"])
    for key, value in model.state_dict().items():
        if key.startswith(("blocks.", "norm.")) or key in ("cls_token", "dist_token"):
            assert torch.equal(value, src[key]), key
    pos = model.pos_embed.detach()
    assert torch.equal(pos[:, :2], src["pos_embed"][:, :2])
    # 6x6 ImageNet grid -> 4x4: start = 6 // 2 - 4 // 2 = 1 on both axes.
    grid = src["pos_embed"][0, 2:].reshape(6, 6, 64)
    assert torch.equal(pos[0, 2:].reshape(4, 4, 64), grid[1:5, 1:5])
    assert model.head[1].weight.shape == (10, 64)
    assert torch.equal(model.head[0].weight, torch.ones(64))


def test_deit_patch_kernel_sums_rgb_like_ast(tmp_path) -> None:
    """AST (ast_models.py) sums the ImageNet patch kernel over RGB: a one-channel patch then
    gives the DeiT's response to the grey RGB image (the patch copied into all three channels)."""
    torch.manual_seed(5)
    deit = VisionTransformerDistilled(
        img_size=64, patch_size=16, embed_dim=32, depth=1, num_heads=2
    ).eval()
    torch.save(deit.state_dict(), tmp_path / "deit_small.pth")
    model = ASTModel.from_pretrained(
        tmp_path / "deit_small.pth", num_classes=3, input_tdim=32, input_fdim=32, num_heads=2
    ).eval()
    w = deit.patch_embed.proj.weight.detach()  # (32, 3, 16, 16)
    summed = torch.sum(w, dim=1).unsqueeze(1)  # (32, 1, 16, 16)
    assert torch.equal(model.patch_embed.proj.weight.detach(), summed)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        ours = model.patch_embed.proj(x)  # stride may differ; one 16x16 patch -> (2, 32, 1, 1)
        theirs = deit.patch_embed.proj(x.expand(-1, 3, -1, -1))  # (2, 32, 1, 1)
    torch.testing.assert_close(ours, theirs)


def test_timm_deit_name_maps_to_ast_size() -> None:
    """The real deit_tiny_distilled_patch16_224 (pretrained=False) and our "tiny" agree in shape."""
    with torch.device("meta"):
        deit = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
        ours = ASTModel(
            input_tdim=128, input_fdim=128, arch=ASTArch(size="deit_tiny_distilled_patch16_224")
        )
    theirs = deit.state_dict()
    for key, value in ours.state_dict().items():
        if key.startswith("blocks.") or key in ("cls_token", "dist_token", "norm.weight"):
            assert value.shape == theirs[key].shape, key


# ------------------------------------------------------------------------------- ours


def _tiny_model(num_classes: int = 4, **arch_fields) -> ASTModel:
    torch.manual_seed(3)
    arch = ASTArch(**(dict(embed_dim=64, depth=2, num_heads=4) | arch_fields))
    return ASTModel(num_classes=num_classes, input_tdim=128, input_fdim=64, arch=arch)


@pytest.mark.parametrize("prefix", ["model.", "student."])
def test_lightning_checkpoint_uses_hparams_and_ignores_teacher(tmp_path, prefix) -> None:
    src = _tiny_model(norm_eps=1e-5).eval()
    state = {prefix + k: v for k, v in src.state_dict().items()}
    state["teacher.backbone.conv.weight"] = torch.randn(8, 1, 3, 3)
    ckpt = {
        "state_dict": state,
        "hyper_parameters": {
            "ast": ASTArch(embed_dim=64, depth=2, num_heads=4, norm_eps=1e-5),
            "num_mel_bins": 64,
            "target_length": 128,
            "num_classes": 4,
        },
        "epoch": 3,
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    model = ASTModel.from_pretrained(tmp_path / "last.ckpt").eval()
    assert (model.num_heads, model.arch.norm_eps, model.input_tdim, model.input_fdim) == (
        4,
        1e-5,
        128,
        64,
    )
    for key, value in src.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    fbank = torch.randn(2, 128, 64)
    with torch.no_grad():
        assert torch.equal(model(fbank), src(fbank))


def test_plain_state_dict_and_load_pretrained(tmp_path) -> None:
    src = _tiny_model()
    torch.save(src.state_dict(), tmp_path / "ast.pt")
    model = ASTModel.from_pretrained(tmp_path / "ast.pt", input_fdim=64, num_heads=4)
    assert model.grid_size == (5, 12)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in src.state_dict().items())

    other = _tiny_model(num_classes=9)
    other.load_pretrained(tmp_path / "ast.pt")
    assert other.head[1].weight.shape == (9, 64)
    assert torch.equal(other.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)


def test_from_pretrained_takes_a_whole_arch_or_its_fields_not_both(tmp_path) -> None:
    src = _tiny_model()
    torch.save(src.state_dict(), tmp_path / "ast.pt")
    arch = ASTArch(embed_dim=64, depth=2, num_heads=8, norm_eps=1e-5)
    model = ASTModel.from_pretrained(tmp_path / "ast.pt", input_fdim=64, arch=arch)
    assert model.arch == arch and model.blocks[0].attn.num_heads == 8
    with pytest.raises(
        TypeError, match=r"either arch=ASTArch\(...\) or ASTArch fields \['depth'\]"
    ):
        ASTModel.from_pretrained(tmp_path / "ast.pt", arch=arch, depth=2)
    with pytest.raises(TypeError, match=r"unknown override\(s\) \['heads'\]"):
        ASTModel.from_pretrained(tmp_path / "ast.pt", heads=4)


# ------------------------------------------------------------------------------- errors


def test_missing_path(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pth does not exist"):
        ASTModel.from_pretrained(tmp_path / "nope.pth")


def test_directory_without_config(tmp_path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"needs config\.json; found \['weights\.bin'\]"):
        ASTModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("suffix", [".pth", ".ckpt", ".safetensors"])
def test_truncated_file(tmp_path, suffix) -> None:
    from safetensors.torch import save_file

    full = tmp_path / ("full" + suffix)
    state = random_official(grid=(2, 2))
    if suffix == ".safetensors":
        save_file(state, str(full))
    else:
        torch.save(state, full)
    cut = tmp_path / ("cut" + suffix)
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(
        ValueError, match=rf"cut\{suffix}: could not read it as .*(truncated|corrupt)"
    ):
        ASTModel.from_pretrained(cut)


def test_not_a_state_dict(tmp_path) -> None:
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list\.pt: expected a state dict .* found a list"):
        ASTModel.from_pretrained(tmp_path / "list.pt")


def test_unknown_keys(tmp_path) -> None:
    torch.save(
        {"encoder.conv1.weight": torch.zeros(3), "fc.bias": torch.zeros(2)}, tmp_path / "x.pt"
    )
    with pytest.raises(ValueError) as err:
        ASTModel.from_pretrained(tmp_path / "x.pt")
    msg = str(err.value)
    assert "x.pt: unknown checkpoint format" in msg
    assert "['encoder.conv1.weight', 'fc.bias']" in msg
    assert "official AST" in msg and "HF transformers" in msg and "Lightning" in msg


def test_width_mismatch_names_key_and_shapes(tmp_path) -> None:
    torch.save(random_official(grid=(5, 12), dim=64), tmp_path / "ast.pth")
    narrow = ASTModel(
        num_classes=5,
        input_tdim=128,
        input_fdim=64,
        arch=ASTArch(embed_dim=32, depth=2, num_heads=4),
    )
    with pytest.raises(
        ValueError, match=r"key 'cls_token' has shape \(1, 1, 64\).*expects \(1, 1, 32\)"
    ):
        narrow.load_pretrained(tmp_path / "ast.pth")


def test_depth_mismatch_fails_before_touching_the_model(tmp_path) -> None:
    torch.save(random_official(grid=(5, 12), depth=2), tmp_path / "ast.pth")
    deeper = ASTModel(
        num_classes=3,
        input_tdim=128,
        input_fdim=64,
        arch=ASTArch(embed_dim=64, depth=3, num_heads=4),
    )
    before = {k: v.clone() for k, v in deeper.state_dict().items()}
    with pytest.raises(ValueError, match=r"has 2 transformer blocks.*expects 3"):
        deeper.load_pretrained(tmp_path / "ast.pth")
    assert all(torch.equal(deeper.state_dict()[k], v) for k, v in before.items())


def test_lightning_checkpoint_without_ast(tmp_path) -> None:
    torch.save({"state_dict": {"teacher.fc.weight": torch.zeros(2, 2)}}, tmp_path / "t.ckpt")
    with pytest.raises(
        ValueError,
        match=r"t\.ckpt: unknown checkpoint format .*without an AST.*teacher\.fc\.weight",
    ):
        ASTModel.from_pretrained(tmp_path / "t.ckpt")


def test_pos_embed_length_that_fits_no_grid(tmp_path) -> None:
    torch.save(random_official(grid=(1, 7)), tmp_path / "ast.pth")  # 7 patches, 12 rows assumed
    with pytest.raises(
        ValueError, match=r"7 patch positions.*12 frequency patches.*checkpoint_fdim"
    ):
        ASTModel.from_pretrained(tmp_path / "ast.pth")
