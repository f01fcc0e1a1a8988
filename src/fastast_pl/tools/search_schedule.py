"""`python -m fastast_pl search-schedule`: a FLOP budget in, r per layer out (``tome.search``).

The checkpoint's AST is frozen; a learnable rate per layer is fitted so that the merged
model's outputs stay close to the unmerged model's own on unaugmented training clips of the
config's data, at the asked fraction of the blocks' analytic FLOPs. The schedule is
printed, written as a YAML snippet (``eval_merge:``/``merge:``) and a JSON record, and
optionally stored into a copy of a fastast-pl checkpoint (its inference metadata and
``eval_merge``), so that ``test``, ``classify`` and ``export`` use it without options.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from fastast_pl.models.ast import ASTModel
from fastast_pl.models.checkpoints import read_inference_info
from fastast_pl.models.checkpoints.record import store_eval_schedule
from fastast_pl.tome.search import SearchResult, SearchStep, search_schedule
from fastast_pl.tools.common import USER_ERRORS, ToolError, build_datamodule, fail

PROG = "python -m fastast_pl search-schedule"


def search_inputs(configs: list[str], clips: int, batch_size: int) -> tuple[list, bool, dict]:
    """Unaugmented, normalised training fbanks ``(B, T, F)`` of the configs' data, ``clips`` of
    them spread evenly over the split; with the label kind and the feature settings."""
    datamodule = build_datamodule(configs)
    dataset = datamodule.stats_dataset()  # training clips, no dither, no augmentation
    n = len(dataset)
    picked = [int(i * n / clips) for i in range(min(clips, n))]
    fbanks = torch.stack([dataset[i]["fbank"] for i in picked])  # (clips, T, F)
    batches = list(fbanks.split(batch_size))
    return batches, bool(datamodule.multi_label), datamodule.features.to_dict()


def load_frozen_ast(checkpoint: str, features: dict) -> ASTModel:
    """The checkpoint's AST without merging; its input size must be the data's."""
    stored = read_inference_info(checkpoint).features or {}
    for key in ("target_length", "num_mel_bins"):
        if key in stored and int(stored[key]) != int(features[key]):
            raise ToolError(
                f"{checkpoint} was trained with features.{key}={stored[key]}, the config's "
                f"data.features.{key} is {features[key]}: search on the data it was trained on"
            )
    return ASTModel.from_pretrained(
        checkpoint,
        input_tdim=int(features["target_length"]),
        input_fdim=int(features["num_mel_bins"]),
        merge=0,
        eval_merge=0,
    )


def yaml_snippet(result: SearchResult, command: str) -> str:
    """The schedule as a config snippet for ``model.init_args``."""
    r = ", ".join(str(v) for v in result.schedule)
    return (
        f"# {command}\n"
        f"# {result.flops_fraction:.3f}x the blocks' analytic FLOPs of the unmerged model "
        f"(target {result.target}); {result.num_tokens} tokens in\n"
        "model:\n"
        "  init_args:\n"
        f"    eval_merge: [{r}]   # evaluate with it; `merge: [...]` trains with it\n"
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Learn Token Merging's r per layer for a FLOP budget with the AST frozen "
        "(a differentiable relaxation of r after DiffRate, Chen et al., ICCV 2023), by "
        "distillation from the unmerged model's own outputs on unaugmented training clips.",
        epilog=f"example: {PROG} --checkpoint runs/demo/ast/best.ckpt --config "
        "experiments/demo/data.yaml --flops 0.5 --out runs/demo/search",
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH|HUB_ID",
        help="fastast-pl .ckpt, HF AST directory or hub id, official AST .pth",
    )
    p.add_argument(
        "--config",
        action="append",
        required=True,
        metavar="FILE",
        help="config file(s) whose data: section gives the clips and features",
    )
    p.add_argument(
        "--flops",
        type=float,
        required=True,
        help="target: fraction of the unmerged blocks' FLOPs (0.5 = half)",
    )
    p.add_argument("--steps", type=int, default=200, help="gradient steps (default 200)")
    p.add_argument("--clips", type=int, default=256, help="training clips used (default 256)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per step (default 16)")
    p.add_argument("--lr", type=float, default=0.1, help="Adam step on the rate logits")
    p.add_argument(
        "--flops-weight",
        type=float,
        default=20.0,
        help="weight of (E[FLOPs]/target - 1)^2 in the loss (default 20)",
    )
    p.add_argument("--seed", type=int, default=0, help="order of the batches")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("schedule_search"),
        help="folder for schedule.yaml, schedule.json, search_log.csv",
    )
    p.add_argument(
        "--save-checkpoint",
        type=Path,
        metavar="PATH",
        help="also write a copy of the .ckpt that carries the schedule",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the search; 0 on success, 2 with a one-line message on a user error."""
    p = _parser()
    args = p.parse_args(argv)
    try:
        torch.manual_seed(args.seed)
        batches, multi_label, features = search_inputs(args.config, args.clips, args.batch_size)
        model = load_frozen_ast(args.checkpoint, features)
        result, seconds = _run(model, batches, multi_label, args)
        args.out.mkdir(parents=True, exist_ok=True)
        command = f"{PROG} " + " ".join(argv if argv is not None else [])
        (args.out / "schedule.yaml").write_text(yaml_snippet(result, command))
        _write_json(args.out / "schedule.json", result, args, seconds)
        _write_log(args.out / "search_log.csv", result.history)
        if args.save_checkpoint is not None:
            store_eval_schedule(args.checkpoint, args.save_checkpoint, result.schedule)
    except USER_ERRORS as err:
        return fail(p.prog, err)
    print(f"r per layer: {result.schedule}")
    print(
        f"analytic FLOPs: {result.flops_fraction:.4f}x the unmerged blocks' (target {args.flops})"
    )
    print(f"wrote {args.out / 'schedule.yaml'}, {args.out / 'schedule.json'} in {seconds:.0f} s")
    if args.save_checkpoint is not None:
        print(f"wrote {args.save_checkpoint}")
    return 0


