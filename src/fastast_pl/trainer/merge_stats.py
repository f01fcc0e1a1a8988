"""Log what a run's merge schedule costs: r and tokens per layer, analytic GFLOPs, FLOP ratio, LR.

A sweep dashboard (W&B or ``report``) can only compare schedules by numbers the runs logged;
the LightningModules log accuracy and throughput, this callback adds the machine-independent
side. At fit start it logs the training schedule and the optimiser's learning rate; at
validate/test/predict start (outside fit) the evaluation schedule. Everything goes through
``trainer.loggers`` (hyperparameters, a metric row, and a W&B table where a WandbLogger is
attached), never ``wandb.log`` directly.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from fastast_pl.tome.flops import vit_flops
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
        "flop_ratio": unmerged / merged,
    }


class MergeStatsLogger(L.Callback):
    """Logs the schedules as ``merge/<train|eval>/*`` hyperparameters and the evaluation
    schedule's ``<stage>/gflops_per_clip``, ``<stage>/gflops_unmerged`` and ``<stage>/flop_ratio``
    metrics (``val/`` during fit), so each accuracy has its analytic cost next to it."""

    def __init__(self) -> None:
        self.logged: dict[str, dict[str, Any]] = {}

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        specs = module_schedules(pl_module)
        if specs is None or not trainer.loggers:
            return
        model = pl_module.model
        which = ("train", "eval") if stage == "fit" else ("eval",)
        stats = {
            w: schedule_stats(model.merge_schedule(specs[w]), model.embed_dim, model.arch.mlp_ratio)
            for w in which
        }
        hparams = {f"merge/{w}/{k}": v for w in which for k, v in stats[w].items()}
        if stage == "fit" and trainer.optimizers:
            group = trainer.optimizers[0].param_groups[0]
            hparams["lr/initial"] = float(group.get("initial_lr", group["lr"]))
        # metrics sit next to the accuracy of the stage that runs the eval schedule
        prefix = "val" if stage == "fit" else stage
        keys = ("gflops_per_clip", "gflops_unmerged", "flop_ratio")
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
