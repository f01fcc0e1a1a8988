"""CNNTeacher: shapes and orientation, PSLA attention pooling vs a hand-written reference,
logits for both heads, ImageNet weights from a local file with the first conv summed to 1 channel."""

from __future__ import annotations

import math

import pytest
import timm
import torch

from fastast_pl.models.teacher import AttentionPooling, CNNTeacher, probabilities_to_logits

BACKBONE = "mobilenetv3_small_050"


def test_attention_pooling_matches_psla_formula() -> None:
    torch.manual_seed(0)
    b, t, c, k, h = 2, 5, 6, 3, 2
    pool = AttentionPooling(c, k, h)
    with torch.no_grad():
        pool.head_logits.copy_(torch.tensor([0.3, -0.4]))
    x = torch.randn(b, t, c)
    out = pool(x)

    w_att = pool.att.weight.view(h, k, c)
    b_att = pool.att.bias.view(h, k)
    w_cla = pool.cla.weight.view(h, k, c)
    b_cla = pool.cla.bias.view(h, k)
    head_w = [math.exp(0.3), math.exp(-0.4)]
    head_w = [v / sum(head_w) for v in head_w]
    for i in range(b):
        for kk in range(k):
            total = 0.0
            for hh in range(h):
                att, cla = [], []
                for tt in range(t):
                    a = torch.sigmoid(w_att[hh, kk] @ x[i, tt] + b_att[hh, kk]).item()
                    att.append(min(max(a, 1e-7), 1 - 1e-7))
                    cla.append(torch.sigmoid(w_cla[hh, kk] @ x[i, tt] + b_cla[hh, kk]).item())
                clip = sum(a * s for a, s in zip(att, cla)) / sum(att)
                total += head_w[hh] * clip
            assert out[i, kk].item() == pytest.approx(total, rel=1e-5)


def test_attention_head_outputs_probabilities_and_logits() -> None:
    torch.manual_seed(0)
    model = CNNTeacher(5, BACKBONE, "attention", num_heads=3, input_fdim=32).eval()
    assert model.output_kind == "probabilities"
    x = torch.randn(3, 64, 32)  # (B, T, F)
    p = model(x)
    assert p.shape == (3, 5)
    assert bool(((p > 0) & (p < 1)).all())
    z = model.logits(x)
    # logits are log(p / (1 - p)) of the (clamped) probabilities
    ref = torch.log(p / (1 - p))
    torch.testing.assert_close(z, ref, rtol=1e-4, atol=1e-4)


def test_mean_head_outputs_logits() -> None:
    model = CNNTeacher(5, BACKBONE, "mean", input_fdim=32).eval()
    assert model.output_kind == "logits"
    x = torch.randn(2, 64, 32)
    torch.testing.assert_close(model.logits(x), model(x))


def test_backbone_sees_frequency_as_height() -> None:
    model = CNNTeacher(4, BACKBONE, input_fdim=32).eval()
    # (B, T=128, F=32) -> backbone input (B, 1, 32, 128) -> map (B, C, 1, 4): 4 time frames
    frames = model.frame_features(torch.randn(2, 128, 32))
    assert frames.shape[:2] == (2, 4)


def test_wrong_input_is_named() -> None:
    model = CNNTeacher(4, BACKBONE, input_fdim=32)
    with pytest.raises(ValueError, match=r"F=32.*\(2, 64, 40\)"):
        model(torch.randn(2, 64, 40))
    with pytest.raises(ValueError, match="pooling.*'max'"):
        CNNTeacher(4, BACKBONE, pooling="max")  # type: ignore[arg-type]


def test_imagenet_weights_from_local_file(tmp_path) -> None:
    torch.manual_seed(0)
    rgb = timm.create_model(BACKBONE, pretrained=False)  # stands in for ImageNet weights
    path = tmp_path / "imagenet.pth"
    torch.save(rgb.state_dict(), path)
    model = CNNTeacher(4, BACKBONE, pretrained_path=str(path), input_fdim=32)
    src, dst = rgb.state_dict(), model.backbone.state_dict()
    stem = rgb.pretrained_cfg["first_conv"] + ".weight"
    assert dst[stem].shape[1] == 1
    torch.testing.assert_close(dst[stem], src[stem].sum(dim=1, keepdim=True))  # RGB summed
    other = "blocks.1.0.conv_pw.weight"
    assert torch.equal(dst[other], src[other])


def test_missing_pretrained_file_is_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        CNNTeacher(4, BACKBONE, pretrained_path=str(tmp_path / "nothere.pth"))


def test_attention_pooling_stays_finite_under_bf16_autocast():
    # A confident head: p ~ 0.9997, which bf16 would round to exactly 1.0 (logit = inf).
    pool = AttentionPooling(in_features=8, num_classes=3, num_heads=2)
    with torch.no_grad():
        pool.cla.weight.zero_()
        pool.cla.bias.fill_(8.0)
    frames = torch.randn(2, 5, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probs = pool(frames)
        logits = probabilities_to_logits(probs)
    assert probs.dtype == torch.float32
    assert torch.isfinite(logits).all()
    # Same as without autocast; independent reference: logit(sigmoid(8)) = 8.
    torch.testing.assert_close(logits, torch.full_like(logits, 8.0), atol=1e-3, rtol=0)
