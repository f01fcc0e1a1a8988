"""DistillationModule with a real (tiny) Lightning Trainer: frozen teacher, optimiser,
checkpoints without the teacher, compatibility errors, teacher metrics."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from fastast_pl.modules.distill import DistillationModule
from fastast_pl.modules.teacher import TeacherModule

from helpers.distill import (
    TinyDataModule,
    teacher_copy,
    tiny_student,
    tiny_trainer,
    train_teacher,
)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    return teacher_copy(tmp_path_factory.mktemp("teacher"))


def make_module(teacher_checkpoint, num_classes=4, **kwargs) -> DistillationModule:
    L.seed_everything(0, verbose=False)
    checkpoint = None if teacher_checkpoint is None else str(teacher_checkpoint)
    return tiny_student(checkpoint, num_classes=num_classes, **kwargs)  # merge 2: a ToMe student


class _WatchTeacher(L.Callback):
    """Records the teacher's mode during training and the optimiser's parameters."""

    def __init__(self) -> None:
        self.teacher_training: list[bool] = []
        self.optimised: set[int] = set()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.teacher_training.append(any(m.training for m in module.teacher.modules()))
        for group in trainer.optimizers[0].param_groups:
            self.optimised.update(id(p) for p in group["params"])


def test_fit_leaves_teacher_untouched_and_out_of_the_optimiser(tmp_path, teacher_ckpt) -> None:
    before = TeacherModule.load_frozen(teacher_ckpt).state_dict()  # independent copy
    module = make_module(teacher_ckpt)
    watch = _WatchTeacher()
    trainer = tiny_trainer(tmp_path, max_epochs=2, callbacks=[watch])
    trainer.fit(module, datamodule=TinyDataModule(num_classes=4))

    after = module.teacher.state_dict()
    assert before.keys() == after.keys()
    assert any("running_mean" in k for k in after)  # BatchNorm buffers are compared too
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert watch.teacher_training and not any(watch.teacher_training)
    teacher_ids = {id(p) for p in module.teacher.parameters()}
    student_ids = {id(p) for p in module.model.parameters()}
    assert not watch.optimised & teacher_ids
    assert student_ids <= watch.optimised
    logged = trainer.callback_metrics
    for key in ("train/loss", "train/loss_task", "train/loss_kd", "val/acc", "val/teacher_acc"):
        assert key in logged, key
    lam = module.kd_lambda
    assert logged["train/loss"].item() == pytest.approx(
        ((1 - lam) * logged["train/loss_task"] + lam * logged["train/loss_kd"]).item(), rel=1e-5
    )


def test_distilled_checkpoint_has_no_teacher_and_tests_without_it(tmp_path, teacher_ckpt) -> None:
    dm = TinyDataModule(num_classes=4)
    module = make_module(teacher_ckpt)
    trainer = tiny_trainer(tmp_path, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    ckpt = tmp_path / "student.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert not [k for k in state if k.startswith("teacher.")]
    assert any(k.startswith("model.") for k in state)

    # Test with no teacher at all: student metrics only.
    restored = DistillationModule.load_from_checkpoint(
        ckpt, teacher_checkpoint=None, weights_only=False
    )
    tester = tiny_trainer(tmp_path)
    tester.test(restored, datamodule=dm)
    assert "test/acc" in tester.callback_metrics
    assert "test/teacher_acc" not in tester.callback_metrics
    # The student's outputs are those of the trained module.
    x = dm.eval_set.fbank[:4]
    module.eval()
    restored.eval()
    torch.testing.assert_close(restored(x), module(x))

    # A teacher path that no longer exists is skipped the same way.
    gone = DistillationModule.load_from_checkpoint(
        ckpt, teacher_checkpoint=str(tmp_path / "x"), weights_only=False
    )
    tiny_trainer(tmp_path).test(gone, datamodule=dm)

    # With the teacher: its accuracy equals the one computed by hand.
    with_teacher = DistillationModule.load_from_checkpoint(ckpt, weights_only=False)
    tester = tiny_trainer(tmp_path)
    tester.test(with_teacher, datamodule=dm)
    frozen = TeacherModule.load_frozen(teacher_ckpt)
    labels = dm.eval_set.target.argmax(-1)
    expected = (frozen(dm.eval_set.fbank).argmax(-1) == labels).float().mean().item()
    assert tester.callback_metrics["test/teacher_acc"].item() == pytest.approx(expected)


def test_resume_with_teacher_loads_strictly(tmp_path, teacher_ckpt) -> None:
    dm = TinyDataModule(num_classes=4)
    trainer = tiny_trainer(tmp_path, limit_val_batches=0)
    trainer.fit(make_module(teacher_ckpt), datamodule=dm)
    ckpt = tmp_path / "epoch1.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed = make_module(teacher_ckpt)
    trainer = tiny_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    trainer.fit(resumed, datamodule=dm, ckpt_path=ckpt, weights_only=False)
    assert trainer.current_epoch == 2
    before = TeacherModule.load_frozen(teacher_ckpt).state_dict()
    assert all(torch.equal(before[k], v) for k, v in resumed.teacher.state_dict().items())


@pytest.mark.parametrize(
    "data_kwargs,module_classes,message",
    [
        ({"num_classes": 5}, 5, "num_classes: teacher 4, data 5"),
        ({"num_classes": 4, "mean": -3.0}, 4, "feature mean: teacher -4.27, data -3.0"),
    ],
)
def test_incompatible_teacher_is_refused_before_training(
    tmp_path, teacher_ckpt, data_kwargs, module_classes, message
) -> None:
    module = make_module(teacher_ckpt, num_classes=module_classes)
    trainer = tiny_trainer(tmp_path)
    with pytest.raises(ValueError, match=message) as err:
        trainer.fit(module, datamodule=TinyDataModule(**data_kwargs))
    assert str(teacher_ckpt) in str(err.value)
    assert trainer.global_step == 0


class _NamedData(TinyDataModule):
    """TinyDataModule with the class names and data identity AudioDataModule offers."""

    def __init__(self, names: list[str], source: str) -> None:
        super().__init__(num_classes=len(names))
        self.class_names, self._source = names, source

    def data_identity(self) -> dict:
        return {"source": self._source, "augment": {}, "seed": 0}


@pytest.fixture(scope="module")
def named_teacher(tmp_path_factory):
    data = _NamedData(["a", "b", "c", "d"], "FolderSource(root='x', seed=0)")
    return train_teacher(tmp_path_factory.mktemp("named"), data)


@pytest.mark.parametrize(
    "names,source,message",
    [
        (["a", "b", "d", "c"], "FolderSource(root='x', seed=0)", "class 2: teacher 'c', data 'd'"),
        (
            ["a", "b", "c", "d"],
            "FolderSource(root='x', seed=1)",
            r"data source: teacher trained on FolderSource\(root='x', seed=0\), data "
            r"FolderSource\(root='x', seed=1\).*teacher_other_data=true",
        ),
    ],
)
def test_teacher_trained_on_other_data_is_refused(tmp_path, named_teacher, names, source, message):
    trainer = tiny_trainer(tmp_path)
    with pytest.raises(ValueError, match=message):
        trainer.fit(make_module(named_teacher), datamodule=_NamedData(names, source))
    assert trainer.global_step == 0
    if "source" in message:  # meant: said with the documented option
        trainer = tiny_trainer(tmp_path, max_steps=1)
        module = make_module(named_teacher, teacher_other_data=True)
        trainer.fit(module, datamodule=_NamedData(names, source))
        assert trainer.global_step == 1


def test_fit_needs_a_teacher(tmp_path) -> None:
    with pytest.raises(ValueError, match="teacher_checkpoint"):
        tiny_trainer(tmp_path).fit(make_module(None), datamodule=TinyDataModule(num_classes=4))
