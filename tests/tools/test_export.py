"""`export`: ONNX (through onnxruntime) and torch.export programs equal the eager model,
merged or not, at batch sizes other than the example's; the sidecar documents the input."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from fastast_pl.cli import main
from fastast_pl.models.ast import ASTModel

from helpers.hf_tiny import FRAMES, LABELS, MEAN, MELS, save_tiny_hf_ast


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tiny"
    save_tiny_hf_ast(path)
    return path


def _inputs() -> torch.Tensor:
    fbank = torch.randn(3, FRAMES, MELS, generator=torch.Generator().manual_seed(5))
    fbank[1, 30:] = fbank[1, 30:].mean()  # a constant tail, like a padded clip
    return fbank


@pytest.mark.parametrize("fmt", ["onnx", pytest.param("torch-export", marks=pytest.mark.slow)])
@pytest.mark.parametrize("merge", ["0", "2"])
def test_export_matches_eager(hf_dir, tmp_path, fmt, merge, capsys):
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt2")
    argv = ["export", str(hf_dir), "--format", fmt, "--merge", merge, "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    eager = ASTModel.from_pretrained(hf_dir, merge=int(merge)).eval()
    assert eager.merge_schedule().r == [int(merge)] * 2
    fbank = _inputs()
    with torch.no_grad():
        want = eager(fbank)
        if fmt == "onnx":
            session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(session.run(None, {"fbank": fbank.numpy()})[0])
        else:
            got = torch.export.load(out).module()(fbank)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    meta = json.loads((tmp_path / (out.name + ".json")).read_text())
    assert meta["input"] == {
        "name": "fbank",
        "shape": ["batch", FRAMES, MELS],
        "dtype": "float32",
        "what": meta["input"]["what"],
    }
    assert meta["class_names"] == LABELS and meta["features"]["mean"] == MEAN
    assert meta["merge_r_per_layer"] == [int(merge)] * 2
    # nothing written is replaced without --overwrite
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err


def test_onnx_single_clip_batch(hf_dir, tmp_path):
    out = tmp_path / "m.onnx"
    assert main(["export", str(hf_dir), "--format", "onnx", "--merge", "2", "--out", str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    fbank = _inputs()[1:2]
    with torch.no_grad():
        want = ASTModel.from_pretrained(hf_dir, merge=2).eval()(fbank).numpy()
    np.testing.assert_allclose(session.run(None, {"fbank": fbank.numpy()})[0], want, atol=1e-5)


def test_merged_onnx_declares_shapes_onnxruntime_agrees_with(hf_dir, tmp_path, capfd):
    """No `VerifyOutputSizes` warning (8 per run of a merged export were printed): the merge's
    scatter is one ScatterElements, not torch's rank-0 `If` branches declaring rank 1."""
    import onnx

    out = tmp_path / "m.onnx"
    assert main(["export", str(hf_dir), "--format", "onnx", "--merge", "2", "--out", str(out)]) == 0
    graph = onnx.load(str(out)).graph
    assert not [n.name for n in graph.node if n.op_type == "If"]
    capfd.readouterr()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])  # default log
    for batch in (1, 3):
        session.run(None, {"fbank": _inputs()[:batch].numpy()})
    printed = capfd.readouterr()
    assert "VerifyOutputSizes" not in printed.out + printed.err
