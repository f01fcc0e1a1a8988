"""Class names or a label kind given to ``AudioClassifier.from_pretrained`` (CLI
``--class-names``, ``--label-kind``) that replace other ones the checkpoint records are used
as asked, with a warning naming the first difference (was: replaced without a word)."""

import json
import logging

from fastast_pl.inference import AudioClassifier

from helpers.hf_tiny import LABELS, save_tiny_hf_ast


def test_replaced_class_names_and_label_kind_are_warned_about(tmp_path, caplog):
    save_tiny_hf_ast(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    config["problem_type"] = "single_label_classification"
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="fastast_pl"):
        same = AudioClassifier.from_pretrained(tmp_path / "hf", class_names=LABELS, device="cpu")
    assert (
        same.class_names == LABELS and "replace" not in caplog.text and "asked" not in caplog.text
    )
    swapped = [LABELS[1], LABELS[0], LABELS[2]]
    with caplog.at_level(logging.WARNING, logger="fastast_pl"):
        c = AudioClassifier.from_pretrained(
            tmp_path / "hf", class_names=swapped, multi_label=True, device="cpu"
        )
    assert c.class_names == swapped and c.multi_label  # used as asked
    assert (
        f"the class names given replace those the checkpoint records (3 given, 3 recorded; "
        f"first difference at class 0: {LABELS[1]!r} given, {LABELS[0]!r} recorded)"
    ) in caplog.text
    assert (
        "scored as multi-label as asked, but the checkpoint records a single-label model"
        in caplog.text
    )
