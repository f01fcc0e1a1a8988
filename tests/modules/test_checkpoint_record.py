"""One record per checkpoint (models/checkpoints/record.py), written by every module, read once.

The checkpoints are written by real Lightning Trainers (a tiny TeacherModule fit); the
checksum reference is hashlib over the tensors' bytes, written out here.
"""

from __future__ import annotations

import hashlib

import pytest
import torch

from fastast_pl.models.checkpoints import RECORD_KEY, RECORD_VERSION, read_record
from fastast_pl.models.checkpoints.teacher import load_teacher
from fastast_pl.models.frozen import load_frozen_teacher

from helpers.distill import TINY_TEACHER, TinyDataModule, teacher_copy


@pytest.fixture()
def teacher(tmp_path):
    return teacher_copy(tmp_path)


def _sha256(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def test_one_record_says_everything_once(teacher):
    raw = torch.load(teacher, map_location="cpu", weights_only=False)
    assert "fastast_inference" not in raw and "fastast_teacher" not in raw  # the old entries
    record = read_record(teacher)
    assert record.version == RECORD_VERSION == raw[RECORD_KEY]["version"] == 2
    assert record.module == "fastast_pl.modules.teacher.TeacherModule" and record.is_teacher
    assert record.arch["kind"] == "cnn" and record.arch["backbone"] == TINY_TEACHER.backbone
    assert (record.num_classes, record.multi_label) == (4, False)
    assert record.features == TinyDataModule().feature_config()
    assert record.merge is None and record.train_merge is None
    assert record.state_checksum == _sha256(raw["state_dict"])


def test_edited_teacher_weights_are_refused(teacher, tmp_path):
    raw = torch.load(teacher, map_location="cpu", weights_only=False)
    name = next(k for k, v in raw["state_dict"].items() if v.is_floating_point() and v.numel() > 4)
    raw["state_dict"][name].view(-1)[3] += 0.5  # same names and shapes, other numbers
    edited = tmp_path / "edited.ckpt"
    torch.save(raw, edited)
    with pytest.raises(ValueError, match=r"edited\.ckpt.*do not match the checksum"):
        load_teacher(edited)
    with pytest.raises(ValueError, match=r"edited\.ckpt.*do not match the checksum"):
        load_frozen_teacher(edited)


def test_other_record_versions_are_named(teacher, tmp_path):
    raw = torch.load(teacher, map_location="cpu", weights_only=False)
    newer = dict(raw, **{RECORD_KEY: dict(raw[RECORD_KEY], version=3)})
    torch.save(newer, tmp_path / "newer.ckpt")
    with pytest.raises(
        ValueError, match=r"newer\.ckpt.*version 3; this fastast_pl reads version 2"
    ):
        read_record(tmp_path / "newer.ckpt")
    # A checkpoint of version 1 carried "fastast_teacher" and "fastast_inference" instead.
    old = {k: v for k, v in raw.items() if k != RECORD_KEY}
    old["fastast_teacher"] = {"num_classes": 4}
    torch.save(old, tmp_path / "v1.ckpt")
    with pytest.raises(ValueError, match=r"v1\.ckpt.*version-1 entries \['fastast_teacher'\]"):
        load_teacher(tmp_path / "v1.ckpt")
