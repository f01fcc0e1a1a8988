"""A Hugging Face teacher names its classes in ``id2label``: a teacher whose classes are
the data's in another order, or other classes of the same count, is refused before training
(it would teach class k's scores as another class's); HF's ``LABEL_i`` placeholders name no
class and are matched by index, as before."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from transformers import (
    ASTConfig,
    ASTForAudioClassification,
)

from fastast_pl.data.datamodule import AudioDataModule, LoaderConfig
from fastast_pl.data.features import FeatureConfig
from fastast_pl.data.sources import FolderSource
from fastast_pl.models.checkpoints.metadata import id2label_names
from fastast_pl.models.frozen import load_frozen_teacher

from helpers.audio import tone, write
from helpers.distill import F, T, tiny_student, tiny_trainer
from helpers.hf_tiny import save_tiny_wav2vec2


def _dm(root) -> AudioDataModule:
    """class folders c0..c3 (train and val) of real WAVs, with waveforms in the batch."""
    for c in range(4):
        write(root / "train" / f"c{c}" / "0.wav", tone(0.6, 16000, 220 + 700 * c), 16000)
        write(root / "val" / f"c{c}" / "0.wav", tone(0.6, 16000, 260 + 700 * c, seed=7), 16000)
    features = FeatureConfig(num_mel_bins=F, target_length=T, mean=-4.27, std=4.57)
    return AudioDataModule(
        FolderSource(str(root)),
        features=features,
        loader=LoaderConfig(batch_size=4),
        waveforms=True,
    )


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["c1", "c0", "c2", "c3"], "class 0: teacher 'c1', data 'c0'"),  # same classes, reordered
        (["dog", "cat", "c2", "c3"], "class 0: teacher 'dog', data 'c0'"),  # other classes
    ],
)
def test_waveform_teacher_of_other_class_order_is_refused(tmp_path, names, expected) -> None:
    save_tiny_wav2vec2(tmp_path / "w2v2", names)
    module = tiny_student(str(tmp_path / "w2v2"))
    with pytest.raises(ValueError, match=expected):
        tiny_trainer(tmp_path, limit_val_batches=0).fit(module, datamodule=_dm(tmp_path / "d"))


def _hf_ast(directory, id2label: dict | None) -> None:
    torch.manual_seed(0)
    extra = {} if id2label is None else {"id2label": id2label, "label2id": {}}
    config = ASTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_length=T,
        num_mel_bins=F,
        num_labels=4,
        **extra,
    )
    ASTForAudioClassification(config).save_pretrained(directory)


def test_hf_ast_teacher_class_names_come_from_id2label(tmp_path) -> None:
    _hf_ast(tmp_path / "named", {i: n for i, n in enumerate(["c0", "c2", "c1", "c3"])})
    frozen = load_frozen_teacher(tmp_path / "named", target_length=T)
    assert frozen.info.class_names == ["c0", "c2", "c1", "c3"]  # was: None, not checked
    _hf_ast(tmp_path / "placeholders", None)  # HF's LABEL_0..LABEL_3: no names
    assert load_frozen_teacher(tmp_path / "placeholders", target_length=T).info.class_names is None


def test_id2label_is_read_by_index_not_by_file_order(tmp_path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"id2label": {"1": "meow", "0": "bark", "2": "chirp"}}))
    labels = json.loads(config.read_text())["id2label"]
    assert id2label_names(labels, config) == ["bark", "meow", "chirp"]
    with pytest.raises(ValueError, match=r"config.json: id2label keys \[0, 2\] are not 0..1"):
        id2label_names({"0": "bark", "2": "chirp"}, config)


def test_waveform_classifier_saved_without_its_feature_extractor_is_named(tmp_path) -> None:
    save_tiny_wav2vec2(tmp_path / "w2v2", ["c0", "c1", "c2", "c3"])
    (tmp_path / "w2v2" / "preprocessor_config.json").unlink()  # model.save_pretrained alone
    module = tiny_student(str(tmp_path / "w2v2"))
    # was: read as an AST checkpoint, "unexpected HF classifier key 'classifier.bias'"
    with pytest.raises(
        ValueError,
        match=r"w2v2 holds a 'wav2vec2' audio classifier but no preprocessor_config.json",
    ):
        tiny_trainer(tmp_path, limit_val_batches=0).fit(module, datamodule=_dm(tmp_path / "d"))


def test_other_spellings_pass_with_teacher_other_data_a_reorder_never(tmp_path, caplog) -> None:
    save_tiny_wav2vec2(tmp_path / "spelled", ["C0", "C1", "C2", "C3"])
    save_tiny_wav2vec2(tmp_path / "reordered", ["c1", "c0", "c2", "c3"])
    dm = _dm(tmp_path / "d")
    with pytest.raises(
        ValueError,
        match=r"class 0: teacher 'C0', data 'c0' \(the same classes spelled otherwise: set model.init_args.teacher_other_data=true\)",
    ):
        tiny_trainer(tmp_path, limit_val_batches=0).fit(
            tiny_student(str(tmp_path / "spelled")), datamodule=dm
        )
    with caplog.at_level(logging.WARNING, logger="fastast_pl.modules.teacher_checks"):
        trainer = tiny_trainer(tmp_path, limit_val_batches=0, max_steps=1)
        trainer.fit(tiny_student(str(tmp_path / "spelled"), teacher_other_data=True), datamodule=dm)
    assert trainer.global_step == 1
    assert (
        "names other classes (class 0: teacher 'C0', data 'c0'): with teacher_other_data"
        in caplog.text
    )
    with pytest.raises(ValueError, match=r"class 0: teacher 'c1', data 'c0'$"):
        student = tiny_student(str(tmp_path / "reordered"), teacher_other_data=True)
        tiny_trainer(tmp_path, limit_val_batches=0).fit(student, datamodule=dm)
