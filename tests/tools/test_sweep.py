"""sweep: W&B sweep files run locally; bad files rejected before any trial; failures recorded."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fastast_pl.tools.sweep import check, run, spec

TINY_CONFIG = {
    "seed_everything": 0,
    "trainer": {
        "accelerator": "cpu",
        "devices": 1,
        "max_steps": 2,
        "limit_val_batches": 1,
        "log_every_n_steps": 1,
        "enable_model_summary": False,
        "enable_progress_bar": False,
        "enable_checkpointing": False,
    },
    "model": {
        "class_path": "fastast_pl.modules.student.StudentModule",
        "init_args": {"ast": {"size": "tiny", "embed_dim": 32, "depth": 2, "num_heads": 2}},
    },
    "data": {
        "source": {
            "class_path": "fastast_pl.data.sources.SyntheticSource",
            "init_args": {
                "generator": {
                    "num_classes": 3,
                    "clips_per_class": 3,
                    "clip_seconds": 0.5,
                    "seed": 0,
                }
            },
        },
        "features": {"target_length": 64, "num_mel_bins": 32},
        "loader": {"batch_size": 4},
    },
}


def _write(tmp_path: Path, parameters: dict, method: str = "grid", **extra) -> Path:
    config = json.loads(json.dumps(TINY_CONFIG))
    config["data"]["source"]["init_args"]["root"] = str(tmp_path / "synthetic")
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
        ],
        **extra,
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_grid_plan_and_command_like_the_wandb_agent(tmp_path):
    path = _write(
        tmp_path,
        {
            "model.init_args.merge.ratio": {"values": [0.1, 0.2]},
            "model.init_args.merge.shape": {"values": ["constant", "late"]},
            "model.init_args.merge.ratio_overrides": {"value": {0: 0.3}},
        },
    )
    sw = spec.load_sweep(path)
    trials = run.plan_trials(sw, count=None)
    assert len(trials) == 4
    assert {
        (t["model.init_args.merge.ratio"], t["model.init_args.merge.shape"]) for t in trials
    } == {(0.1, "constant"), (0.1, "late"), (0.2, "constant"), (0.2, "late")}
    first = next(
        t
        for t in trials
        if t["model.init_args.merge.ratio"] == 0.1
        and t["model.init_args.merge.shape"] == "constant"
    )
    cmd = spec.expand_command(sw, first)
    # the agent writes --name=str(value) for ${args} and drops nothing else
    assert cmd[:3] == [sys.executable, "-m", "fastast_pl"]
    assert cmd[-3:] == [
        "--model.init_args.merge.ratio=0.1",
        "--model.init_args.merge.shape=constant",
        "--model.init_args.merge.ratio_overrides={0: 0.3}",
    ]
    assert spec.cli_args(cmd, "x")[:1] == ["fit"]
    assert len(run.plan_trials(sw, count=3)) == 3


def test_random_plan_is_seeded_and_inside_the_bounds(tmp_path):
    path = _write(
        tmp_path,
        {
            "model.init_args.merge.ratio": {"distribution": "uniform", "min": 0.05, "max": 0.3},
            "model.init_args.prop_attn": {"values": [True, False]},
            "data.loader.batch_size": {"min": 2, "max": 5},
        },
        method="random",
    )
    sw = spec.load_sweep(path)
    a = run.plan_trials(sw, count=20, seed=3)
    assert a == run.plan_trials(sw, count=20, seed=3) != run.plan_trials(sw, count=20, seed=4)
    ratios = [t["model.init_args.merge.ratio"] for t in a]
    assert all(0.05 <= r <= 0.3 for r in ratios)
    sizes = [t["data.loader.batch_size"] for t in a]
    assert all(isinstance(b, int) and 2 <= b <= 5 for b in sizes)
    with pytest.raises(spec.SweepError, match="--count"):
        run.plan_trials(sw, count=None)


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
        (
            {
                "model.init_args.merge.ratio": {"values": [0.1]},
                "model.init_args.bogus": {"value": 1},
            },
            "model.init_args.bogus=1",
            "bogus",
        ),
        # a value the module's own check rejects (ratios live in [0, 0.5))
        (
            {"model.init_args.merge.ratio": {"values": [0.1, 0.7]}},
            "model.init_args.merge.ratio=0.7",
            "0.7",
        ),
        # a random-search bound outside the range (checked at min and max, not just samples)
        (
            {"model.init_args.merge.ratio": {"distribution": "uniform", "min": 0.0, "max": 0.6}},
            "model.init_args.merge.ratio=0.6",
            "0.6",
        ),
        # a wrongly typed value, named by the CLI's parser
        ({"trainer.max_epochs": {"values": ["many"]}}, "trainer.max_epochs='many'", "max_epochs"),
    ],
)
def test_bad_parameters_rejected_before_any_trial(tmp_path, checker, parameters, blamed, why):
    method = "random" if any("distribution" in v for v in parameters.values()) else "grid"
    path = _write(tmp_path, parameters, method=method)
    sw = spec.load_sweep(path)
    with pytest.raises(spec.SweepError) as info:
        check.validate_sweep(sw, checker)
    message = str(info.value)
    assert f"parameter {blamed}" in message and why in message
    assert "no trial was started" in message
    assert not (tmp_path / "runs").exists()


def test_good_sweep_passes_validation(tmp_path, checker):
    path = _write(
        tmp_path,
        {
            "model.init_args.merge.ratio": {"values": [0.0, 0.2]},
            "model.init_args.merge.shape": {"values": ["decreasing", "late"]},
            "model.init_args.merge.ratio_overrides": {"values": [{1: 0.3}, {1: 0.0}]},
            "model.init_args.merge.r_overrides": {"values": [{0: 4}]},
        },
    )
    sw = spec.load_sweep(path)
    check.validate_sweep(sw, checker)
    assert all(checker.trial_error(sw, t) is None for t in run.plan_trials(sw, None))


@pytest.mark.slow
def test_sweep_runs_trials_and_records_a_failed_one(tmp_path, monkeypatch):
    """Two trials through the real CLI: one finishes (CSV + W&B offline), one fails at
    runtime (negative max_steps is only caught by the Trainer) and the sweep goes on."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    path = _write(
        tmp_path,
        {
            "trainer.max_steps": {"values": [-7, 2]},
            "model.init_args.merge.ratio": {"value": 0.2},
            "model.init_args.merge.shape": {"value": "late"},
        },
    )
    out = tmp_path / "out"
    code = run.main(
        [str(path), "--out", str(out), "--logger", "wandb", "--", "--trainer.limit_test_batches=1"]
    )
    assert code == 1  # one trial failed
    record = json.loads((out / "sweep.json").read_text())
    status = {t["params"]["trainer.max_steps"]: t["status"] for t in record["trials"]}
    assert status == {-7: "failed", 2: "finished"}  # in the grid order of Optuna's GridSampler
    bad, good = sorted(record["trials"], key=lambda t: t["params"]["trainer.max_steps"])
    assert "max_steps" in (Path(bad["run_dir"]) / "stdout.log").read_text()
    assert good["params"]["model.init_args.merge.ratio"] == 0.2
    assert {"val/acc", "val/loss"} <= set(good["metrics"])
    # the CLI saved the trial's full config with the swept values in place
    saved = yaml.safe_load((Path(good["run_dir"]) / "config.yaml").read_text())
    assert saved["model"]["init_args"]["merge"] == {
        "ratio": 0.2,
        "shape": "late",
        "ratio_overrides": None,
        "r_overrides": None,
    }
    assert saved["trainer"]["max_steps"] == 2
    # the W&B offline run holds the config (the swept values) and the logged metrics
    wandb_log = next(
        (Path(good["run_dir"]) / "wandb").glob("offline-run-*/run-*.wandb")
    ).read_bytes()
    assert b"val/acc" in wandb_log and b"merge" in wandb_log
    # and the report reads the sweep directory
    from fastast_pl.tools import report

    rep = report.build_report(report.gather([str(out)]), acc_key="val/acc")
    assert [r["status"] for r in rep.rows] == [t["status"] for t in record["trials"]]


