"""report: tiny hand-made run directories -> table, Pareto front, best run, PNG, W&B offline."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from fastast_pl.tools import report
from fastast_pl.tools.report import analyze, read

# (name, ratio, test/acc, test/throughput); by hand: the front is r0 (most accurate),
# r2 and r4 (fastest); r1 is beaten by r2 (faster and more accurate), r3 by r4.
RUNS = [
    ("trial-000", 0.0, 0.90, 100.0),
    ("trial-001", 0.1, 0.80, 150.0),
    ("trial-002", 0.2, 0.85, 180.0),
    ("trial-003", 0.3, 0.70, 250.0),
    ("trial-004", 0.4, 0.75, 300.0),
]


def _write_run(root: Path, name: str, ratio: float, acc: float, speed: float, status="finished"):
    run = root / name
    run.mkdir(parents=True)
    with (run / "metrics.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "step", "train/loss", "val/acc", "test/acc", "test/throughput"])
        w.writerow([0, 9, 1.5, "", "", ""])
        w.writerow([0, 9, "", 0.1, "", ""])  # an earlier value must not win
        w.writerow([0, 9, "", "", acc, speed])
    params = {"model.init_args.merge.ratio": ratio, "model.init_args.merge.shape": "late"}
    (run / "trial.json").write_text(json.dumps({"status": status, "params": params}))
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
    points = [(s, a) for _, _, a, s in RUNS]
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
    assert float(by_name["trial-004"]["speedup"]) == pytest.approx(
        3.0
    )  # baseline: the unmerged run (ratio 0.0)
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
    (run / "metrics.csv").write_text("epoch,step,val/mAP,val/throughput\n0,1,0.4,20.0\n")
    cfg = {
        "model": {"class_path": "x.StudentModule", "init_args": {"merge": 0, "eval_merge": [4, 4]}}
    }
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    rep = analyze.build_report(read.gather([str(tmp_path)]))
    assert (rep.acc_key, rep.speed_key) == ("val/mAP", "val/throughput")
    assert rep.rows[0]["schedule"] == "merge=0 eval_merge=[4, 4]"


def test_report_errors_name_the_problem(tmp_path: Path, sweep_dir: Path, capsys):
    assert report.main([str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert report.main([str(sweep_dir), "--metric", "val/bogus"]) == 2
    assert "val/bogus" in capsys.readouterr().err
    assert report.main([str(sweep_dir), "--baseline", "trial-999"]) == 2
    assert "trial-999" in capsys.readouterr().err


def test_report_from_wandb_api_object():
    """The W&B API path, with a stand-in API object (no network)."""

    def fake_run(i, acc, speed, state="finished"):
        return SimpleNamespace(
            name=f"run-{i}", id=f"id{i}", state=state,
            summary={"test/acc": acc, "test/throughput": speed, "note": "x"},
            config={"model.init_args.merge.ratio": i / 10, "trainer.max_epochs": 3},
        )  # fmt: skip

    runs = [fake_run(0, 0.9, 10.0), fake_run(1, 0.8, 20.0), fake_run(2, 0.1, 1.0, "crashed")]
    api = SimpleNamespace(sweep=lambda path: SimpleNamespace(runs=runs), runs=None)
    got = read.gather(["wandb:me/proj/abc123"], api=api)
    assert [r.status for r in got] == ["finished", "finished", "failed"]
    assert got[1].schedule == "merge.ratio=0.1"
    rep = analyze.build_report(got, min_speedup=1.5)
    assert rep.best["run"] == "run-1" and rep.best["speedup"] == pytest.approx(2.0)


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
