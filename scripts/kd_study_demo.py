"""Why the teacher's knowledge does or does not transfer, on the demo's data.

Trains the demo's CNN teacher and AST once per seed (the demo's own configs and
`fastast_pl.demo.run.run_stage`), then repeats only the recovery stage (the merged AST
fine-tuned from the trained one) over distillation settings: kd_lambda, temperature, KD
form and epochs, with all labels ("all") or 25% of them plus the teacher on every clip
("quarter"). Also prints how soft the teacher is on the training clips at each T.
Results go to <root>/results.jsonl, one line per run (a rerun skips what is there).
docs/benchmarks.md "Why the teacher's knowledge does or does not transfer" gives the figures.

    PYTHONPATH=src python scripts/kd_study_demo.py --seeds 0 1 --root runs/kd_study
    PYTHONPATH=src python scripts/kd_study_demo.py --seeds 0 --recovery-seeds 10 11 \
        --root runs/kd_study --variants quarter:0:1:cmkd:10 quarter:0.5:1:cmkd:10 \
        all:0:1:cmkd:20 all:0.5:1:cmkd:20
"""

from __future__ import annotations

import argparse
import json
import math
from itertools import product
from pathlib import Path

import torch
from rich.console import Console

from fastast_pl.demo.run import CONFIGS, QUARTER, run_stage
from fastast_pl.models.ast import ASTModel
from fastast_pl.tome.flops import plan_schedules

#: The study's grid, "setting:kd_lambda:T:form:epochs"; kd_lambda 0 is the labels-only control.
DEFAULT_VARIANTS = [
    "all:0:1:cmkd:10", "all:0.5:1:cmkd:10", "all:1:1:cmkd:10", "all:0.5:2:hinton:10",
    "all:0.5:4:hinton:10", "all:0.9:4:hinton:10", "all:0:1:cmkd:20", "all:0.5:1:cmkd:20",
    "quarter:0:1:cmkd:10", "quarter:0.5:1:cmkd:10", "quarter:1:1:cmkd:10",
    "quarter:0.5:2:hinton:10", "quarter:0.5:4:cmkd:10", "quarter:0.5:4:hinton:10",
    "quarter:0.9:4:hinton:10", "quarter:0:1:cmkd:20", "quarter:0.5:1:cmkd:20",
]  # fmt: skip
#: The demo's LR decay starts 3 epochs before the end (fastast.yaml: 7 of 10); kept so.
DECAY_TAIL = 3


def parse_variant(text: str) -> tuple:
    """'quarter:0.5:4:hinton:10' -> ('quarter', 0.5, 4.0, 'hinton', 10)."""
    setting, lam, t, form, epochs = text.split(":")
    return setting, float(lam), float(t), form, int(epochs)


def variant_name(variant: tuple) -> str:
    setting, lam, t, form, epochs = variant
    return f"{setting}:{lam:g}:{t:g}:{form}:{epochs}"


def trained_once(console: Console, title: str, args: list[str], root: Path, timings: dict) -> str:
    """The best checkpoint of a run under ``root`` (an earlier invocation's, else trained now)."""
    found = sorted(root.glob("lightning_logs/version_*/checkpoints/epoch=*.ckpt"))
    if found:
        return str(found[-1])
    return run_stage(
        console, title, [*args, "--trainer.default_root_dir", str(root)], timings
    ).best_checkpoint


