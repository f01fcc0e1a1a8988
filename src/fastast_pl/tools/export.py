"""`python -m fastast_pl export`: a checkpoint as an ONNX file or a torch.export program.

The exported model takes a normalised fbank ``(B, T, F)`` float32 (input ``fbank``, B free)
and returns logits ``(B, C)`` (output ``logits``); the fbank recipe, class names, label
kind and merge schedule go into a sidecar JSON beside it (``<out>.json``). Token Merging
exports: its data dependence is only through which tokens merge, with a fixed r per layer.
The tool checks the exported model against the eager one on random input before it ends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from fastast_pl.tools.classify import parse_merge
from fastast_pl.tools.common import USER_ERRORS, ToolError, fail
from fastast_pl.utils.io import atomic_write

PROG = "python -m fastast_pl export"
FORMATS = ("onnx", "torch-export")
ONNX_OPSET = 17


def sidecar_path(out: Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    return out.with_name(out.name + ".json")


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


def export_onnx(model: torch.nn.Module, example: torch.Tensor, out: Path) -> None:
    """ONNX (opset 17) with a free batch axis, written atomically."""
    with atomic_write(out, "wb") as fh, warnings.catch_warnings(), _stable_argsort_as_topk():
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


def export_program(model: torch.nn.Module, example: torch.Tensor, out: Path) -> None:
    """``torch.export`` program (``torch.export.load(out).module()``) with a free batch."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(model, (example,), dynamic_shapes={"fbank": {0: batch}})
    with atomic_write(out, "wb") as fh:
        torch.export.save(program, fh)


def run_exported(fmt: str, out: Path, fbank: torch.Tensor) -> torch.Tensor:
    """Logits of the exported file on ``fbank`` (onnxruntime, or the loaded program)."""
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # no shape-inference chatter for merged sizes
        session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(["logits"], {"fbank": fbank.numpy()})[0])
    return torch.export.load(out).module()(fbank)


def sidecar(model: Any, info: Any, fmt: str, checkpoint: str) -> dict[str, Any]:
    """What a user of the exported file needs besides it."""
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
        "features": info.features,
        "class_names": info.class_names,
        "multi_label": info.multi_label,
        "merge_r_per_layer": model.merge_schedule().r,
        "missing": info.missing,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Export a checkpoint (optionally with Token Merging) as ONNX or a "
        "torch.export program taking a normalised fbank (B, T, F) float32 and returning "
        "logits (B, C); a sidecar <out>.json holds the feature settings and class names.",
        epilog=f"example: {PROG} runs/esc50/best.ckpt --format onnx --merge 8 --out ast.onnx",
    )
    p.add_argument("checkpoint", help="checkpoint file or directory, or a HF hub model id")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--merge", metavar="SCHEDULE", help="8, 8,8,4,0 or JSON (default: its own)")
    p.add_argument("--out", type=Path, required=True, help="file to write (.onnx / .pt2)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--atol", type=float, default=1e-4, help="parity tolerance vs eager (1e-4)")
    return p


def main(argv: list[str] | None = None) -> int:
    """`python -m fastast_pl export CHECKPOINT --format onnx|torch-export --out FILE`."""
    args = _parser().parse_args(argv)
    try:
        from fastast_pl.models.ast import ASTModel
        from fastast_pl.models.checkpoints import read_inference_info, resolve_source

        for path in (args.out, sidecar_path(args.out)):
            if path.exists() and not args.overwrite:
                raise ToolError(f"{path} exists; pass --overwrite to replace it")
        local = resolve_source(args.checkpoint)
        info = read_inference_info(local)
        merge = parse_merge(args.merge)
        merge = merge if merge is not None else (info.merge if info.merge is not None else 0)
        model = ASTModel.from_pretrained(local, merge=merge).eval()
        generator = torch.Generator().manual_seed(0)
        example = torch.randn(2, model.input_tdim, model.input_fdim, generator=generator)
        with torch.no_grad():
            (export_onnx if args.format == "onnx" else export_program)(model, example, args.out)
            check = torch.randn(3, model.input_tdim, model.input_fdim, generator=generator)
            diff = float((run_exported(args.format, args.out, check) - model(check)).abs().max())
    except USER_ERRORS as err:
        return fail(PROG, err)
    if not diff <= args.atol:
        print(f"{PROG}: error: exported model differs from eager by {diff:.3g}", flush=True)
        return 1
    with atomic_write(sidecar_path(args.out), "w") as fh:
        json.dump(sidecar(model, info, args.format, str(args.checkpoint)), fh, indent=2)
    print(
        f"{args.format} -> {args.out} (+ {sidecar_path(args.out).name}); merge r per layer "
        f"{model.merge_schedule().r}; max |exported - eager| = {diff:.2e} on 3 random inputs"
    )
    return 0