def _run(model: ASTModel, batches: list, multi_label: bool, args) -> tuple[SearchResult, float]:
    start = time.perf_counter()
    columns = (
        TextColumn("search"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as progress:
        task = progress.add_task("search", total=args.steps, info="")

        def on_step(step: SearchStep) -> None:
            info = f"E[FLOPs] {step.flops_fraction:.3f} KD {step.distill_loss:.4f}"
            progress.update(task, advance=1, info=info)

        result = search_schedule(
            model,
            batches,
            args.flops,
            args.steps,
            multi_label=multi_label,
            lr=args.lr,
            flops_weight=args.flops_weight,
            prop_attn=model.prop_attn,
            seed=args.seed,
            on_step=on_step,
        )
    return result, time.perf_counter() - start


def _write_json(path: Path, result: SearchResult, args, seconds: float) -> None:
    record = {
        "schedule": result.schedule,
        "flops_fraction": result.flops_fraction,
        "expected_flops_fraction": result.expected_flops_fraction,
        "target": result.target,
        "start_schedule": result.start_schedule,
        "num_tokens": result.num_tokens,
        "checkpoint": str(args.checkpoint),
        "config": list(args.config),
        "steps": args.steps,
        "clips": args.clips,
        "seed": args.seed,
        "seconds": seconds,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")


def _write_log(path: Path, history: list[SearchStep]) -> None:
    lines = ["step,expected_flops_fraction,distill_loss,loss,temperature,schedule"]
    for s in history:
        r = " ".join(str(v) for v in s.schedule)
        lines.append(
            f"{s.step},{s.flops_fraction:.6f},{s.distill_loss:.6g},{s.loss:.6g},"
            f"{s.temperature:.4g},{r}"
        )
    path.write_text("\n".join(lines) + "\n")
