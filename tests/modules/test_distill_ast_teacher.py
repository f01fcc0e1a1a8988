"""A transformer teacher: DistillationModule distils from a trained AST (any checkpoint
``ASTModel.from_pretrained`` reads), frozen like the CNN teacher, with a real tiny Trainer."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from timm.models.deit import VisionTransformerDistilled

from fastast_pl.losses import cmkd_loss
from fastast_pl.models.ast import ASTModel
from fastast_pl.models.frozen import load_frozen_teacher
from fastast_pl.modules.distill import DistillationModule
from fastast_pl.modules.student import StudentModule

from helpers.distill import FAST_OPTIM, F, T, TinyDataModule, tiny_student, tiny_trainer

TEACHER_AST = dict(embed_dim=48, depth=2, num_heads=2, patch_size=16, fstride=16, tstride=16)


@pytest.fixture(scope="module")
def ast_teacher_ckpt(tmp_path_factory):
    """A tiny StudentModule (the AST teacher) trained for one epoch on 4 classes."""
    from fastast_pl.models.arch import ASTArch

    root = tmp_path_factory.mktemp("ast_teacher")
    L.seed_everything(1, verbose=False)
    module = StudentModule(
        num_classes=4,
        target_length=T,
        num_mel_bins=F,
        multi_label=False,
        ast=ASTArch(**TEACHER_AST),
        optim=FAST_OPTIM,
    )
    trainer = tiny_trainer(root, limit_val_batches=0)
    trainer.fit(module, datamodule=TinyDataModule(num_classes=4))
    path = root / "ast_teacher.ckpt"
    trainer.save_checkpoint(path)
    return path


def _student(teacher_checkpoint: str, **kwargs) -> DistillationModule:
    L.seed_everything(0, verbose=False)
    return tiny_student(teacher_checkpoint, **kwargs)


def _independent_teacher_weights(path) -> dict[str, torch.Tensor]:
    """The teacher's weights as ASTModel.from_pretrained reads them, before any training."""
    return {k: v.clone() for k, v in ASTModel.from_pretrained(path).state_dict().items()}


class _Watch(L.Callback):
    def __init__(self) -> None:
        self.teacher_training: list[bool] = []
        self.optimised: set[int] = set()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.teacher_training.append(any(m.training for m in module.teacher.modules()))
        for group in trainer.optimizers[0].param_groups:
            self.optimised.update(id(p) for p in group["params"])


def test_distil_from_a_trained_ast_teacher(tmp_path, ast_teacher_ckpt) -> None:
    before = _independent_teacher_weights(ast_teacher_ckpt)
    module = _student(str(ast_teacher_ckpt), kd_form="hinton", kd_temperature=2.0)
    watch = _Watch()
    dm = TinyDataModule(num_classes=4)
    trainer = tiny_trainer(tmp_path, max_steps=1, limit_val_batches=0, callbacks=[watch])
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 1
    assert module.teacher.output_kind == "logits"
    assert isinstance(module.teacher.teacher, ASTModel)
    after = module.teacher.teacher.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert watch.teacher_training == [False]
    teacher_ids = {id(p) for p in module.teacher.parameters()}
    assert teacher_ids and not watch.optimised & teacher_ids
    # The teacher's logits are those of the checkpoint's AST, run without merging.
    reference = ASTModel.from_pretrained(ast_teacher_ckpt).eval()
    x = dm.eval_set.fbank[:3]
    with torch.no_grad():
        torch.testing.assert_close(module.teacher(x), reference(x))
    # The loss takes the module's kd_form (Hinton's here, which differs from CMKD's at T=2).
    batch = {"fbank": x, "target": dm.eval_set.target[:3], "index": torch.arange(3)}
    with torch.no_grad():
        logits = module(x)
        parts = module.training_loss(batch, logits)
    teacher_logits = reference(x)
    hinton = cmkd_loss(logits, teacher_logits, batch["target"], False, 0.5, 2.0, "hinton")
    cmkd = cmkd_loss(logits, teacher_logits, batch["target"], False, 0.5, 2.0, "cmkd")
    torch.testing.assert_close(parts["kd"], hinton["kd"])
    assert abs(parts["kd"].item() - cmkd["kd"].item()) > 1e-4
    # The distilled checkpoint holds the student only.
    ckpt = tmp_path / "student.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    assert not [k for k in state if k.startswith("teacher.")]
    assert any(k.startswith("model.") for k in state)


def test_hf_transformers_ast_as_teacher(tmp_path) -> None:
    """An HF transformers AST directory (one of from_pretrained's formats) is a teacher too;
    its logits are HF's own (peer library as the oracle)."""
    from transformers import ASTConfig, ASTForAudioClassification

    torch.manual_seed(0)
    cfg = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=T,
        num_mel_bins=F,
        num_labels=4,
    )
    hf = ASTForAudioClassification(cfg)
    with torch.no_grad():
        for p in hf.parameters():  # HF zero-initialises tokens and embeddings: make all count
            p.normal_(0.0, 0.1)
    hf.save_pretrained(tmp_path / "hf_ast")
    hf = ASTForAudioClassification.from_pretrained(
        tmp_path / "hf_ast", attn_implementation="eager"
    ).eval()
    frozen = load_frozen_teacher(tmp_path / "hf_ast", target_length=T)
    assert (frozen.info.num_classes, frozen.info.num_mel_bins, frozen.info.kind) == (4, F, "ast")
    assert frozen.info.multi_label is None  # HF's config does not say
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    frozen.train()  # pinned to eval mode
    assert not any(m.training for m in frozen.modules())
    x = torch.randn(2, T, F)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), hf(input_values=x).logits, rtol=1e-4, atol=1e-5)


def test_ast_teacher_of_other_classes_is_refused(tmp_path, ast_teacher_ckpt) -> None:
    module = tiny_student(str(ast_teacher_ckpt), num_classes=5, merge=0)
    with pytest.raises(ValueError, match="num_classes: teacher 4, data 5"):
        tiny_trainer(tmp_path).fit(module, datamodule=TinyDataModule(num_classes=5))


def test_unknown_kd_form_is_named() -> None:
    with pytest.raises(ValueError, match="kd_form.*cmkd.*hinton.*'soft'"):
        _student("unused.ckpt", kd_form="soft")


def test_imagenet_deit_is_no_teacher(tmp_path) -> None:
    deit = VisionTransformerDistilled(
        img_size=64, patch_size=16, embed_dim=32, depth=1, num_heads=2
    )
    path = tmp_path / "deit.pth"
    torch.save(deit.state_dict(), path)
    with pytest.raises(ValueError, match="no audio classification head"):
        load_frozen_teacher(path, target_length=T)
