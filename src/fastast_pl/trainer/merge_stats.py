"""Log what a run's merge schedule costs: r and tokens per layer, GMACs, FLOP ratio, LR.

A sweep dashboard (W&B or ``report``) can only compare schedules by numbers the runs logged;
the LightningModules log accuracy, this callback adds the machine-independent cost and what
``report`` needs to measure the schedule's speed later (``merge/model``:
``speed.schedules.model_spec``, the architecture and input size). At fit start it logs the
training schedule and the optimiser's learning rate; at validate/test/predict start (outside
fit) the evaluation schedule, and prints it once. Everything goes through ``trainer.loggers``
(hyperparameters, a metric row, and a W&B table where a WandbLogger is attached), never
``wandb.log`` directly. Units: GMACs count 1 per multiply-add (fvcore's and the papers'
"FLOPs"), GFLOPs 2 (``tome.flops``).
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from fastast_pl.speed.schedules import model_spec
from fastast_pl.tome.flops import vit_flops, vit_macs
from fastast_pl.tome.schedule import ResolvedSchedule


def module_schedules(pl_module: L.LightningModule) -> dict[str, Any] | None:
    """{"train": spec, "eval": spec} of a module with a merging AST, else None.

    The one place that knows how a module exposes its schedules: its ``model`` (an
    ``ASTModel``) holds ``merge`` (training) and ``eval_merge`` and resolves them with
    ``merge_schedule(spec)``.
    """
    model = getattr(pl_module, "model", None)
    if not callable(getattr(model, "merge_schedule", None)):
        return None
    return {"train": model.merge, "eval": model.eval_merge}


def schedule_stats(schedule: ResolvedSchedule, dim: int, mlp_ratio: float) -> dict[str, Any]:
    """r and tokens per layer, GFLOPs per clip with and without merging, and their ratio."""
    unmerged = vit_flops([schedule.tokens[0]] * len(schedule.tokens), dim, mlp_ratio)
    merged = vit_flops(schedule.tokens, dim, mlp_ratio)
    return {
        "r": list(schedule.r),
        "tokens": list(schedule.tokens),
        "gflops_per_clip": merged / 1e9,
        "gflops_unmerged": unmerged / 1e9,
        "gmacs_per_clip": vit_macs(schedule.tokens, dim, mlp_ratio) / 1e9,
        "flop_ratio": unmerged / merged,
    }


@rank_zero_only
def print_schedule(stage: str, stats: dict[str, Any]) -> None:
    """Say once what an evaluation ran: r and tokens per layer, FLOP ratio, GMACs."""
    print(
        f"[{stage}] evaluation merge schedule: r per layer {stats['r']}, tokens per layer "
        f"{stats['tokens']}; FLOP ratio {stats['flop_ratio']:.2f}x, "
        f"{stats['gmacs_per_clip']:.3g} GMACs per clip in the transformer blocks "
        f"(1 multiply-add = 1 MAC = 2 FLOPs; unmerged {stats['gflops_unmerged'] / 2:.3g})"
    )


class MergeStatsLogger(L.Callback):
    """Logs the schedules as ``merge/<train|eval>/*`` hyperparameters and the evaluation
    schedule's ``<stage>/gflops_per_clip``, ``<stage>/gflops_unmerged``,
    ``<stage>/gmacs_per_clip`` and ``<stage>/flop_ratio`` metrics (``val/`` during fit), so
    each accuracy has its analytic cost next to it."""

    def __init__(self) -> None:
        self.logged: dict[str, dict[str, Any]] = {}

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        specs = module_schedules(pl_module)
        if specs is None:
            return
        model = pl_module.model
        which = ("train", "eval") if stage == "fit" else ("eval",)
        stats = {
            w: schedule_stats(model.merge_schedule(specs[w]), model.embed_dim, model.arch.mlp_ratio)
            for w in which
        }
        hparams = {f"merge/{w}/{k}": v for w in which for k, v in stats[w].items()}
        hparams["merge/model"] = model_spec(model)
        if stage != "fit":
            print_schedule(stage, stats["eval"])
        if stage == "fit" and trainer.optimizers:
            group = trainer.optimizers[0].param_groups[0]
            hparams["lr/initial"] = float(group.get("initial_lr", group["lr"]))
        # metrics sit next to the accuracy of the stage that runs the eval schedule
        prefix = "val" if stage == "fit" else stage
        keys = ("gflops_per_clip", "gflops_unmerged", "gmacs_per_clip", "flop_ratio")
        metrics = {f"{prefix}/{k}": float(stats["eval"][k]) for k in keys}
        for logger in trainer.loggers:
            logger.log_hyperparams(hparams)
            logger.log_metrics(metrics, step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                for w in which:
                    pairs = zip(stats[w]["r"], stats[w]["tokens"])
                    rows = [[layer, r, n] for layer, (r, n) in enumerate(pairs)]
                    logger.log_table(f"merge/{w}/layers", ["layer", "r", "tokens_in"], rows)
        self.logged[stage] = {**hparams, **metrics}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "fit")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "test")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":  # inside fit the training schedule was logged
            self._log(trainer, pl_module, "val")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "predict")
