"""``init_from`` a checkpoint whose head was trained for other classes of the same count
(an HF AST whose id2label lists the data's classes in another order): evaluating it would
read class k's scores as another class's, so validate/test/predict refuse it by name; fit
re-initialises the head (warned), as for another class count. Other names (other classes,
or other spellings) are evaluated by index with a warning."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import ASTConfig, ASTForAudioClassification

from fastast_pl.models.arch import ASTArch
from fastast_pl.modules.student import StudentModule

from helpers.distill import FAST_OPTIM, F, T, TinyDataModule, tiny_trainer


class NamedData(TinyDataModule):
    def __init__(self, names: list[str]) -> None:
        super().__init__(num_classes=len(names))
        self.class_names = names


def _hf_ast(directory, names: list[str]) -> ASTForAudioClassification:
    torch.manual_seed(0)
    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=T,
        num_mel_bins=F,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    model = ASTForAudioClassification(config)
    model.save_pretrained(directory)
    return model


def _student(path) -> StudentModule:
    arch = ASTArch(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
    return StudentModule(
        num_classes=4,
        target_length=T,
        num_mel_bins=F,
        ast=arch,
        optim=FAST_OPTIM,
        init_from=str(path),
    )


def test_head_of_other_classes_is_refused_for_test_and_reset_for_fit(tmp_path, caplog) -> None:
    hf = _hf_ast(tmp_path / "hf", ["c1", "c0", "c2", "c3"])
    data = NamedData(["c0", "c1", "c2", "c3"])
    with pytest.raises(
        ValueError,
        match=r"hf: its head scores the data's classes in another order \(class 0: 'c1' there, 'c0' in the data\)",
    ):
        tiny_trainer(tmp_path).test(_student(tmp_path / "hf"), datamodule=data)
    module = _student(tmp_path / "hf")
    hf_head = hf.classifier.dense.weight
    assert torch.equal(module.model.head[1].weight, hf_head)  # loaded: same count
    with caplog.at_level(logging.WARNING, logger="fastast_pl.modules.student"):
        tiny_trainer(tmp_path, limit_train_batches=0, limit_val_batches=0).fit(
            module, datamodule=data
        )
    assert (
        "its head was trained for other classes (class 0: 'c1' there, 'c0' in the data)"
        in caplog.text
    )
    assert not torch.equal(module.model.head[1].weight, hf_head)  # fresh


def test_head_of_the_data_classes_is_evaluated(tmp_path) -> None:
    _hf_ast(tmp_path / "hf", ["c0", "c1", "c2", "c3"])
    tiny_trainer(tmp_path).test(
        _student(tmp_path / "hf"), datamodule=NamedData(["c0", "c1", "c2", "c3"])
    )


def test_head_of_other_names_is_evaluated_with_a_warning(tmp_path, caplog) -> None:
    _hf_ast(tmp_path / "hf", ["dog", "c1", "c2", "c3"])
    data = NamedData(["c0", "c1", "c2", "c3"])
    with caplog.at_level(logging.WARNING, logger="fastast_pl.modules.student"):
        tiny_trainer(tmp_path).test(_student(tmp_path / "hf"), datamodule=data)
    assert (
        "its head names other classes than the data's (class 0: 'dog' there, 'c0' in the data)"
        in caplog.text
    )
