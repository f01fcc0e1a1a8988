"""What every CLI run logs beyond its config: W&B under ``wandb agent``, merge stats, the LR.

``wandb agent`` starts each trial as a plain command with ``WANDB_SWEEP_ID``, ``WANDB_RUN_ID``
and ``WANDB_SWEEP_PARAM_PATH`` (the trial's parameters) in its environment; ``wandb.init``
reads them and opens the run the controller created, with the swept parameters as its config.
Our recipes configure no W&B logger (a laptop run should not need an account), so under the
agent a ``WandbLogger`` is added here; without the agent the loggers are what the config says.
Its metrics (``val/acc``, ...) are what the sweep controller optimises. Beside the W&B run a
Lightning ``CSVLogger`` writes ``<save_dir>/wandb/csv-<run id>/`` (``metrics.csv``, and the
swept parameters in ``hparams.yaml``), so ``python -m fastast_pl report`` reads every agent
run from documented files, offline runs too, without reading W&B's own run files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

from fastast_pl.trainer.merge_stats import MergeStatsLogger

# Set by `wandb agent` for each run it starts (wandb/wandb_agent.py, wandb/env.py).
SWEEP_ID, RUN_ID, PARAM_PATH = "WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH"


@dataclass(frozen=True)
class AgentRun:
    """The W&B run the agent created for this process."""

    sweep_id: str
    run_id: str | None
    param_path: str | None
    wandb_dir: str | None


def agent_run(environ: Mapping[str, str] | None = None) -> AgentRun | None:
    """The agent's run when this process was started by ``wandb agent``, else None."""
    env = os.environ if environ is None else environ
    if not env.get(SWEEP_ID):
        return None
    return AgentRun(env[SWEEP_ID], env.get(RUN_ID), env.get(PARAM_PATH), env.get("WANDB_DIR"))


def agent_loggers(
    run: AgentRun, default_root_dir: str | os.PathLike, configured: list[Logger]
) -> list[Logger]:
    """The loggers the agent's run needs beyond `configured`: a WandbLogger that opens the
    agent's run, unless one is configured (wandb.init takes id, sweep and config from the
    environment; project/entity from WANDB_PROJECT/WANDB_ENTITY the agent set), and a
    CSVLogger beside it holding the swept parameters (the agent's parameter file)."""
    save_dir = Path(run.wandb_dir or default_root_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    added: list[Logger] = []
    if not any(isinstance(lg, WandbLogger) for lg in configured):
        added.append(WandbLogger(save_dir=str(save_dir), id=run.run_id))
    return [*added, CSVLogger(save_dir, name="wandb", version=f"csv-{run.run_id}")]


class LogSweptParams(L.Callback):
    """Writes the agent's swept parameters into the hyperparameters of the CSVLogger beside
    the W&B run when the run starts (after the CLI's check that its directory is fresh)."""

    def __init__(self, logger: CSVLogger, params: dict[str, object]) -> None:
        self.logger, self.params = logger, params

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.logger.log_hyperparams(self.params)


def swept_params(param_path: str | None) -> dict[str, object]:
    """``{key: value}`` of the agent's parameter file (W&B's config-defaults.yaml format:
    ``wandb_version: 1`` and ``key: {value: ...}``); empty without one."""
    if not param_path or not Path(param_path).is_file():
        return {}
    doc = yaml.safe_load(Path(param_path).read_text()) or {}
    return {k: v["value"] for k, v in doc.items() if isinstance(v, dict) and "value" in v}


def add_run_logging(trainer: L.Trainer) -> L.Trainer:
    """Attach the agent's W&B and CSV loggers (under ``wandb agent``, those not configured),
    the merge-stats callback and a LearningRateMonitor (when something logs and none is)."""
    run = agent_run()
    callbacks = trainer.callbacks
    if run is not None:
        added = agent_loggers(run, trainer.default_root_dir, trainer.loggers)
        trainer.loggers = [*trainer.loggers, *added]
        callbacks.append(LogSweptParams(added[-1], swept_params(run.param_path)))
    if not any(isinstance(cb, MergeStatsLogger) for cb in callbacks):
        callbacks.append(MergeStatsLogger())
    if trainer.loggers and not any(isinstance(cb, LearningRateMonitor) for cb in callbacks):
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return trainer