# ------------------------------------------------ a rerun never changes earlier trials
def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_a_rerun_into_the_same_out_changes_nothing_unless_resumed_or_overwritten(tmp_path, capsys):
    """Real trials (a two-line Python program as the command, so no check through the CLI),
    a real Optuna journal: a second run refuses before touching OUT; --resume continues the
    study with new trials beside the untouched earlier ones; --overwrite starts afresh."""
    path = _write(tmp_path, {"x": {"distribution": "uniform", "min": 0.0, "max": 1.0}}, "random")
    doc = yaml.safe_load(path.read_text())
    doc["command"] = ["${env}", "python", "-c", "import sys; print(sys.argv[1:])", "${args}"]
    path.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    argv = [str(path), "--out", str(out), "--no-validate", "--logger", "none"]
    assert run.main([*argv, "--count", "2"]) == 0
    before = _files(out)
    assert {"trial-000/trial.json", "trial-001/stdout.log", "sweep.json"} <= set(before)
    capsys.readouterr()
    assert run.main([*argv, "--count", "3"]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--resume" in err and "--overwrite" in err
    assert _files(out) == before  # nothing changed, nothing added
    assert run.main([*argv, "--count", "3", "--resume"]) == 0
    after = _files(out)
    assert {k: after[k] for k in before if k.startswith("trial-")} == {
        k: v for k, v in before.items() if k.startswith("trial-")
    }
    trials = json.loads((out / "sweep.json").read_text())["trials"]
    assert [t["index"] for t in trials] == [0, 1, 2]
    assert len({t["params"]["x"] for t in trials}) == 3  # the resumed study draws anew
    assert run.main([*argv, "--count", "1", "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("trial-*")) == ["trial-000"]
    assert (
        run.main(
            [
                str(path),
                "--out",
                str(tmp_path / "none"),
                "--resume",
                "--count",
                "1",
                "--no-validate",
            ]
        )
        == 2
    )


# ------------------------------------------------------------- engine (Optuna)
def _toy_sweep(tmp_path: Path, method: str) -> spec.SweepFile:
    path = _write(tmp_path, {"x": {"distribution": "uniform", "min": 0.0, "max": 1.0}}, method)
    return spec.load_sweep(path)


def test_bayes_is_model_based_not_random(tmp_path):
    """Told the results of f(x) = -(x - 0.9)^2, TPE's later proposals sit nearer the optimum
    than random ones (same seed, same number of trials): bayes learns from results."""

    def mean_distance(method: str) -> float:
        sweep = _toy_sweep(tmp_path, method)
        study = run.make_study(sweep, seed=0, startup_trials=5)
        late = []
        for i in range(30):
            trial = study.ask()
            x = sweep.suggest(trial)["x"]
            study.tell(trial, -((x - 0.9) ** 2))
            if i >= 15:
                late.append(abs(x - 0.9))
        return sum(late) / len(late)

    assert mean_distance("bayes") < 0.5 * mean_distance("random")


def test_distributions_translated_or_refused_by_name(tmp_path):
    path = _write(
        tmp_path,
        {
            "a": {"distribution": "q_uniform", "min": 0.0, "max": 0.3, "q": 0.05},
            "b": {"distribution": "log_uniform", "min": -2.0, "max": 0.0},
            "c": {"distribution": "q_log_uniform_values", "min": 1, "max": 64, "q": 4},
            "d": {"values": [{}, {0: 0.1}]},
        },
        method="random",
    )
    trials = run.plan_trials(spec.load_sweep(path), count=40, seed=1)
    a = [t["a"] for t in trials]
    assert all(0.0 <= v <= 0.3 and abs(v / 0.05 - round(v / 0.05)) < 1e-9 for v in a)
    assert len(set(a)) > 3
    assert all(math.exp(-2.0) <= t["b"] <= 1.0 for t in trials)
    assert all(t["c"] % 4 == 0 and isinstance(t["c"], int) for t in trials)
    assert {json.dumps(t["d"]) for t in trials} == {"{}", '{"0": 0.1}'}
    bad = _write(tmp_path, {"a": {"distribution": "normal", "mu": 0, "sigma": 1}}, "random")
    with pytest.raises(spec.SweepError, match="'normal' is a W&B distribution"):
        spec.load_sweep(bad)
    weighted = _write(tmp_path, {"a": {"values": [1, 2], "probabilities": [0.3, 0.7]}}, "random")
    with pytest.raises(spec.SweepError, match=r"parameters\.a\.probabilities"):
        spec.load_sweep(weighted)


# ------------------------------------------------------------- FLOP budget
def _flops(tokens: list[int], dim: int) -> float:
    """Matmul FLOPs of ViT blocks written out: attention on tokens[l], MLP (ratio 4) on
    tokens[l + 1] (qkv 3NC^2, scores and AV 2N^2C, proj NC^2, MLP 8NC^2; 2 per MAC)."""
    return sum(
        2 * (4 * n * dim * dim + 2 * n * n * dim) + 2 * 8 * m * dim * dim
        for n, m in zip(tokens[:-1], tokens[1:])
    )


def test_budget_schedule_reaches_the_flop_ratio_in_the_given_shape():
    """The planner the budget front end calls (tome.flops, per-layer weights) against the
    FLOP count written out above."""
    from fastast_pl.tome.flops import schedule_for_flops_reduction

    dims = {"num_tokens": 202, "depth": 4, "num_prefix_tokens": 2, "dim": 64}
    r = schedule_for_flops_reduction(1.4, weights=[0.0, 1.0, 0.5, 0.0], **dims)
    assert r[0] == 0 and r[3] == 0 and r[1] > r[2] > 0  # the shape of the weights
    tokens = [202]
    for r_l in r:
        tokens.append(tokens[-1] - r_l)
    ratio = _flops([202] * 5, 64) / _flops(tokens, 64)
    assert ratio >= 1.4
    fewer = [202, 202 - r[0], 202 - r[0] - (r[1] - 1)]  # one token less merged in layer 1
    fewer += [fewer[-1] - r[2], fewer[-1] - r[2] - r[3]]
    assert _flops([202] * 5, 64) / _flops(fewer, 64) < ratio
    with pytest.raises(ValueError, match="out of reach"):
        schedule_for_flops_reduction(5.0, weights=[1.0, 0, 0, 0], **dims)


def test_budget_front_end_turns_weights_into_the_cli_schedule(tmp_path, checker):
    from fastast_pl.tools.sweep import budget

    path = _write(tmp_path, {"model.init_args.merge.ratio": {"value": 0.0}})
    base = spec.cli_args(spec.expand_command(spec.load_sweep(path), {}), "x")
    args = budget.resolve([*base, "--merge.flop_ratio=1.05", "--merge.weight.0=0"], checker)
    assert args[:-1] == base and args[-1].startswith("--model.init_args.eval_merge=[0, ")
    with pytest.raises(spec.SweepError, match="merge.weight.7"):
        budget.resolve([*base, "--merge.flop_ratio=1.05", "--merge.weight.7=1"], checker)


# ----------------------------------------------- eval-only per-layer sweep, report
def _eval_sweep(tmp_path: Path, method: str) -> Path:
    layer = {"values": [0.0, 0.3]}  # the tiny model: 12 tokens, ratio 0.3 merges r=3
    path = _write(
        tmp_path,
        {
            "model.init_args.eval_merge.ratio_overrides.0": layer,
            "model.init_args.eval_merge.ratio_overrides.1": layer,
        },
        method=method,
    )
    doc = yaml.safe_load(path.read_text())
    doc["command"][4] = "test"  # eval-only: no training
    doc["metric"] = {"name": "test/acc", "goal": "maximize"}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("method", ["random", "bayes"])
def test_eval_only_per_layer_sweep_and_its_report(tmp_path, method):
    from fastast_pl.tools.report import analyze, read

    out = tmp_path / "out"
    argv = [str(_eval_sweep(tmp_path, method)), "--out", str(out), "--count", "3", "--seed", "0"]
    assert run.main([*argv, "--startup-trials", "2", "--", "--trainer.limit_test_batches=1"]) == 0
    record = json.loads((out / "sweep.json").read_text())
    assert record["engine"] == "optuna" and record["method"] == method
    assert [t["status"] for t in record["trials"]] == ["finished"] * 3
    runs = read.gather([str(out)])
    for r, t in zip(runs, record["trials"]):  # each run logged the schedule it evaluated
        # MergeSchedule: r_l = floor(ratio_l * (tokens at layer l - 2 prefix tokens))
        tokens, r_per_layer = 12, []
        for i in range(2):
            ratio = t["params"][f"model.init_args.eval_merge.ratio_overrides.{i}"]
            r_per_layer.append(math.floor(ratio * (tokens - 2)))
            tokens -= r_per_layer[-1]
        assert r.config["merge/eval/r"] == r_per_layer
        assert r.metrics["test/flop_ratio"] >= 1.0 and "test/acc" in r.metrics
    unmerged = [r.name for r in runs if not any(r.config["merge/eval/r"])]
    from fastast_pl.speed.schedules import TimingSettings

    speeds = analyze.measure_runs(runs, TimingSettings(batch_size=2, rounds=1))
    rep = analyze.build_report(runs, min_speedup=1.0, speeds=speeds)
    assert rep.axis == "flops" and rep.acc_key == "test/acc"
    measured: dict[tuple, set] = {}  # speed depends on the schedule: one measurement each
    for row in rep.rows:
        measured.setdefault(tuple(row["r"]), set()).add(row["speedup"])
        assert row["speedup"] == 1.0 if not any(row["r"]) else row["speedup"] > 0
    assert all(len(speedups) == 1 for speedups in measured.values())
    if method == "random":
        assert unmerged  # seed 0 draws the unmerged schedule; the test relies on it
    assert report_main([str(out), "--out", str(tmp_path / "rep"), "--min-speedup", "1"]) == 0
    assert (tmp_path / "rep" / "pareto.png").read_bytes()[:4] == b"\x89PNG"


def report_main(argv: list[str]) -> int:
    from fastast_pl.tools import report

    return report.main(argv)


# ------------------------------------------------------------- under wandb agent
@pytest.mark.slow
def test_trial_under_wandb_agent_logs_to_the_agents_offline_run(tmp_path):
    """One trial run the way `wandb agent` runs it: its environment, its parameter file,
    the command expanded from the sweep file; the W&B offline run is opened with the agent's
    id, and the CSV beside it holds the swept parameters, the merge statistics and metrics."""
    from wandb.sdk.lib import config_util

    from fastast_pl.tools.report import read

    path = _write(tmp_path, {"model.init_args.merge.ratio_overrides.1": {"values": [0.3]}})
    params = {"model.init_args.merge.ratio_overrides.1": 0.3}
    param_file = tmp_path / "wandb" / "sweep-sw1" / "config-run42.yaml"
    config_util.save_config_file_from_dict(
        str(param_file), {k: {"value": v} for k, v in params.items()}
    )
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_SWEEP_ID": "sw1",
        "WANDB_RUN_ID": "run42",
        "WANDB_SWEEP_PARAM_PATH": str(param_file),
        "WANDB_DIR": str(tmp_path),
        "WANDB_PROJECT": "fastast-test",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    command = spec.expand_command(spec.load_sweep(path), params)
    command += [f"--trainer.default_root_dir={tmp_path / 'trial'}"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run_dirs = list((tmp_path / "wandb").glob("offline-run-*-run42"))
    assert len(run_dirs) == 1 and list(run_dirs[0].glob("run-run42.wandb"))
    csv_dir = tmp_path / "wandb" / "csv-run42"  # Lightning's CSVLogger beside the W&B run
    hparams = yaml.safe_load((csv_dir / "hparams.yaml").read_text())
    assert hparams["model.init_args.merge.ratio_overrides.1"] == 0.3  # the agent's parameters
    # merge stats of the tiny model (10 patches + 2 prefix tokens): floor(0.3 * 10) = 3 in layer 1
    assert hparams["merge/train/r"] == [0, 3]
    assert hparams["merge/eval/tokens"] == [12, 12, 9]
    assert hparams["lr/initial"] > 0
    # `report` reads the agent's run from the W&B directory (its CSV beside the W&B run)
    runs = read.gather([str(tmp_path / "wandb")])
    assert [r.status for r in runs] == ["finished"] and runs[0].name == "csv-run42"
    assert runs[0].schedule == "merge.ratio_overrides.1=0.3"
    assert "lr-Adam" in runs[0].metrics
    assert runs[0].metrics["val/gflops_per_clip"] * 1e9 == pytest.approx(_flops([12, 12, 9], 32))
    assert {"val/acc", "train/loss", "val/flop_ratio"} <= set(runs[0].metrics)
    with (csv_dir / "metrics.csv").open() as f:
        assert sum(1 for row in csv.DictReader(f) if row.get("val/acc")) >= 1
