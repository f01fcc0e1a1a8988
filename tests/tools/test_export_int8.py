"""`export --quantize int8`: a tiny model trained for a few steps, exported merged with int8
linear layers, run in onnxruntime on the windows of real WAV clips, agrees with the eager
float32 model on top-1; the sidecar reports what the test measures itself."""

import json

import onnx
import onnxruntime as ort
import pytest
import torch

from fastast_pl.cli import build_cli, main
from fastast_pl.data.audio import load_audio
from fastast_pl.inference import AudioClassifier

from helpers.tiny_run import tiny_args


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-layer, 32-wide AST fitted for 40 steps on 3 synthetic classes; its test WAVs."""
    tmp = tmp_path_factory.mktemp("int8")
    args = [
        "fit",
        *tiny_args(tmp / "synthetic", tmp / "runs"),
        "--data.source.init_args.generator.clips_per_class",
        "20",
        "--data.loader.batch_size",
        "8",
        "--trainer.max_steps",
        "40",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.logger",
        "false",
    ]
    cli = build_cli(args)
    ckpt = tmp / "tiny.ckpt"
    cli.trainer.save_checkpoint(ckpt)
    clips = sorted((tmp / "synthetic").rglob("*.wav"))
    assert len(clips) == 60
    return ckpt, clips


def test_int8_export_agrees_with_float32_in_onnxruntime(trained, tmp_path, capsys):
    ckpt, clips = trained
    out = tmp_path / "tiny.int8.onnx"
    argv = [
        "export",
        str(ckpt),
        "--format",
        "onnx",
        "--merge",
        "4",
        "--quantize",
        "int8",
        "--check-audio",
        *map(str, clips),
        "--out",
        str(out),
    ]
    assert main(argv) == 0, capsys.readouterr()
    printed = capsys.readouterr().out
    assert "top-1 agreement" in printed

    classifier = AudioClassifier.from_pretrained(ckpt, merge=4, device="cpu")
    assert classifier.model.merge_schedule().r == [4, 4]
    cfg = classifier.features
    windows = torch.cat(
        [classifier.windows(load_audio(c, cfg.sample_rate, cfg.frame_length)) for c in clips]
    )  # (60, T, F): one window per 0.5 s clip
    with torch.no_grad():
        want = classifier.model(windows)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"fbank": windows.numpy()})[0])
    agreement = float((got.argmax(-1) == want.argmax(-1)).float().mean())
    assert agreement >= 0.99
    # int8 really changed the weights of the linear layers (not a float32 copy) ...
    ops = {node.op_type for node in onnx.load(str(out)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops, ops
    diff = float((got - want).abs().max())
    assert diff > 0
    # ... and the sidecar reports the same figures
    meta = json.loads((tmp_path / (out.name + ".json")).read_text())
    assert meta["quantize"] == "int8"
    audio = meta["parity_vs_eager_fp32"]["audio"]
    assert audio["windows"] == len(windows)
    assert audio["top1_agreement"] == pytest.approx(agreement)
    assert audio["max_abs_diff"] == pytest.approx(diff, rel=1e-3)


def test_int8_needs_onnx_and_real_clips(trained, tmp_path, capsys):
    ckpt, clips = trained
    base = ["export", str(ckpt), "--quantize", "int8", "--out", str(tmp_path / "m")]
    assert main([*base, "--format", "onnx"]) == 2
    assert "--check-audio" in capsys.readouterr().err
    assert main([*base, "--format", "torch-export", "--check-audio", str(clips[0])]) == 2
    assert "--format onnx" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_classifier_int8_agrees_with_float32(trained, tmp_path):
    ckpt, clips = trained
    float32 = AudioClassifier.from_pretrained(ckpt, merge=4, device="cpu")
    int8 = AudioClassifier.from_pretrained(ckpt, merge=4, quantize="int8")
    assert int8.device.type == "cpu" and int8.quantize == "int8"
    want = float32.predict([str(c) for c in clips], top_k=1)
    got = int8.predict([str(c) for c in clips], top_k=1)
    same = [w.top_k[0].index == g.top_k[0].index for w, g in zip(want, got)]
    assert sum(same) / len(same) >= 0.99
    assert not all(torch.equal(w.scores, g.scores) for w, g in zip(want, got))  # int8 ran
    with pytest.raises(ValueError, match="CPU"):
        AudioClassifier(float32.model, float32.features, device="meta", quantize="int8")
    out = tmp_path / "int8.csv"
    assert (
        main(["classify", str(ckpt), str(clips[0]), "--quantize", "int8", "--out", str(out)]) == 0
    )
    assert out.read_text().count("\n") == 2
