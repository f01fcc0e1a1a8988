"""`benchmark --checkpoint`: a user's own model, its schedules and input size, against its r=0
and HF transformers' AST; on a quickstart checkpoint and on an HF hub id (offline cache).

No timing assertions: what is checked is what gets measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastast_pl.models.ast import ASTModel
from fastast_pl.tools import benchmark

from helpers.hf_tiny import FRAMES, MELS, place_in_hub_cache, save_tiny_hf_ast
from helpers.tiny_run import run, tiny

ARGS = ["--batch-sizes", "1", "--iters", "1", "--warmup", "1", "--device", "cpu", "--no-memory"]


def test_quickstart_checkpoint_with_its_own_schedules(tmp_path, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    fit = run(
        [
            "fit",
            *tiny(tmp_path / "data", tmp_path / "runs"),
            "--model.init_args.merge",
            "1",
            "--model.init_args.eval_merge",
            "[2, 2]",
        ]
    )
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    out = tmp_path / "bench"
    assert benchmark.main(["--checkpoint", ckpt, *ARGS, "--targets", "1.2", "--out", str(out)]) == 0
    doc = json.loads((out / "benchmark.json").read_text())
    rows = {(r["model"], r["schedule"]): r for r in doc["rows"]}
    assert set(rows) == {
        ("hf", "r=0"),
        ("ours", "r=0"),
        ("ours", "ckpt eval"),
        ("ours", "ckpt train"),
        ("ours", "1.2x"),
    }
    # the checkpoint's own input size and patching (64 frames x 32 mel bins, stride 8)
    assert rows[("ours", "r=0")]["tokens"][0] == ASTModel.from_pretrained(ckpt).num_tokens == 23
    assert rows[("ours", "ckpt eval")]["r"] == [2, 2]
    assert rows[("ours", "ckpt train")]["r"] == [1, 1]
    assert (
        rows[("ours", "ckpt eval")]["flop_ratio"] > rows[("ours", "ckpt train")]["flop_ratio"] > 1
    )
    assert doc["meta"]["checkpoint"] == ckpt
    assert doc["meta"]["model_size"]["input_tdim"] == 64


@pytest.mark.slow  # a fresh interpreter, so that HF_HUB_OFFLINE/HF_HUB_CACHE are read as a user's
def test_hub_id_from_the_offline_cache(tmp_path):
    save_tiny_hf_ast(tmp_path / "hf")
    cache = tmp_path / "hub"
    place_in_hub_cache(tmp_path / "hf", cache, "tiny-org/tiny-ast", "0" * 40)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), PYTHONPATH="src")
    env.pop("HF_HOME", None)
    out = tmp_path / "bench"
    command = [
        sys.executable,
        "-m",
        "fastast_pl.tools.benchmark",
        "--checkpoint",
        "tiny-org/tiny-ast",
        *ARGS,
        "--targets",
        "1.3",
        "--out",
        str(out),
    ]
    proc = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "benchmark.json").read_text())
    names = [(r["model"], r["schedule"]) for r in doc["rows"]]
    assert names == [("hf", "r=0"), ("ours", "r=0"), ("ours", "1.3x")]  # HF stores no schedule
    size = doc["meta"]["model_size"]
    assert (size["input_tdim"], size["input_fdim"], size["embed_dim"]) == (FRAMES, MELS, 32)
