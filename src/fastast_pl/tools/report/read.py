"""Runs as the report sees them: local run directories (Lightning's CSVLogger) and the W&B API.

A run directory holds a CSVLogger ``metrics.csv`` (+ ``hparams.yaml``, the CLI's
``config.yaml``, the sweep runner's ``trial.json``). A run under ``wandb agent`` has one
beside its W&B run (``wandb/csv-<run id>/``, with the swept parameters in ``hparams.yaml``;
``trainer/run_logging.py``), so offline W&B runs are read from there; W&B's own run files
are not read. Online runs come from the W&B API (``wandb.Api()``).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_STRIP = ("model.init_args.", "model.", "data.init_args.")


@dataclass
class Run:
    """One finished (or failed) run: final metrics, its config (nested, as saved) and the
    swept parameters (dotted CLI keys) it was started with."""

    name: str
    source: str
    status: str = "finished"
    schedule: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


def last_metrics_csv(path: Path) -> dict[str, float]:
    """Last value of every metric in a Lightning CSVLogger ``metrics.csv``."""
    out: dict[str, float] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if key in ("epoch", "step") or value in ("", None):
                    continue
                try:
                    out[key] = float(value)
                except ValueError:
                    continue
    return out


def epoch_metric_csv(path: Path, key: str) -> dict[int, float]:
    """``{epoch: value}`` of one metric in a CSVLogger ``metrics.csv`` (the last value
    logged in each epoch, e.g. the epoch-end validation)."""
    out: dict[int, float] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            value = row.get(key)
            if value in ("", None) or row.get("epoch") in ("", None):
                continue
            out[int(float(row["epoch"]))] = float(value)
    return out


def _short(name: str) -> str:
    for prefix in _STRIP:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def describe_params(params: dict[str, Any]) -> str:
    """``merge.ratio=0.2 merge.shape=late`` from swept parameters (prefixes dropped)."""
    return " ".join(f"{_short(k)}={v}" for k, v in params.items())


def model_args(config: dict[str, Any]) -> dict[str, Any]:
    """The model's init args of a saved LightningCLI config, or an hparams dict as is."""
    model = config.get("model", config)
    if isinstance(model, dict) and "init_args" in model:
        model = model["init_args"]
    return model if isinstance(model, dict) else {}


def schedule_from_config(config: dict[str, Any]) -> str:
    """``merge=... eval_merge=...`` of a saved LightningCLI config or hparams dict."""
    model = model_args(config)
    merge, eval_merge = model.get("merge"), model.get("eval_merge")
    if merge is None and eval_merge is None:
        return ""
    text = f"merge={json.dumps(merge)}"
    if eval_merge is not None and eval_merge != merge:
        text += f" eval_merge={json.dumps(eval_merge)}"
    return text


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def read_local_run(run_dir: Path) -> Run:
    """A run directory written by the CLI (CSVLogger) or the sweep runner (+ trial.json);
    without a trial.json the swept parameters are those in hparams.yaml (``wandb agent``)."""
    run = Run(name=run_dir.name, source=str(run_dir))
    if (run_dir / "metrics.csv").is_file():
        run.metrics = last_metrics_csv(run_dir / "metrics.csv")
    for name in ("config.yaml", "hparams.yaml"):  # the CLI's config, then logged hparams
        run.config.update(_read_yaml(run_dir / name))
    trial = run_dir / "trial.json"
    if trial.is_file():
        info = json.loads(trial.read_text())
        run.status = str(info.get("status", "finished"))
        run.params = dict(info.get("params") or {})
    else:
        run.params = _swept(run.config)
    run.schedule = describe_params(run.params) or schedule_from_config(run.config)
    return run


def _swept(config: dict[str, Any]) -> dict[str, Any]:
    """The swept schedule keys of a W&B run config (the agent sets them as dotted CLI keys):
    merge schedules, distillation weights and FLOP budgets."""
    return {
        k: v
        for k, v in config.items()
        if k.startswith("merge.") or (k.startswith("model.") and ("merge" in k or "kd_" in k))
    }


def _is_run_dir(path: Path) -> bool:
    return (path / "metrics.csv").is_file() or (path / "trial.json").is_file()


def find_local_runs(root: Path) -> list[Run]:
    """Every run directory at or below `root` (a run's own subdirectories are not searched)."""
    if not root.exists():
        raise FileNotFoundError(f"report: run directory {root} does not exist")
    if _is_run_dir(root):
        return [read_local_run(root)]
    runs: list[Run] = []
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        if here != root and _is_run_dir(here):
            runs.append(read_local_run(here))
            dirnames.clear()
    return runs


def runs_from_wandb(path: str, api: Any = None) -> list[Run]:
    """Runs of ``ENTITY/PROJECT`` or of one sweep ``ENTITY/PROJECT/SWEEP_ID`` via the W&B API."""
    if api is None:
        import wandb

        api = wandb.Api()
    parts = path.strip("/").split("/")
    if len(parts) == 3:
        runs = api.sweep("/".join(parts)).runs
    elif len(parts) == 2:
        runs = api.runs("/".join(parts))
    else:
        raise ValueError(f"report: expected wandb:ENTITY/PROJECT[/SWEEP_ID], got wandb:{path}")
    out = []
    for r in runs:
        config = dict(r.config)
        swept = _swept(config)
        out.append(
            Run(
                name=r.name,
                source=f"wandb:{'/'.join(parts[:2])}/{r.id}",
                status={"finished": "finished", "running": "running"}.get(r.state, "failed"),
                schedule=describe_params(swept) or schedule_from_config(config),
                params=swept,
                metrics=_numbers(dict(r.summary)),
                config=config,
            )
        )
    return out


def gather(sources: Sequence[str], api: Any = None) -> list[Run]:
    """Runs from every source, in the order given."""
    runs: list[Run] = []
    for source in sources:
        if source.startswith("wandb:"):
            runs += runs_from_wandb(source[len("wandb:") :], api=api)
        else:
            runs += find_local_runs(Path(source))
    return runs
