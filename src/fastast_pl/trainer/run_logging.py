"""What every CLI run logs beyond its config: W&B under ``wandb agent``, merge stats, the LR.

``wandb agent`` starts each trial as a plain command with ``WANDB_SWEEP_ID``, ``WANDB_RUN_ID``
and ``WANDB_SWEEP_PARAM_PATH`` (the trial's parameters) in its environment; ``wandb.init``
reads them and opens the run the controller created, with the swept parameters as its config.
Our recipes configure no W&B logger (a laptop run should not need an account), so under the
agent a ``WandbLogger`` is added here; without the agent the loggers are what the config says.
Its metrics (``val/acc``, ...) are what the sweep controller optimises.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import WandbLogger

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


def agent_logger(run: AgentRun, default_root_dir: str | os.PathLike) -> WandbLogger:
    """A WandbLogger that opens the agent's run (wandb.init takes id, sweep and config from
    the environment; project/entity come from WANDB_PROJECT/WANDB_ENTITY the agent set)."""
    save_dir = Path(run.wandb_dir or default_root_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    return WandbLogger(save_dir=str(save_dir), id=run.run_id)


def add_run_logging(trainer: L.Trainer) -> L.Trainer:
    """Attach the agent's W&B logger (if any and none is configured), the merge-stats
    callback and a LearningRateMonitor (when something logs and none is configured)."""
    run = agent_run()
    if run is not None and not any(isinstance(lg, WandbLogger) for lg in trainer.loggers):
        trainer.loggers = [*trainer.loggers, agent_logger(run, trainer.default_root_dir)]
    callbacks = trainer.callbacks
    if not any(isinstance(cb, MergeStatsLogger) for cb in callbacks):
        callbacks.append(MergeStatsLogger())
    if trainer.loggers and not any(isinstance(cb, LearningRateMonitor) for cb in callbacks):
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return trainer
