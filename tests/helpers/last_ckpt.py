"""Does a config keep `last.ckpt` current every epoch? A check for any config's callbacks.

Lightning 2.6 refreshes ``last.ckpt`` only when the ``ModelCheckpoint`` with ``save_last``
saved a checkpoint in that step; a monitored one saves only on improvement, so a run whose
validation score stopped improving leaves a stale ``last.ckpt`` and ``--ckpt_path last``
restarts from an old epoch. Every epoch needs an unmonitored one with ``save_last``.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import yaml

from fastast_pl import cli

EXP = Path(__file__).resolve().parents[2] / "experiments"


def composed_callbacks(*names: str) -> list[dict]:
    """The ``trainer.callbacks`` of ``experiments/<name>.yaml`` files composed in this order."""
    argv = ["fit"]
    for name in names:
        argv += ["--config", str(EXP / f"{name}.yaml")]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        cli.main([*argv, "--print_config"])
    return yaml.safe_load(out.getvalue())["trainer"]["callbacks"] or []


def last_ckpt_problems(callbacks: list[dict]) -> list[str]:
    """Why ``callbacks`` would leave ``last.ckpt`` stale; empty when it is saved every epoch."""
    checkpoints = [
        cb for cb in callbacks if str(cb.get("class_path", "")).endswith("ModelCheckpoint")
    ]
    every_epoch = []
    problems = []
    for cb in checkpoints:
        args = cb.get("init_args") or {}
        if not args.get("save_last"):
            continue
        stale = []
        if args.get("monitor") is not None:
            stale.append(f"monitor={args['monitor']!r} (saves only on improvement)")
        if (args.get("every_n_epochs") or 1) != 1:
            stale.append(f"every_n_epochs={args['every_n_epochs']}")
        if args.get("every_n_train_steps") or args.get("train_time_interval"):
            stale.append("saves on steps/time, not epochs")
        if stale:
            problems.append(f"ModelCheckpoint with save_last and {', '.join(stale)}")
        else:
            every_epoch.append(cb)
    if not every_epoch:
        problems.append(
            "no ModelCheckpoint(monitor=None, save_last=True) saving every epoch: last.ckpt "
            "is refreshed only when a save_last callback saves"
        )
    return [] if every_epoch else problems
