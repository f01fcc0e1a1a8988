"""report: tiny hand-made run directories -> table, Pareto front, best run, PNG, W&B offline."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from fastast_pl.tome.flops import vit_flops
from fastast_pl.tools import report
from fastast_pl.tools.report import analyze, read, render

# (name, ratio, test/acc, test/flop_ratio); by hand: the front is r0 (most accurate),
# r2 and r4 (cheapest); r1 is beaten by r2 (cheaper and more accurate), r3 by r4.
RUNS = [
    ("trial-000", 0.0, 0.90, 1.0),
    ("trial-001", 0.1, 0.80, 1.5),
    ("trial-002", 0.2, 0.85, 1.8),
    ("trial-003", 0.3, 0.70, 2.5),
    ("trial-004", 0.4, 0.75, 3.0),
]
# A tiny AST as trainer.merge_stats logs it (merge/model): 4 x 2 patches + 2 = 10 tokens.
TINY_SPEC = {
    "num_classes": 3,
    "input_tdim": 64,
    "input_fdim": 32,
    "prop_attn": True,
    "arch": {
        "embed_dim": 32,
        "depth": 2,
        "num_heads": 2,
        "patch_size": 16,
        "fstride": 16,
        "tstride": 16,
    },
}


def _write_run(
    root: Path,
    name: str,
    ratio: float,
    acc: float,
    flops: float,
    status="finished",
    r: list[int] | None = None,
):
    run = root / name
    run.mkdir(parents=True)
    with (run / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "step", "train/loss", "val/acc", "test/acc", "test/flop_ratio"])
        w.writerow([0, 9, 1.5, "", "", ""])
        w.writerow([0, 9, "", 0.1, "", ""])  # an earlier value must not win
        w.writerow([0, 9, "", "", acc, flops])
    params = {"model.init_args.merge.ratio": ratio, "model.init_args.merge.shape": "late"}
    (run / "trial.json").write_text(json.dumps({"status": status, "params": params}))
    if r is not None:
        hparams = {"merge/model": TINY_SPEC, "merge/eval/r": r}
        (run / "hparams.yaml").write_text(yaml.safe_dump(hparams))
    return run


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    for row in RUNS:
        _write_run(tmp_path / "sweep", *row)
    failed = tmp_path / "sweep" / "trial-005"  # crashed before any metric
    failed.mkdir()
    (failed / "trial.json").write_text(json.dumps({"status": "failed", "params": {"x": 1}}))
    return tmp_path / "sweep"


def test_pareto_front_by_hand():
    points = [(f, a) for _, _, a, f in RUNS]
    assert analyze.pareto_front(points) == [0, 2, 4]
    assert analyze.pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0, 1]  # ties dominate nobody


def test_report_table_best_and_plot(sweep_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    code = report.main([str(sweep_dir), "--min-speedup", "1.7", "--out", str(out)])
    assert code == 0
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert [r["run"] for r in rows] == [f"trial-00{i}" for i in range(6)]
    by_name = {r["run"]: r for r in rows}
    assert float(by_name["trial-002"]["test/acc"]) == 0.85  # last value, not the first row's
    assert [r["run"] for r in rows if r["pareto"] == "True"] == [
        "trial-000",
        "trial-002",
        "trial-004",
    ]
    assert by_name["trial-005"]["status"] == "failed"
    assert float(by_name["trial-004"]["flop_ratio"]) == pytest.approx(3.0)
    assert by_name["trial-004"]["speedup"] == ""  # logged no schedule to time
    assert by_name["trial-001"]["schedule"] == "merge.ratio=0.1 merge.shape=late"
    summary = json.loads((out / "report.json").read_text())
    # at >= 1.7x: trial-002 (1.8x, 0.85) beats trial-004 (3x, 0.75) and trial-003
    assert summary["best"]["run"] == "trial-002"
    printed = capsys.readouterr().out
    assert "best at >= 1.7x: trial-002" in printed
    png = (out / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_report_reads_schedule_from_cli_config(tmp_path: Path):
    run = tmp_path / "version_0"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,step,val/mAP\n0,1,0.4\n")
    cfg = {
        "model": {"class_path": "x.StudentModule", "init_args": {"merge": 0, "eval_merge": [4, 4]}}
    }
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    rep = analyze.build_report(read.gather([str(tmp_path)]))
    assert rep.acc_key == "val/mAP"
    assert rep.rows[0]["schedule"] == "merge=0 eval_merge=[4, 4]"


def test_report_errors_name_the_problem(tmp_path: Path, sweep_dir: Path, capsys):
    assert report.main([str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert report.main([str(sweep_dir), "--metric", "val/bogus"]) == 2
    assert "val/bogus" in capsys.readouterr().err


def test_report_from_wandb_api_object():
    """The W&B API path, with a stand-in API object (no network)."""

    def fake_run(i, acc, flops, state="finished"):
        return SimpleNamespace(
            name=f"run-{i}",
            id=f"id{i}",
            state=state,
            summary={"test/acc": acc, "test/flop_ratio": flops, "note": "x"},
            config={"model.init_args.merge.ratio": i / 10, "trainer.max_epochs": 3},
        )

    runs = [fake_run(0, 0.9, 1.0), fake_run(1, 0.8, 2.0), fake_run(2, 0.1, 1.0, "crashed")]
    api = SimpleNamespace(sweep=lambda path: SimpleNamespace(runs=runs), runs=None)
    got = read.gather(["wandb:me/proj/abc123"], api=api)
    assert [r.status for r in got] == ["finished", "finished", "failed"]
    assert got[1].schedule == "merge.ratio=0.1"
    rep = analyze.build_report(got, min_speedup=1.5)
    assert rep.best["run"] == "run-1" and rep.best["flop_ratio"] == pytest.approx(2.0)


@pytest.mark.slow
def test_report_logs_table_and_plot_to_wandb_offline(sweep_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "out"
    args = [
        str(sweep_dir),
        "--out",
        str(out),
        "--wandb-project",
        "fastast-test",
        "--min-speedup",
        "1.7",
    ]
    assert report.main(args) == 0
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = runs[0] / "files"
    # Media files too are written by W&B's service process: wait for them under load.
    deadline = time.monotonic() + 20
    while True:
        images = list(files.glob("media/images/pareto_*.png"))
        tables = list(files.glob("media/table/runs_*.table.json"))
        if (images and tables) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert images and images[0].read_bytes()[:4] == b"\x89PNG"
    assert tables
    # Config, history and summary live in the run's protobuf log (no reader ships with
    # wandb; the keys and JSON values are stored as plain bytes, so look for them).
    # The file is written by W&B's service process; give it a moment under heavy load.
    needles = (b"acc_key", b'"test/acc"', b"best_run", b'"trial-002"', images[0].name.encode())
    deadline = time.monotonic() + 20
    while True:
        log = next(runs[0].glob("run-*.wandb")).read_bytes()
        missing = [n for n in needles if n not in log]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not missing, missing


def test_runs_with_the_same_schedule_share_one_measurement(tmp_path: Path, capsys):
    root = tmp_path / "sweep"
    _write_run(root, "trial-000", 0.0, 0.90, 1.0, r=[0, 0])
    _write_run(root, "trial-001", 0.2, 0.80, 1.5, r=[2, 2])
    _write_run(root, "trial-002", 0.2, 0.85, 1.5, r=[2, 2])  # same schedule, other weights
    _write_run(root, "trial-003", 0.4, 0.70, 2.0, r=[4, 2])
    out = tmp_path / "out"
    argv = [str(root), "--out", str(out), "--timing-batch", "2", "--timing-rounds", "2"]
    assert report.main(argv) == 0
    rows = {r["run"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert rows["trial-001"]["speedup"] == rows["trial-002"]["speedup"]
    assert rows["trial-001"]["clips_per_s"] == rows["trial-002"]["clips_per_s"]
    assert rows["trial-000"]["speedup"] == 1.0  # r=0 against itself, round by round
    assert rows["trial-003"]["speedup"] != rows["trial-001"]["speedup"]
    # GMACs: 1 per multiply-add of the blocks on the tokens of the schedule
    tokens = [10, 10 - 4, 10 - 4 - 2]
    assert rows["trial-003"]["gmacs"] * 2e9 == pytest.approx(vit_flops(tokens, 32))
    printed = capsys.readouterr().out
    assert "GMACs" in printed and "1 MAC = 2 FLOPs" in printed
    assert "each distinct schedule timed once, 2 random clips per batch" in printed
    assert "measured speed-up / FLOP ratio over 2 timed merged schedules" in printed


def test_a_speedup_inside_the_spread_is_not_called_one():
    row = {"speedup": 1.01, "speedup_min": 0.97, "speedup_max": 1.04, "r": [2, 2]}
    assert render.measured(row) == "none measurable (0.97-1.04)"
    assert analyze.axis_speedup({**row, "flop_ratio": 1.5}, "measured") == 1.0
    faster = {**row, "speedup": 1.4, "speedup_min": 1.3, "speedup_max": 1.5}
    assert render.measured(faster) == "1.40x (1.30-1.50)"
    assert analyze.axis_speedup(faster, "measured") == 1.4
    slower = {**row, "speedup": 0.8, "speedup_min": 0.71, "speedup_max": 0.89}
    assert render.measured(slower) == "slower, 0.80x (0.71-0.89)"
    assert analyze.axis_speedup(slower, "measured") == 1.0


def test_equal_accuracy_goes_to_the_faster_schedule_and_repeats_are_grouped(tmp_path: Path):
    root = tmp_path / "sweep"
    _write_run(root, "a", 0.2, 0.80, 1.8)
    _write_run(root, "b", 0.4, 0.80, 2.5)  # as accurate, cheaper: the best at >= 1.7x
    _write_run(root, "c", 0.4, 0.70, 2.5)  # the same schedule again (another seed)
    rep = analyze.build_report(read.gather([str(root)]), min_speedup=1.7)
    assert rep.best["run"] == "b" and rep.best["pareto"]
    groups = {tuple(g["runs"]): g for g in rep.groups}
    assert groups[("b", "c")]["test/acc mean"] == pytest.approx(0.75)
    assert groups[("b", "c")]["test/acc min"] == 0.70 and groups[("b", "c")]["test/acc max"] == 0.80
    assert "| schedule | runs | test/acc mean |" in render.markdown_table(rep)


def test_an_earlier_report_is_not_overwritten(sweep_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "runs.md").write_text("an earlier table\n")
    assert report.main([str(sweep_dir), "--out", str(out), "--no-timing"]) == 2
    err = capsys.readouterr().err
    assert "already holds a report (runs.md)" in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["runs.md"]  # nothing written
    assert (out / "runs.md").read_text() == "an earlier table\n"
    assert report.main([str(sweep_dir), "--out", str(out), "--no-timing", "--overwrite"]) == 0
    assert (out / "runs.csv").is_file() and (out / "runs.md").read_text() != "an earlier table\n"
