"""An ASTModel exported: an ONNX graph (int8 dynamic quantization) or a torch.export program.

The graph takes a normalised fbank ``fbank`` ``(B, T, F)`` float32 (B free) and returns
``logits`` ``(B, C)``. Token Merging exports: its data dependence is only through which
tokens merge, with a fixed r per layer.

int8 is ONNX Runtime's dynamic quantization (``onnxruntime.quantization.quantize_dynamic``):
the weights of the linear layers (ONNX MatMul/Gemm) are stored as int8 and each call
quantizes their inputs on the fly; the patch-embedding convolution, norms, softmax and the
merge stay float32. Chosen over torch.ao's eager dynamic quantization by one interleaved
measurement (``docs/benchmarks.md``, "int8 with merging": slightly faster, merged or not)
and because torch.ao's quantized tensors are deprecated in favour of torchao.
``onnx``/``onnxruntime`` are imported only here and only when used (the ``export`` extra).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from fastast_pl.utils.io import atomic_write, atomic_write_bytes

ONNX_OPSET = 17
#: ONNX operators whose weights int8 quantization stores as int8: the linear layers.
INT8_OPS = ("MatMul", "Gemm")


@contextlib.contextmanager
def _stable_argsort_as_topk() -> Iterator[None]:
    """Export ``argsort(stable=True)`` (ToMe's ranking of merge candidates) as ONNX TopK.

    The TorchScript-based ONNX exporter (the dynamo one needs onnxscript) has no symbolic
    for the stable overload. ONNX TopK with ``sorted=1`` puts equal values in index order,
    which is exactly a stable sort, so the merge decisions do not change. Registered only
    for the duration of one export.
    """
    from torch.onnx import symbolic_helper as sh

    def argsort(g, x, *args):
        dim, descending = args[-2], args[-1]  # (stable, dim, descending) or (dim, descending)
        dim = sh._get_const(dim, "i", "dim")
        descending = sh._get_const(descending, "b", "descending")
        axis = g.op("Constant", value_t=torch.tensor([dim], dtype=torch.int64))
        k = g.op("Gather", g.op("Shape", x), axis, axis_i=0)  # (1,): the whole axis
        _, indices = g.op(
            "TopK", x, k, axis_i=dim, largest_i=int(descending), sorted_i=1, outputs=2
        )
        return indices

    torch.onnx.register_custom_op_symbolic("aten::argsort", argsort, ONNX_OPSET)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::argsort", ONNX_OPSET)


@contextlib.contextmanager
def _scatter_sum_as_one_op() -> Iterator[None]:
    """Export ToMe's ``scatter_reduce(..., reduce="sum")`` as one ONNX ScatterElements.

    torch's own symbolic wraps it in two ``If`` nodes for a rank-0 input whose branches
    reshape to rank 1, so the graph declares the merged tokens ``(-1,)`` where they are
    ``(B, N, D)``: ONNX Runtime then warns (``VerifyOutputSizes``) twice per merging layer
    on every call. The merge's inputs are never rank 0, so the plain op is the same
    computation. Registered only for the duration of one export.
    """
    from torch.onnx import symbolic_helper as sh

    def scatter_reduce(g, x, dim, index, src, reduce, include_self):
        reduce = sh._get_const(reduce, "s", "reduce")
        if reduce != "sum" or not sh._get_const(include_self, "b", "include_self"):
            raise ValueError(f"ONNX export: scatter_reduce {reduce!r} (expected ToMe's 'sum')")
        axis = sh._get_const(dim, "i", "dim")
        return g.op("ScatterElements", x, index, src, axis_i=axis, reduction_s="add")

    torch.onnx.register_custom_op_symbolic("aten::scatter_reduce", scatter_reduce, ONNX_OPSET)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::scatter_reduce", ONNX_OPSET)


def export_onnx(model: torch.nn.Module, example: torch.Tensor, out: Path) -> None:
    """ONNX (opset 17) with a free batch axis, written atomically."""
    with (
        atomic_write(out, "wb") as fh,
        warnings.catch_warnings(),
        _stable_argsort_as_topk(),
        _scatter_sum_as_one_op(),
    ):
        warnings.simplefilter("ignore")  # tracer warnings on shape arithmetic, deprecations
        torch.onnx.export(
            model,
            (example,),
            fh,
            input_names=["fbank"],
            output_names=["logits"],
            dynamic_axes={"fbank": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )


def quantize_int8(src: Path, out: Path) -> None:
    """``src`` (float ONNX) -> ``out`` (written atomically) with int8 weights in its linear
    layers (see the module docstring)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its "consider pre-processing" advice, logged on the root logger
    try:
        with tempfile.TemporaryDirectory(prefix="fastast-int8-") as tmp:
            quantized = Path(tmp) / "model.int8.onnx"
            quantize_dynamic(
                src, quantized, op_types_to_quantize=list(INT8_OPS), weight_type=QuantType.QInt8
            )
            atomic_write_bytes(out, quantized.read_bytes())
    finally:
        root.setLevel(level)


class OnnxModel:
    """An ONNX file run by ONNX Runtime on the CPU, called like the model: fbank -> logits.

    ``threads``: intra-op threads (default: ``torch.get_num_threads()``, so ONNX Runtime
    uses what torch would).
    """

    def __init__(self, path_or_bytes: str | Path | bytes, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        source = path_or_bytes if isinstance(path_or_bytes, bytes) else str(path_or_bytes)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

    def __call__(self, fbank: torch.Tensor) -> torch.Tensor:
        array = fbank.detach().cpu().float().contiguous().numpy()
        return torch.from_numpy(self.session.run(["logits"], {"fbank": array})[0])


def int8_onnx_model(model: torch.nn.Module, input_tdim: int, input_fdim: int) -> OnnxModel:
    """``model`` (eval mode, its merge schedule as set) exported, quantized to int8 and loaded;
    the files live in a temporary folder only while this runs."""
    example = torch.randn(2, input_tdim, input_fdim, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory(prefix="fastast-int8-") as tmp:
        fp32, int8 = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        with torch.no_grad():
            export_onnx(model, example, fp32)
        quantize_int8(fp32, int8)
        return OnnxModel(int8.read_bytes())


def export_program(model: torch.nn.Module, example: torch.Tensor, out: Path) -> None:
    """``torch.export`` program (``torch.export.load(out).module()``) with a free batch."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes={"fbank": {0: batch}})
    with atomic_write(out, "wb") as fh:
        torch.export.save(program, fh)


def run_exported(fmt: str, out: Path, fbank: torch.Tensor) -> torch.Tensor:
    """Logits of the exported file on ``fbank`` (onnxruntime, or the loaded program)."""
    if fmt == "onnx":
        return OnnxModel(out)(fbank)
    return torch.export.load(out).module()(fbank)


def parity(reference: torch.Tensor, exported: torch.Tensor) -> dict[str, float | int]:
    """Top-1 agreement and the largest |logit difference| of two ``(N, C)`` logit tensors."""
    agree = (reference.argmax(dim=-1) == exported.argmax(dim=-1)).float().mean()
    diff = (reference - exported).abs().max()
    return {"windows": len(reference), "top1_agreement": float(agree), "max_abs_diff": float(diff)}


def sidecar_path(out: Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    return out.with_name(out.name + ".json")


def sidecar(
    model: Any,
    info: Any,
    features: dict[str, Any] | None,
    fmt: str,
    checkpoint: str,
    quantize: str | None,
    measured: dict,
) -> dict[str, Any]:
    """What a user of the exported file needs besides it (written as ``sidecar_path(out)``);
    ``features``: the settings the model was exported and checked with; ``measured``: the
    parity against the eager float32 model."""
    return {
        "format": fmt,
        "checkpoint": checkpoint,
        "input": {
            "name": "fbank",
            "shape": ["batch", model.input_tdim, model.input_fdim],
            "dtype": "float32",
            "what": "normalised Kaldi fbank (T frames, F mel bins); see features",
        },
        "output": {"name": "logits", "shape": ["batch", model.num_classes], "dtype": "float32"},
        "features": features,
        "class_names": info.class_names,
        "multi_label": info.multi_label,
        "merge_r_per_layer": model.merge_schedule().r,
        "quantize": quantize,
        "parity_vs_eager_fp32": measured,
        "missing": info.missing,
    }
