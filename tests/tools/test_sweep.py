"""sweep: W&B sweep files run locally; bad files rejected before any trial; failures recorded."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from fastast_pl.tools.sweep import check, plan, run, spec

TINY_CONFIG = {
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu", "devices": 1, "max_steps": 2, "limit_val_batches": 1,
        "log_every_n_steps": 1, "enable_model_summary": False, "enable_progress_bar": False,
        "enable_checkpointing": False,
    },
    "model": {
        "class_path": "fastast_pl.modules.student.StudentModule",
        "init_args": {"ast": {"arch": "tiny", "embed_dim": 32, "depth": 2, "num_heads": 2}},
    },
    "data": {
        "dataset": "synthetic", "target_length": 64, "num_mel_bins": 32, "batch_size": 4,
        "synthetic": {"num_classes": 3, "clips_per_class": 3, "clip_seconds": 0.5, "seed": 0},
    },
}  # fmt: skip


def _write(tmp_path: Path, parameters: dict, method: str = "grid", **extra) -> Path:
    config = json.loads(json.dumps(TINY_CONFIG))
    config["data"]["data_dir"] = str(tmp_path / "synthetic")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    doc = {
        "method": method,
        "metric": {"name": "val/acc", "goal": "maximize"},
        "parameters": parameters,
        "command": [
            "${env}",
            "python",
            "-m",
            "fastast_pl",
            "fit",
            "--config",
            str(tmp_path / "tiny.yaml"),
            "${args}",
        ],  # fmt: skip
        **extra,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_grid_plan_and_command_like_the_wandb_agent(tmp_path):
    path = _write(tmp_path, {
        "model.init_args.merge.ratio": {"values": [0.1, 0.2]},
        "model.init_args.merge.shape": {"values": ["constant", "late"]},
        "model.init_args.merge.overrides": {"value": {0: 0.3}},
    })  # fmt: skip
    sw = spec.load_sweep(path)
    trials = plan.plan_trials(sw, count=None)
    assert len(trials) == 4
    assert {
        (t["model.init_args.merge.ratio"], t["model.init_args.merge.shape"]) for t in trials
    } == {(0.1, "constant"), (0.1, "late"), (0.2, "constant"), (0.2, "late")}
    cmd = spec.expand_command(sw, trials[0])
    # the agent writes --name=str(value) for ${args} and drops nothing else
    assert cmd[:3] == [sys.executable, "-m", "fastast_pl"]
    assert cmd[-3:] == [
        "--model.init_args.merge.ratio=0.1",
        "--model.init_args.merge.shape=constant",
        "--model.init_args.merge.overrides={0: 0.3}",
    ]
    assert spec.cli_args(cmd, "x")[:1] == ["fit"]
    assert len(plan.plan_trials(sw, count=3)) == 3


def test_random_plan_is_seeded_and_inside_the_bounds(tmp_path):
    path = _write(tmp_path, {
        "model.init_args.merge.ratio": {"distribution": "uniform", "min": 0.05, "max": 0.3},
        "model.init_args.prop_attn": {"values": [True, False]},
        "data.batch_size": {"min": 2, "max": 5},
    }, method="random")  # fmt: skip
    sw = spec.load_sweep(path)
    a = plan.plan_trials(sw, count=20, seed=3)
    assert a == plan.plan_trials(sw, count=20, seed=3) != plan.plan_trials(sw, count=20, seed=4)
    ratios = [t["model.init_args.merge.ratio"] for t in a]
    assert all(0.05 <= r <= 0.3 for r in ratios)
    assert all(isinstance(t["data.batch_size"], int) and 2 <= t["data.batch_size"] <= 5 for t in a)
    with pytest.raises(spec.SweepError, match="--count"):
        plan.plan_trials(sw, count=None)


@pytest.mark.parametrize(
    ("doc_patch", "match"),
    [
        ({"method": "annealing"}, "method='annealing'"),
        ({"parameters": {"a": {"values": []}}}, r"parameters\.a\.values"),
        ({"parameters": {"a": {"min": 1.0}}}, r"parameters\.a"),
        ({"parameters": {"a": {"distribution": "uniform", "min": 0.1}}}, r"parameters\.a"),
        ({"bogus_key": 1}, "bogus_key"),
        ({"parameters": {"a": {"values": [None, 1]}}}, r"parameters\.a\.values: null"),
        ({"command": ["python", "-m", "fastast_pl", "fit"]}, r"\$\{args\}"),
        ({"command": ["python", "train.py", "${args}"]}, "python -m fastast_pl"),
        ({"command": ["python", "${args_json}"]}, r"\$\{args_json\}"),
    ],
)
def test_structural_errors_name_the_key(tmp_path, doc_patch, match):
    path = _write(tmp_path, {"model.init_args.merge.ratio": {"values": [0.1]}})
    doc = yaml.safe_load(path.read_text())
    doc.update(doc_patch)
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(spec.SweepError, match=match):
        sw = spec.load_sweep(path)
        spec.cli_args(spec.expand_command(sw, {}), str(path))


def test_grid_with_a_distribution_is_rejected(tmp_path):
    path = _write(tmp_path, {"model.init_args.merge.ratio": {"min": 0.0, "max": 0.3}})
    with pytest.raises(spec.SweepError, match="merge.ratio: method 'grid'"):
        spec.load_sweep(path)


@pytest.fixture(scope="module")
def checker():
    return check.TrialChecker()  # the CLI parser is built once for the checks below


@pytest.mark.parametrize(
    ("parameters", "blamed", "why"),
    [
        # a key the CLI does not know
        ({"model.init_args.merge.ratio": {"values": [0.1]}, "model.init_args.bogus": {"value": 1}},
         "model.init_args.bogus=1", "bogus"),
        # a value the module's own check rejects (ratios live in [0, 0.5))
        ({"model.init_args.merge.ratio": {"values": [0.1, 0.7]}},
         "model.init_args.merge.ratio=0.7", "0.7"),
        # a random-search bound outside the range (checked at min and max, not just samples)
        ({"model.init_args.merge.ratio": {"distribution": "uniform", "min": 0.0, "max": 0.6}},
         "model.init_args.merge.ratio=0.6", "0.6"),
        # a wrongly typed value, named by the CLI's parser
        ({"trainer.max_epochs": {"values": ["many"]}}, "trainer.max_epochs='many'", "max_epochs"),
    ],
)  # fmt: skip
def test_bad_parameters_rejected_before_any_trial(tmp_path, checker, parameters, blamed, why):
    method = "random" if any("distribution" in v for v in parameters.values()) else "grid"
    path = _write(tmp_path, parameters, method=method)
    sw = spec.load_sweep(path)
    trials = plan.plan_trials(sw, count=2, seed=0)
    with pytest.raises(spec.SweepError) as info:
        check.validate_sweep(sw, trials, checker)
    message = str(info.value)
    assert f"parameter {blamed}" in message and why in message
    assert "no trial was started" in message
    assert not (tmp_path / "runs").exists()


def test_good_sweep_passes_validation(tmp_path, checker):
    path = _write(tmp_path, {
        "model.init_args.merge.ratio": {"values": [0.0, 0.2]},
        "model.init_args.merge.shape": {"values": ["decreasing", "late"]},
        "model.init_args.merge.overrides": {"values": [{1: 0.3}, {0: 4}]},
    })  # fmt: skip
    sw = spec.load_sweep(path)
    check.validate_sweep(sw, plan.plan_trials(sw, None), checker)


@pytest.mark.slow
def test_sweep_runs_trials_and_records_a_failed_one(tmp_path, monkeypatch):
    """Two trials through the real CLI: one finishes (CSV + W&B offline), one fails at
    runtime (negative max_steps is only caught by the Trainer) and the sweep goes on."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    path = _write(tmp_path, {
        "trainer.max_steps": {"values": [-7, 2]},
        "model.init_args.merge.ratio": {"value": 0.2},
        "model.init_args.merge.shape": {"value": "late"},
    })  # fmt: skip
    out = tmp_path / "out"
    code = run.main(
        [str(path), "--out", str(out), "--logger", "wandb", "--", "--trainer.limit_test_batches=1"]
    )
    assert code == 1  # one trial failed
    record = json.loads((out / "sweep.json").read_text())
    assert [t["status"] for t in record["trials"]] == ["failed", "finished"]
    assert "max_steps" in (out / "trial-000" / "stdout.log").read_text()
    good = record["trials"][1]
    assert good["params"]["model.init_args.merge.ratio"] == 0.2
    assert {"val/acc", "val/throughput"} <= set(good["metrics"])
    # the CLI saved the trial's full config with the swept values in place
    saved = yaml.safe_load((out / "trial-001" / "config.yaml").read_text())
    assert saved["model"]["init_args"]["merge"] == {
        "ratio": 0.2,
        "shape": "late",
        "overrides": None,
    }
    assert saved["trainer"]["max_steps"] == 2
    # the W&B offline run holds the config (the swept values) and the logged metrics
    wandb_log = next((out / "trial-001" / "wandb").glob("offline-run-*/run-*.wandb")).read_bytes()
    assert b"val/acc" in wandb_log and b"merge" in wandb_log
    # and the report reads the sweep directory
    from fastast_pl.tools import report

    rep = report.build_report(report.gather([str(out)]), acc_key="val/acc")
    assert [r["status"] for r in rep.rows] == ["failed", "finished"]
