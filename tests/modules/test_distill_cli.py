"""The two-stage recipe through the CLI: fit a teacher, distil a ToMe student from it, test
the student with the teacher checkpoint gone (synthetic audio, tiny models, one epoch)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from fastast_pl.cli import main

pytestmark = pytest.mark.slow


def _data(root: Path) -> dict:
    generator = {"num_classes": 3, "clips_per_class": 6, "clip_seconds": 0.5, "seed": 0}
    return {
        "source": {
            "class_path": "fastast_pl.data.sources.SyntheticSource",
            "init_args": {"root": str(root / "synthetic"), "generator": generator},
        },
        "features": {"target_length": 64, "num_mel_bins": 32, "mean": -6.0, "std": 4.0},
        "loader": {"batch_size": 4, "num_workers": 0},
    }


def _trainer(root: Path, name: str) -> dict:
    return {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "default_root_dir": str(root / name),
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "log_every_n_steps": 1,
        "logger": {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(root / name), "name": "logs", "version": 0},
        },
        "callbacks": [
            {
                "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                "init_args": {"dirpath": str(root / name), "filename": name},
            }
        ],
    }


def _write(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _logged(root: Path, name: str, version: int = 0) -> dict[str, float]:
    out: dict[str, float] = {}
    with open(root / name / "logs" / f"version_{version}" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            out.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return out


def test_teacher_then_distillation_then_test(tmp_path: Path) -> None:
    teacher_cfg = _write(
        tmp_path / "teacher.yaml",
        {
            "seed_everything": 0,
            "trainer": _trainer(tmp_path, "teacher"),
            "model": {
                "class_path": "fastast_pl.modules.teacher.TeacherModule",
                "init_args": {
                    "teacher": {"backbone": "mobilenetv3_small_050", "num_heads": 2},
                    "optim": {"lr": 0.001},
                },
            },
            "data": _data(tmp_path),
        },
    )
    main(["fit", "--config", teacher_cfg])
    teacher_ckpt = tmp_path / "teacher" / "teacher.ckpt"
    assert teacher_ckpt.is_file()

    student_cfg = _write(
        tmp_path / "distill.yaml",
        {
            "seed_everything": 0,
            "trainer": _trainer(tmp_path, "student"),
            "model": {
                "class_path": "fastast_pl.modules.distill.DistillationModule",
                "init_args": {
                    "ast": {
                        "size": "tiny",
                        "embed_dim": 32,
                        "depth": 2,
                        "num_heads": 2,
                        "fstride": 16,
                        "tstride": 16,
                    },
                    "merge": 2,
                    "teacher_checkpoint": str(teacher_ckpt),
                    "kd_lambda": 0.5,
                    "kd_temperature": 1.0,
                    "optim": {"lr": 0.001},
                },
            },
            "data": _data(tmp_path),
        },
    )
    main(["fit", "--config", student_cfg])
    student_ckpt = tmp_path / "student" / "student.ckpt"
    state = torch.load(student_ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert not [k for k in state if k.startswith("teacher.")]
    fit_logged = _logged(tmp_path, "student")
    for key in ("train/loss", "train/loss_task", "train/loss_kd", "val/acc", "val/teacher_acc"):
        assert key in fit_logged, key

    teacher_ckpt.unlink()  # the distilled student must test on its own
    main(
        [
            "test",
            "--config",
            student_cfg,
            "--ckpt_path",
            str(student_ckpt),
            "--trainer.logger.init_args.version",
            "1",
        ]
    )
    test_logged = _logged(tmp_path, "student", version=1)
    assert 0.0 <= test_logged["test/acc"] <= 1.0
    assert "test/teacher_acc" not in test_logged
