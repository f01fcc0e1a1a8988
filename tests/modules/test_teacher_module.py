"""TeacherModule: trains, stores its data settings in the checkpoint, loads back frozen."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fastast_pl.models.checkpoints import RECORD_KEY
from fastast_pl.models.teacher import FrozenTeacher
from fastast_pl.modules.teacher import TeacherModule

from helpers.distill import FAST_OPTIM, TINY_TEACHER, T, TinyDataModule, teacher_copy


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    return TinyDataModule(num_classes=4), teacher_copy(root)


def test_checkpoint_carries_data_settings(trained) -> None:
    dm, path = trained
    record = torch.load(path, map_location="cpu", weights_only=False)[RECORD_KEY]
    saved = dict(record, feature_config=record["features"])  # the record's names
    assert saved["num_classes"] == 4
    assert saved["multi_label"] is False
    assert saved["feature_config"] == dm.feature_config()
    assert saved["arch"]["backbone"] == TINY_TEACHER.backbone


def test_load_frozen_gives_the_trained_teacher_pinned_to_eval(trained) -> None:
    dm, path = trained
    frozen = TeacherModule.load_frozen(path)
    assert isinstance(frozen, FrozenTeacher)
    assert frozen.info.num_classes == 4 and frozen.info.feature_config == dm.feature_config()
    frozen.train()  # what LightningModule.train() does to its children
    assert not any(m.training for m in frozen.modules())
    assert not any(p.requires_grad for p in frozen.parameters())

    # Same numbers as the module that was trained (rebuilt independently from its state).
    reference = TeacherModule(
        num_classes=4, target_length=T, num_mel_bins=32, teacher=TINY_TEACHER, optim=FAST_OPTIM
    )
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    reference.load_state_dict(state)
    reference.eval()
    x = dm.eval_set.fbank[:4]
    out = frozen(x)
    assert not out.requires_grad
    torch.testing.assert_close(out, reference(x))
    # A batch in train mode would update BatchNorm statistics; the frozen one must not.
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    frozen.train()
    frozen(x)
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())


def test_multi_label_task_loss_is_bce_on_probabilities() -> None:
    torch.manual_seed(0)
    module = TeacherModule(
        num_classes=3, target_length=T, num_mel_bins=32, multi_label=True, teacher=TINY_TEACHER
    ).eval()
    x = torch.randn(2, T, 32)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    p = module.model(x)  # probabilities of the attention head
    torch.testing.assert_close(
        module.task_loss(module(x), y), F.binary_cross_entropy(p, y), rtol=1e-5, atol=1e-6
    )


def test_bad_checkpoints_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        TeacherModule.load_frozen(tmp_path / "missing.ckpt")
    other = tmp_path / "student.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, other)
    with pytest.raises(ValueError, match=f"student.ckpt.*{RECORD_KEY}"):
        TeacherModule.load_frozen(other)
