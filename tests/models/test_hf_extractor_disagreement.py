"""An HF AST directory whose feature extractor feeds another input size than config.json
builds the model for (an edited preprocessor_config.json): HF's own model fails on the
shapes, ours adapts the positional embedding to the extractor's size; the log says so,
naming both files, keys and values."""

import logging

from transformers import ASTFeatureExtractor

from fastast_pl.models.checkpoints import read_inference_info

from helpers.hf_tiny import FRAMES, MEAN, MELS, STD, save_tiny_hf_ast


def test_extractor_length_other_than_the_model_is_warned_about(tmp_path, caplog):
    save_tiny_hf_ast(tmp_path / "hf")
    with caplog.at_level(logging.WARNING, logger="fastast_pl"):
        assert read_inference_info(tmp_path / "hf").features["target_length"] == FRAMES
    assert "builds the model for" not in caplog.text  # the two files agree
    extractor = ASTFeatureExtractor(
        num_mel_bins=MELS, max_length=2 * FRAMES, mean=MEAN, std=STD, sampling_rate=16000
    )
    extractor.save_pretrained(tmp_path / "hf")
    with caplog.at_level(logging.WARNING, logger="fastast_pl"):
        read_inference_info(tmp_path / "hf")
    expected = (
        f"preprocessor_config.json: max_length {2 * FRAMES}, but {tmp_path / 'hf' / 'config.json'} "
        f"builds the model for max_length {FRAMES}"
    )
    assert expected in caplog.text
