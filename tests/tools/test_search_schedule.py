"""`python -m fastast_pl search-schedule` on a tiny trained AST: outputs, and the schedule
found loading into `test`, `classify` and `export`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from fastast_pl.cli import main as cli_main
from fastast_pl.inference import AudioClassifier
from fastast_pl.models.checkpoints import read_inference_info
from fastast_pl.tome import resolve_schedule

from helpers.tiny_run import run, tiny

pytestmark = pytest.mark.slow  # a fit, a search, test, classify and an ONNX export end to end

DEPTH = ["--model.init_args.ast.depth=4"]  # four layers: a schedule with some shape


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A tiny AST fitted for one epoch, then the search at 0.6x FLOPs with a saved copy."""
    root = tmp_path_factory.mktemp("search")
    data, runs = root / "data", root / "runs"
    cli = run(["fit", *tiny(data, runs), *DEPTH])
    ckpt = cli.trainer.checkpoint_callback.best_model_path
    config = Path(cli.trainer.log_dir) / "config.yaml"  # what LightningCLI saved, data: included
    out, saved = root / "out", root / "searched.ckpt"
    args = [
        "search-schedule",
        "--checkpoint",
        ckpt,
        "--config",
        str(config),
        "--flops",
        "0.6",
        "--steps",
        "30",
        "--clips",
        "8",
        "--batch-size",
        "4",
        "--seed",
        "1",
        "--out",
        str(out),
        "--save-checkpoint",
        str(saved),
    ]
    assert cli_main(args) == 0
    record = json.loads((out / "schedule.json").read_text())
    return {
        "root": root,
        "data": data,
        "ckpt": ckpt,
        "config": config,
        "out": out,
        "saved": saved,
        "record": record,
    }


def test_writes_schedule_log_and_checkpoint(searched):
    record, out = searched["record"], searched["out"]
    schedule = record["schedule"]
    assert len(schedule) == 4 and record["target"] == 0.6
    assert abs(record["flops_fraction"] / 0.6 - 1) <= 0.03
    assert record["expected_flops_fraction"] == pytest.approx(record["flops_fraction"], rel=1e-9)
    snippet = yaml.safe_load((out / "schedule.yaml").read_text())
    assert snippet["model"]["init_args"]["eval_merge"] == schedule
    log = (out / "search_log.csv").read_text().splitlines()
    assert log[0].startswith("step,expected_flops_fraction,distill_loss")
    assert len(log) == 1 + 30
    info = read_inference_info(searched["saved"])
    assert info.merge == schedule
    hparams = torch.load(searched["saved"], map_location="cpu", weights_only=False)
    assert hparams["hyper_parameters"]["eval_merge"] == schedule
    original = torch.load(searched["ckpt"], map_location="cpu", weights_only=False)
    assert all(torch.equal(v, hparams["state_dict"][k]) for k, v in original["state_dict"].items())


def test_schedule_loads_into_test(searched):
    schedule = searched["record"]["schedule"]
    base = ["test", *tiny(searched["data"], searched["root"] / "t"), *DEPTH]
    given = run([*base, "--ckpt_path", searched["ckpt"], "--model.eval_merge", str(schedule)])
    assert given.model.model.eval().merge_schedule().r == schedule  # what evaluation runs
    stored = run([*base, "--ckpt_path", str(searched["saved"])])
    assert stored.model.model.eval_merge == schedule
    assert stored.model.model.eval().merge_schedule().r == schedule
    tokens = resolve_schedule(schedule, stored.model.model.num_tokens, 4, 2).tokens
    assert tokens[-1] < tokens[0]


def test_schedule_loads_into_classify_and_export(searched, tmp_path):
    schedule = searched["record"]["schedule"]
    classifier = AudioClassifier.from_pretrained(searched["saved"])
    assert classifier.model.merge_schedule().r == schedule
    clip = next((searched["data"]).rglob("*.wav"))
    csv = tmp_path / "labels.csv"
    assert cli_main(["classify", str(searched["saved"]), str(clip), "--out", str(csv)]) == 0
    assert csv.read_text().count("\n") == 2  # header + one clip
    onnx = tmp_path / "model.onnx"
    assert cli_main(["export", str(searched["saved"]), "--format", "onnx", "--out", str(onnx)]) == 0
    sidecar = json.loads((tmp_path / "model.onnx.json").read_text())
    assert sidecar["merge_r_per_layer"] == schedule


def test_user_errors_are_one_line(searched, tmp_path, capsys):
    args = [
        "search-schedule",
        "--checkpoint",
        searched["ckpt"],
        "--config",
        str(searched["config"]),
        "--out",
        str(tmp_path),
    ]
    assert cli_main([*args, "--flops", "1.5"]) == 2
    assert "fraction of the unmerged FLOPs" in capsys.readouterr().err
    assert (
        cli_main(
            [
                *args,
                "--flops",
                "0.5",
                "--steps",
                "1",
                "--clips",
                "4",
                "--save-checkpoint",
                str(tmp_path / "x.ckpt"),
                "--checkpoint",
                str(tmp_path / "missing.ckpt"),
            ]
        )
        == 2
    )
    assert "error:" in capsys.readouterr().err
