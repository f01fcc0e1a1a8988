"""The distillation study on rendered instruments: fit + test runs through the CLI, one by one.

docs/benchmarks.md, section "Why the teacher's knowledge does or does not transfer", "On
recordings rendered from Debian's sampled instruments", gives the commands and the results.
Every run is ``python -m fastast_pl fit`` then ``test`` on its last epoch (no selection on
validation), run in this process (``build_cli``, as the demo does) and appended as one
JSON line to ``--out``; a run already there is skipped, so the study can be resumed.

    python scripts/render_instruments.py --out data/instruments
    OMP_NUM_THREADS=1 python scripts/kd_study.py teacher teacher --seed 0
    OMP_NUM_THREADS=1 python scripts/kd_study.py student NAME --teacher CKPT --seed 0 [CLI ARGS]

``calibrate NAME --teacher CKPT`` reports a teacher's calibration: its accuracy and mean
max-probability at T = 1, 2, 4 on the training clips (clean, no augmentation) and on the
test clips.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from fastast_pl.cli import build_cli

CONFIGS = Path("experiments/instruments")
DATA = ["--config", str(CONFIGS / "data.yaml")]


def fit_and_test(name: str, config: str, seed: int, extra: list[str], root: Path) -> dict:
    """One fit (last epoch kept) and its test; returns the metrics and the costs."""
    base = [*DATA, "--config", str(CONFIGS / config), *extra, "--seed_everything", str(seed)]
    wall, cpu = time.perf_counter(), time.process_time()
    fit = build_cli(["fit", *base, "--trainer.default_root_dir", str(root / name)]).trainer
    ckpt = fit.checkpoint_callback.best_model_path  # Lightning's default: the last epoch
    train_metrics = {k: float(v) for k, v in fit.callback_metrics.items() if v.numel() == 1}
    test = build_cli(
        [
            "test",
            *base,
            "--ckpt_path",
            ckpt,
            "--trainer.default_root_dir",
            str(root / f"{name}_test"),
        ]
    ).trainer
    metrics = {k: float(v) for k, v in test.callback_metrics.items() if v.numel() == 1}
    return {
        "name": name,
        "seed": seed,
        "args": [config, *extra],
        "checkpoint": ckpt,
        "test": metrics,
        "last_epoch": train_metrics,
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
    }


@torch.no_grad()
def calibration(checkpoint: str) -> dict:
    """The teacher's accuracy and mean max-probability at T = 1, 2, 4 on the training clips
    clean and as training augments them (what the student's KD targets come from), and on
    the test clips."""
    out = {}
    for augmented in (False, True):
        clean = [] if augmented else ["--data.augment.freqm", "0", "--data.augment.timem", "0"]
        cli = build_cli([*DATA, "--config", str(CONFIGS / "teacher.yaml"), *clean], run=False)
        model, data = cli.model, cli.datamodule
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
        model.load_state_dict(state)
        model.eval()
        data.setup("fit")
        data.setup("test")
        loaders = {"train_augmented": data.train_dataloader()}
        if not augmented:
            loaders = {"train": data.train_dataloader(), "test": data.test_dataloader()}
        for split, loader in loaders.items():
            logits, targets = [], []
            for batch in loader:
                logits.append(model(batch["fbank"]))
                targets.append(batch["target"].argmax(-1))
            z, y = torch.cat(logits), torch.cat(targets)
            out[split] = {"acc": float((z.argmax(-1) == y).float().mean())}
            for t in (1, 2, 4):
                out[split][f"max_prob_T{t}"] = float(torch.softmax(z / t, -1).max(-1).values.mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["teacher", "ast", "student", "calibrate"])
    parser.add_argument("name", help="the run's name (its seed is appended)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher", help="the teacher checkpoint (student and calibrate)")
    parser.add_argument("--root", type=Path, default=Path("runs/instruments"))
    parser.add_argument("--out", type=Path, default=Path("runs/instruments/study.jsonl"))
    args, extra = parser.parse_known_args()  # the rest goes to `fit` and `test`
    name = f"{args.name}_s{args.seed}"
    done = [json.loads(x) for x in args.out.read_text().splitlines()] if args.out.exists() else []
    if any(r["name"] == name for r in done):
        print(f"{name}: already in {args.out}, skipped")
        return
    if args.kind == "student":
        if not args.teacher:
            parser.error("student runs need --teacher CKPT")
        extra = ["--model.init_args.teacher_checkpoint", args.teacher, *extra]
    config = {"teacher": "teacher.yaml", "ast": "ast.yaml"}.get(args.kind, "student.yaml")
    torch.set_num_threads(1)
    if args.kind == "calibrate":
        result = {
            "name": name,
            "checkpoint": args.teacher,
            "calibration": calibration(args.teacher),
        }
    else:
        result = fit_and_test(name, config, args.seed, extra, args.root)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as fh:
        fh.write(json.dumps(result) + "\n")
    if "calibration" in result:
        print(json.dumps(result["calibration"]))
        return
    acc = result["test"].get("test/acc")
    print(f"{name}: test/acc {acc} teacher {result['test'].get('test/teacher_acc')} "
          f"({result['wall_s']} s wall, {result['cpu_s']} s CPU)")  # fmt: skip


if __name__ == "__main__":
    main()
