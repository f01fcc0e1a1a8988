"""Smoke test of the model benchmark: a tiny run writes the JSON and PNG it promises.

No timing assertions: speed is measured by the benchmark itself, never in unit tests.
"""

from __future__ import annotations

import json
import math

import pytest

from fastast_pl.tome.flops import vit_flops
from fastast_pl.tools import benchmark


def test_tiny_benchmark_writes_json_and_png(tmp_path):
    out = tmp_path / "bench"
    code = benchmark.main(
        [
            "--tiny",
            "--batch-sizes", "1", "2",
            "--iters", "2",
            "--warmup", "1",
            "--targets", "2", "1.5",
            "--device", "cpu",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    assert (out / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| ours | 2x |" in (out / "benchmark.md").read_text()
    doc = json.loads((out / "benchmark.json").read_text())

    meta = doc["meta"]
    assert meta["device"] == "cpu" and meta["dtype"] == "fp32" and meta["iters"] == 2
    assert meta["torch"] and meta["cpu"] and meta["cpu_count"] >= 1

    rows = doc["rows"]
    # HF baseline + our r=0 + one row per target, for each batch size.
    assert len(rows) == 2 * (1 + 1 + 2)
    for bs in (1, 2):
        mine = [r for r in rows if r["batch_size"] == bs]
        assert [(r["model"], r["schedule"]) for r in mine] == [
            ("hf", "r=0"),
            ("ours", "r=0"),
            ("ours", "1.5x"),
            ("ours", "2x"),
        ]
        for r in mine:
            assert len(r["latencies_ms"]) == 2
            assert r["latency_ms_median"] > 0 and r["throughput"] > 0
            assert r["latency_ms_p90"] >= min(r["latencies_ms"])
            assert r["peak_mem_mb"] is not None and r["peak_mem_mb"] >= 0
            assert math.isclose(r["throughput"], bs / (r["latency_ms_median"] / 1e3))
        hf, base, s15, s2 = mine
        assert base["speedup"] == pytest.approx(1.0)
        assert base["flop_ratio"] == pytest.approx(1.0) and hf["flop_ratio"] == pytest.approx(1.0)
        # Merge schedules: fewer tokens, FLOP ratio > 1 and growing with the target,
        # close to the requested factor.
        assert 1.0 < s15["flop_ratio"] < s2["flop_ratio"]
        assert s15["flop_ratio"] == pytest.approx(1.5, rel=0.05)
        assert s2["flop_ratio"] == pytest.approx(2.0, rel=0.05)
        assert sum(s2["r"]) > sum(s15["r"]) > 0 and sum(base["r"]) == 0
        assert s2["tokens"][-1] < s15["tokens"][-1] < base["tokens"][-1]

        # The FLOP ratio follows from the token counts reported in the row (independent
        # recount with the dense per-block formula: 24 N C^2 + 4 N^2 C for C=64, mlp 4x).
        def dense(tokens):
            return sum(
                2 * (4 * n * 64 * 64 + 2 * n * n * 64) + 2 * (8 * m * 64 * 64)
                for n, m in zip(tokens[:-1], tokens[1:])
            )

        assert s2["flop_ratio"] == pytest.approx(dense(base["tokens"]) / dense(s2["tokens"]))
        assert base["gflops_per_clip"] == pytest.approx(vit_flops(base["tokens"], 64) / 1e9)
    checks = doc["checks"]
    assert checks and all(isinstance(c["passed"], bool) for c in checks)


def test_bad_arguments_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="--targets"):
        benchmark.main(["--tiny", "--targets", "0.5", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="--iters"):
        benchmark.main(["--tiny", "--iters", "0", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match="--clock cpu"):
        benchmark.main(["--tiny", "--clock", "cpu", "--device", "cuda", "--out", str(tmp_path)])
    assert not (tmp_path / "benchmark.json").exists()


def test_cpu_clock_single_thread_run(tmp_path):
    """The contention-robust mode (process CPU time, one thread) runs and says so."""
    import torch

    threads = torch.get_num_threads()
    argv = ["--tiny", "--batch-sizes", "1", "--iters", "1", "--warmup", "0", "--no-hf"]
    argv += ["--no-memory", "--targets", "1.5", "--clock", "cpu", "--threads", "1"]
    assert benchmark.main([*argv, "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "benchmark.json").read_text())
    assert doc["meta"]["clock"] == "cpu" and doc["meta"]["torch_threads"] == 1
    assert [r["model"] for r in doc["rows"]] == ["ours", "ours"]
    assert all(r["peak_mem_mb"] is None and r["speedup_vs_hf"] is None for r in doc["rows"])
    assert torch.get_num_threads() == threads  # restored


def test_data_benchmark_fills_and_reads_the_cache(tmp_path):
    from fastast_pl.tools import bench_data

    code = bench_data.main(
        ["--clips", "3", "--seconds", "1", "--target-length", "100", "--out", str(tmp_path)]
    )
    assert code == 0
    doc = json.loads((tmp_path / "data_benchmark.json").read_text())
    assert set(doc["stages"]) == {"decode", "decode+resample", "fbank"}
    assert set(doc["epochs"]) == {"epoch1_uncached", "epoch2_cached"}
    for row in [*doc["stages"].values(), *doc["epochs"].values()]:
        assert row["clips_per_s"] > 0 and row["ms_per_clip_median"] > 0
    e1, e2 = doc["epochs"]["epoch1_uncached"], doc["epochs"]["epoch2_cached"]
    assert doc["cache_speedup"] == pytest.approx(e2["clips_per_s"] / e1["clips_per_s"])
    assert doc["meta"]["clips"] == 3 and doc["meta"]["file_sample_rate"] == 44100


def test_data_benchmark_clips_are_what_it_claims(tmp_path):
    import soundfile as sf

    from fastast_pl.tools.bench_data import write_clips

    paths = write_clips(tmp_path, 2, 0.5, 44100)
    for p in paths:
        info = sf.info(str(p))
        assert (info.samplerate, info.frames, info.channels) == (44100, 22050, 1)