def teacher_softness(cache_file: Path, temperatures: list[float]) -> dict[str, dict]:
    """Mean max-probability and entropy (nats; ln 8 = 2.08 is uniform over 8 classes) of the
    teacher's softmax at each T, over the training clips its logits cache holds."""
    logits = torch.load(cache_file, weights_only=True)["logits"]  # (N, C)
    out = {}
    for t in temperatures:
        p = torch.softmax(logits / t, dim=-1)  # (N, C)
        entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)  # (N,)
        out[f"{t:g}"] = {"clips": len(p), "mean_max_prob": float(p.max(-1).values.mean()),
                         "mean_entropy_nats": float(entropy.mean()),
                         "uniform_entropy_nats": math.log(p.shape[1])}  # fmt: skip
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--root", type=Path, default=Path("runs/kd_study"))
    p.add_argument("--recovery-seeds", type=int, nargs="*", default=None,
                   help="seeds of the recovery runs only (default: the seed): the same teacher "
                   "and starting AST, another draw of batches and dropout, for the noise")  # fmt: skip
    p.add_argument("--variants", nargs="*", default=None,
                   help="setting:kd_lambda:T:form:epochs ... (default: DEFAULT_VARIANTS)")  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(1)
    grid = [parse_variant(v) for v in args.variants or DEFAULT_VARIANTS]
    console, timings = Console(width=150), {}
    results_file = args.root / "results.jsonl"
    done = set()
    if results_file.is_file():
        done = {(r["seed"], r.get("recovery_seed", r["seed"]), r["variant"])
                for r in map(json.loads, results_file.open())}  # fmt: skip
    data = ["--config", str(CONFIGS / "data.yaml"), "--data.loader.num_workers", "0"]
    for seed in args.seeds:
        root = args.root / f"seed{seed}"
        base = [*data, "--seed_everything", str(seed)]
        teacher = trained_once(console, f"seed {seed}: teacher", ["fit", *base[:4], "--config",
                               str(CONFIGS / "teacher.yaml"), *base[4:]], root / "teacher", timings)  # fmt: skip
        ast = trained_once(console, f"seed {seed}: AST", ["fit", *base[:4], "--config",
                           str(CONFIGS / "ast.yaml"), *base[4:]], root / "ast", timings)  # fmt: skip
        trained = ASTModel.from_pretrained(ast)
        merge = plan_schedules([1.5, 2.0], trained.num_tokens, trained.depth,
                               trained.num_prefix_tokens, trained.embed_dim,
                               trained.arch.mlp_ratio)[-1].spec  # fmt: skip
        for variant, recovery_seed in product(grid, args.recovery_seeds or [seed]):
            name = variant_name(variant)
            if (seed, recovery_seed, name) in done:
                continue
            setting, lam, t, form, epochs = variant
            run_dir = root / name.replace(":", "_")
            if recovery_seed != seed:
                run_dir = run_dir.with_name(f"{run_dir.name}_rs{recovery_seed}")
            model = ["--config", str(CONFIGS / "fastast.yaml"), "--seed_everything", str(recovery_seed),
                     "--model.init_args.merge", str(merge),
                     "--model.init_args.teacher_checkpoint", teacher,
                     "--model.init_args.kd_lambda", str(lam),
                     "--model.init_args.kd_temperature", str(t),
                     "--model.init_args.kd_form", form,
                     "--trainer.max_epochs", str(epochs),
                     "--model.init_args.optim.decay_start_epoch", str(epochs - DECAY_TAIL)]  # fmt: skip
            if setting == "quarter":
                model += ["--data.unlabeled.labeled_fraction", str(QUARTER)]
            fit = run_stage(console, f"seed {seed}: fit {name}", ["fit", *base[:4], *model,
                            "--model.init_args.init_from", ast,
                            "--trainer.default_root_dir", str(run_dir)], timings)  # fmt: skip
            test = run_stage(console, f"seed {seed}: test {name}", ["test", *base[:4], *model,
                             "--ckpt_path", fit.best_checkpoint,
                             "--trainer.default_root_dir", str(run_dir / "test")], timings)  # fmt: skip
            row = {"seed": seed, "recovery_seed": recovery_seed, "variant": name, "merge": merge,
                   "test_acc": test.metrics.get("test/acc"),
                   "teacher_test_acc": test.metrics.get("test/teacher_acc"),
                   "last_val_acc": fit.metrics.get("val/acc"), "best_checkpoint": fit.best_checkpoint,
                   "fit_wall_s": fit.wall_s, "fit_cpu_s": fit.cpu_s}  # fmt: skip
            with results_file.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            console.print(row)
        cache = Path(teacher).parent / "teacher_logits" / "teacher_logits_train.pt"
        if cache.is_file():
            softness = teacher_softness(cache, [1.0, 2.0, 4.0])
            (root / "teacher_softness.json").write_text(json.dumps(softness, indent=2) + "\n")
            console.print({"seed": seed, "teacher softness on training clips": softness})


if __name__ == "__main__":
    main()
