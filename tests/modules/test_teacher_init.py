"""TeacherModule(init_from=...): a TeacherModule checkpoint, a timm checkpoint of the backbone
and PSLA's EfficientNet layout (efficientnet_pytorch) each start the teacher with the source
model's outputs; a file of another backbone variant is refused naming both."""

from __future__ import annotations

import logging

import pytest
import timm
import torch
from torch import nn

from fastast_pl.models.teacher import TeacherArch
from fastast_pl.modules.teacher import TeacherModule

from helpers.distill import TINY_TEACHER, F, T, teacher_copy


@torch.no_grad()
def _calibrate_norms(model: nn.Module, make_input, steps: int = 3) -> None:
    """BatchNorm statistics of random inputs (not the initial 0 and 1), so every running
    statistic, and the eps beside it, matters to the eval-mode output."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    for _ in range(steps):
        model(make_input())
    model.eval()


def _teacher(
    backbone: str, init_from: str | None, classes: int = 4, mel: int = F, **arch
) -> TeacherModule:
    return TeacherModule(
        num_classes=classes,
        target_length=T,
        num_mel_bins=mel,
        multi_label=False,
        teacher=TeacherArch(backbone=backbone, **arch),
        init_from=init_from,
    )


@torch.no_grad()
def test_timm_tf_efficientnet_checkpoint_gives_the_source_features(tmp_path) -> None:
    torch.manual_seed(0)
    source = timm.create_model("tf_efficientnet_b0", num_classes=10)  # RGB, ImageNet head
    _calibrate_norms(source, lambda: torch.randn(4, 3, F, T))
    timm.models.save_for_hf(source, str(tmp_path / "tf_b0"))  # config.json + weights
    module = _teacher("tf_efficientnet_b0", str(tmp_path / "tf_b0"), pooling="mean").eval()

    x = torch.randn(2, 1, F, T)  # (B, 1, F, T): what CNNTeacher feeds its backbone
    expected = source.forward_features(x.expand(-1, 3, -1, -1))  # grey image in RGB
    ours = module.model.backbone(x)
    torch.testing.assert_close(ours, expected, rtol=1e-3, atol=1e-3)  # RGB sum rounding

    # The same weights in the symmetric-padding, eps-1e-5 twin compute something else:
    twin = timm.create_model("efficientnet_b0", in_chans=1, num_classes=0, global_pool="")
    twin.load_state_dict(module.model.backbone.state_dict())  # same keys and shapes
    gap = (twin.eval()(x) - expected).norm() / expected.norm()
    assert gap > 0.1, gap  # hence the refusal below


def test_a_tf_variant_file_is_refused_by_the_other_variant(tmp_path) -> None:
    source = timm.create_model("tf_efficientnet_b2", num_classes=0)
    timm.models.save_for_hf(source, str(tmp_path / "tf_b2"))
    with pytest.raises(ValueError) as err:
        _teacher("efficientnet_b2", str(tmp_path / "tf_b2"))
    assert "'tf_efficientnet_b2'" in str(err.value) and "'efficientnet_b2'" in str(err.value)


def test_pretrained_path_gets_the_same_variant_check(tmp_path, caplog) -> None:
    torch.manual_seed(0)
    source = timm.create_model("tf_efficientnet_b0", num_classes=10)  # RGB, ImageNet head
    recorded = tmp_path / "tf_b0.pth"  # as timm's train.py saves: the architecture beside
    torch.save({"arch": "tf_efficientnet_b0", "state_dict": source.state_dict()}, recorded)
    with pytest.raises(ValueError) as err:
        _teacher("efficientnet_b0", None, pretrained_path=str(recorded))
    assert "'tf_efficientnet_b0'" in str(err.value) and "'efficientnet_b0'" in str(err.value)
    assert str(recorded) in str(err.value)

    module = _teacher("tf_efficientnet_b0", None, pretrained_path=str(recorded))
    other = "blocks.1.0.conv_pw.weight"  # loaded by timm, unchanged
    assert torch.equal(module.model.backbone.state_dict()[other], source.state_dict()[other])

    bare = tmp_path / "bare.pth"  # records no architecture: loaded, with a warning
    torch.save(source.state_dict(), bare)
    with caplog.at_level(logging.WARNING, logger="fastast_pl.models.checkpoints.cnn_weights"):
        _teacher("efficientnet_b0", None, pretrained_path=str(bare))
    assert "records no architecture" in caplog.text


class PSLAEffNet(nn.Module):
    """PSLA's EfficientNet + multi-head attention layout (Gong et al. 2021, Sec. 2 and its
    released models): ``effnet`` (efficientnet_pytorch, one input channel), ``attention.att.h``
    / ``attention.cla.h`` 1x1 convolutions per head, ``attention.head_weight``. The forward
    is the paper's pooling written out: mean over the 4 remaining frequency rows, per head
    p_h = sum_t norm(clamp(sigmoid(att))) * sigmoid(cla), output sum_h w_h p_h."""

    def __init__(self, classes: int, heads: int) -> None:
        super().__init__()
        from efficientnet_pytorch import EfficientNet

        self.effnet = EfficientNet.from_name("efficientnet-b0", in_channels=1)
        self.effnet._fc = nn.Identity()
        self.attention = nn.Module()
        self.attention.att = nn.ModuleList(nn.Conv2d(1280, classes, 1) for _ in range(heads))
        self.attention.cla = nn.ModuleList(nn.Conv2d(1280, classes, 1) for _ in range(heads))
        self.attention.head_weight = nn.Parameter(torch.softmax(torch.randn(heads), 0))

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        x = fbank.unsqueeze(1).transpose(2, 3)  # (B, 1, F, T)
        fmap = self.effnet.extract_features(x).mean(dim=2, keepdim=True)  # (B, C, 1, T')
        out = 0.0
        for att, cla, w in zip(self.attention.att, self.attention.cla, self.attention.head_weight):
            a = torch.sigmoid(att(fmap))[:, :, 0].clamp(1e-7, 1 - 1e-7)  # (B, K, T')
            a = a / a.sum(dim=2, keepdim=True)
            out = out + w * (a * torch.sigmoid(cla(fmap))[:, :, 0]).sum(dim=2)  # (B, K)
        return out


@torch.no_grad()
def test_psla_efficientnet_checkpoint_gives_the_source_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    source = PSLAEffNet(classes=5, heads=4)
    _calibrate_norms(source, lambda: torch.randn(4, T, 128))
    path = tmp_path / "psla_b0.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)  # DataParallel
    module = _teacher("tf_efficientnet_b0", str(path), classes=5, mel=128, num_heads=4).eval()

    fbank = torch.randn(2, T, 128)  # (B, T, F): 128 bins leave the 4 rows PSLA averages
    x = fbank.unsqueeze(1).transpose(2, 3)
    torch.testing.assert_close(
        module.model.backbone(x), source.effnet.extract_features(x), rtol=1e-4, atol=1e-4
    )
    torch.testing.assert_close(module.model(fbank), source(fbank), rtol=1e-4, atol=1e-5)

    with pytest.raises(ValueError, match="'tf_efficientnet_b0'.*'efficientnet_b0'"):
        _teacher("efficientnet_b0", str(path), classes=5, mel=128)


def test_psla_head_of_other_classes_starts_fresh(tmp_path, caplog) -> None:
    source = PSLAEffNet(classes=5, heads=4)
    path = tmp_path / "psla_b0.pth"
    torch.save(source.state_dict(), path)  # saved without DataParallel: no "module." prefix
    with caplog.at_level("INFO", logger="fastast_pl.models.checkpoints.cnn_weights"):
        module = _teacher("tf_efficientnet_b0", str(path), classes=3, mel=128)
    stem = module.model.backbone.conv_stem.weight
    assert torch.equal(stem, source.effnet._conv_stem.weight)
    assert "pooling head fresh" in caplog.text and "(20, 1280)" in caplog.text  # 4 heads x 5


def test_teacher_module_checkpoint_is_a_starting_point(tmp_path) -> None:
    ckpt = teacher_copy(tmp_path)
    frozen = TeacherModule.load_frozen(ckpt)
    module = TeacherModule(
        num_classes=4,
        target_length=T,
        num_mel_bins=F,
        multi_label=False,
        teacher=TINY_TEACHER,
        init_from=str(ckpt),
    ).eval()
    x = torch.randn(3, T, F)
    with torch.no_grad():
        torch.testing.assert_close(module(x), frozen(x))
    with pytest.raises(ValueError, match="'mobilenetv3_small_050'.*'mobilenetv3_small_100'"):
        TeacherModule(
            num_classes=4,
            target_length=T,
            num_mel_bins=F,
            init_from=str(ckpt),
            teacher=TeacherArch(backbone="mobilenetv3_small_100", num_heads=2),
        )
