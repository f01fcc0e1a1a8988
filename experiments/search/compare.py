"""Learned schedule vs constant r vs a 12-trial Optuna per-layer sweep, at one FLOP target.

    PYTHONPATH=src python experiments/search/compare.py --checkpoint CKPT \
        --config experiments/demo/data.yaml --flops 0.5 --out runs/search/demo.json

All three on the same frozen checkpoint, same FLOP target (analytic, ``tome.flops``), no
training. Learned: ``tome.search.search_schedule`` on unaugmented training clips (what
``search-schedule`` runs). Constant r: ``schedule_for_flops_reduction`` (no search). Optuna:
TPE over one weight per layer in [0, 1] (the shape of ``experiments/sweeps/
esc50_eval_flop_budget.yaml``), each turned into r per layer at the target by the same
planner (``weights=``), scored by validation accuracy; the best trial's test accuracy is
reported (choosing on test would flatter it). Optuna is called directly here while the
sweep tool is being moved onto it. Every accuracy is top-1 over the whole test split.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import optuna
import torch

from fastast_pl.tome.flops import flops_ratio, schedule_for_flops_reduction
from fastast_pl.tome.search import search_schedule
from fastast_pl.tools.common import build_datamodule
from fastast_pl.tools.search_schedule import load_frozen_ast, search_inputs


def split_batches(datamodule, split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    return [(b["fbank"], b["target"]) for b in loader]


@torch.no_grad()
def accuracy(model, batches, schedule) -> float:
    model.set_merge(list(schedule))
    model.eval()
    right = total = 0
    for fbank, target in batches:
        pred = model(fbank).argmax(-1)
        right += (
            int((pred == target.argmax(-1)).sum())
            if target.ndim == 2
            else int((pred == target).sum())
        )
        total += len(pred)
    model.set_merge(0)
    return right / total


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--config", action="append", required=True)
    p.add_argument("--flops", type=float, default=0.5)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    inputs, multi_label, features = search_inputs(args.config, args.clips, 16)
    model = load_frozen_ast(args.checkpoint, features)
    datamodule = build_datamodule(args.config)
    datamodule.setup("fit")
    datamodule.setup("test")
    test, val = split_batches(datamodule, "test"), split_batches(datamodule, "val")
    n, depth, prefix, dim = model.num_tokens, model.depth, model.num_prefix_tokens, model.embed_dim

    def fraction(schedule) -> float:
        return 1.0 / flops_ratio(model.merge_schedule(list(schedule)), dim, model.arch.mlp_ratio)

    rows = {"unmerged": {"schedule": [0] * depth, "seconds": 0.0}}
    start = time.perf_counter()
    learned = search_schedule(
        model,
        inputs,
        args.flops,
        args.steps,
        multi_label=multi_label,
        prop_attn=model.prop_attn,
        seed=args.seed,
    )
    rows["learned"] = {
        "schedule": learned.schedule,
        "seconds": time.perf_counter() - start,
        "start": learned.start_schedule,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".learned.json").write_text(json.dumps(rows["learned"]) + "\n")
    start = time.perf_counter()
    r = schedule_for_flops_reduction(1 / args.flops, n, depth, prefix, dim)
    rows["constant r"] = {"schedule": [int(r)] * depth, "seconds": time.perf_counter() - start}

    start = time.perf_counter()
    sampler = optuna.samplers.TPESampler(seed=args.seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        weights = [trial.suggest_float(f"w{layer}", 0.0, 1.0) for layer in range(depth)]
        try:
            schedule = schedule_for_flops_reduction(
                1 / args.flops, n, depth, prefix, dim, weights=weights
            )
        except ValueError as err:  # a shape that cannot reach the target: a spent trial
            raise optuna.TrialPruned(str(err)) from err
        trial.set_user_attr("schedule", list(schedule))
        return accuracy(model, val, schedule)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=args.trials)
    best = study.best_trial
    rows[f"Optuna best of {args.trials}"] = {
        "schedule": best.user_attrs["schedule"],
        "seconds": time.perf_counter() - start,
        "unreachable_trials": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "val_acc": best.value,
    }
    for row in rows.values():
        row["test_acc"] = accuracy(model, test, row["schedule"])
        row["flops_fraction"] = fraction(row["schedule"])
    record = {
        "checkpoint": args.checkpoint,
        "config": args.config,
        "target": args.flops,
        "tokens": n,
        "depth": depth,
        "dim": dim,
        "test_clips": sum(len(b[0]) for b in test),
        "steps": args.steps,
        "clips": args.clips,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    for name, row in rows.items():
        print(
            f"{name:>20}: test acc {row['test_acc']:.4f}  FLOPs {row['flops_fraction']:.4f}  "
            f"{row['seconds']:.0f} s  r {row['schedule']}"
        )


if __name__ == "__main__":
    main()
