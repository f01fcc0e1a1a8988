"""Smoke test of the model benchmark: a tiny run writes the JSON and PNG it promises.

No timing assertions: speed is measured by the benchmark itself, never in unit tests.
"""

from __future__ import annotations

import json
import math

import pytest

from fastast_pl.tome.flops import vit_flops
from fastast_pl.tools import benchmark


@pytest.mark.slow
def test_tiny_benchmark_writes_json_and_png(tmp_path):
    out = tmp_path / "bench"
    code = benchmark.main(
        [
            "--tiny",
            "--batch-sizes",
            "1",
            "2",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--targets",
            "2",
            "1.5",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )
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
    from fastast_pl.tools.benchmark import data_loading as bench_data

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

    from fastast_pl.speed.data_loading import write_clips

    paths = write_clips(tmp_path, 2, 0.5, 44100)
    for p in paths:
        info = sf.info(str(p))
        assert (info.samplerate, info.frames, info.channels) == (44100, 22050, 1)


def test_training_benchmark_rows_and_flops(tmp_path):
    """Student and distillation steps per schedule; FLOPs = 3x forward matmuls (+ teacher)."""
    from fastast_pl.tome.flops import training_flops

    argv = ["--kind", "train", "--tiny", "--batch-sizes", "2", "--iters", "1", "--warmup", "0"]
    argv += ["--targets", "2", "--no-memory", "--out", str(tmp_path)]
    assert benchmark.main(argv) == 0
    doc = json.loads((tmp_path / "train_benchmark.json").read_text())
    assert "| student | 2x | eager |" in (tmp_path / "train_benchmark.md").read_text()
    rows = {(r["model"], r["schedule"]): r for r in doc["rows"]}
    assert set(rows) == {
        ("student", "r=0"),
        ("student", "2x"),
        ("distill", "r=0"),
        ("distill", "2x"),
    }
    for (model, _), r in rows.items():
        student = training_flops(r["tokens"], 64) / 1e9
        if model == "student":
            assert r["gflops_per_clip"] == pytest.approx(student)
        else:  # plus the teacher's forward, the same for every schedule
            assert r["gflops_per_clip"] > student
    teacher = [
        rows[("distill", s)]["gflops_per_clip"]
        - training_flops(rows[("distill", s)]["tokens"], 64) / 1e9
        for s in ("r=0", "2x")
    ]
    assert teacher[0] == pytest.approx(teacher[1])
    # Distillation's FLOP ratio is diluted by the teacher's constant share.
    assert 1.0 < rows[("distill", "2x")]["flop_ratio"] < rows[("student", "2x")]["flop_ratio"]
    assert doc["meta"]["kind"] == "train" and doc["meta"]["teacher"] == "mobilenetv3_small_050"


def test_training_step_updates_the_student_and_frees_its_gradients():
    import torch

    from fastast_pl.speed.measure import RunSettings
    from fastast_pl.speed.models import TINY
    from fastast_pl.speed.training import make_variants

    settings = RunSettings(iters=1, warmup=0, device=torch.device("cpu"), targets=(2.0,))
    variants = make_variants(TINY, settings, distill=True, tiny=True)
    distill_2x = next(v for v in variants if (v.model, v.schedule) == ("distill", "2x"))
    params = _student_params(distill_2x)
    before = [p.detach().clone() for p in params]
    distill_2x.prepare()
    distill_2x.run(torch.randn(2, TINY.input_tdim, TINY.input_fdim))
    assert any(not torch.equal(a, b) for a, b in zip(before, params))
    assert all(p.grad is not None for p in params)


def _student_params(variant):
    """The student the variant's prepare() switches (found through its closure)."""
    (cell,) = [c for c in variant.prepare.__closure__ if hasattr(c.cell_contents, "blocks")]
    return list(cell.cell_contents.parameters())


def test_epoch_benchmark_reads_the_cache(tmp_path):
    argv = ["--kind", "epoch", "--tiny", "--clips", "4", "--batch-sizes", "2", "--iters", "1"]
    argv += ["--warmup", "0", "--targets", "2", "--out", str(tmp_path)]
    assert benchmark.main(argv) == 0
    doc = json.loads((tmp_path / "epoch_benchmark.json").read_text())
    assert [r["schedule"] for r in doc["rows"]] == ["r=0", "2x"]
    for r in doc["rows"]:
        assert r["batch_size"] == 4  # a row's "batch" is the whole 4-clip epoch
        assert math.isclose(r["throughput"], 4 / (r["latency_ms_median"] / 1e3))
        assert 0.0 < r["data_share"] < 1.0
    assert doc["meta"]["clips"] == 4 and doc["meta"]["loader_batch_size"] == 2


@pytest.mark.slow
def test_bf16_and_compile_columns(tmp_path, monkeypatch):
    """Mode columns: bf16 autocast, and torch.compile of one merged copy per schedule.

    The suite compiles with the aot_eager backend (dynamo traces the ToMe blocks, autograd
    is functionalised, no C++ codegen: seconds, not minutes); benchmarks use inductor."""
    import torch

    from fastast_pl.speed import inference

    monkeypatch.setattr(
        inference, "compiled", lambda m: torch.compile(m, backend="aot_eager", dynamic=False)
    )
    argv = ["--tiny", "--batch-sizes", "1", "--iters", "1", "--warmup", "1", "--no-hf"]
    argv += ["--no-memory", "--targets", "2", "--modes", "eager", "bf16", "compile"]
    assert benchmark.main([*argv, "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "benchmark.json").read_text())
    rows = {(r["mode"], r["schedule"]): r for r in doc["rows"]}
    assert set(rows) == {(m, s) for m in ("eager", "bf16", "compile") for s in ("r=0", "2x")}
    for (mode, _), r in rows.items():
        assert (r["compile_s"] is not None) == (mode == "compile")
        assert (r["speedup_vs_eager"] is None) == (mode == "eager")
        assert r["dtype"] == ("bf16" if mode == "bf16" else "fp32")
        assert r["tokens"] == rows[("eager", r["schedule"])]["tokens"]


@pytest.mark.slow
def test_compiled_merged_model_matches_eager():
    """The compiled merged copy computes what the eager model computes."""
    import torch

    from fastast_pl.speed.models import TINY, build_student

    model = build_student(TINY).eval()
    model.set_merge(20)
    x = torch.randn(2, TINY.input_tdim, TINY.input_fdim)
    with torch.inference_mode():
        eager = model(x)
        got = torch.compile(model, backend="aot_eager", dynamic=False)(x)
    torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_gpu_command_needs_only_torch_timm_transformers_lightning(tmp_path):
    """``make bench-gpu`` runs ``python -m fastast_pl.tools.benchmark``: it must work without
    rich, matplotlib, soundfile, jsonargparse or wandb (absent on the GPU machine)."""
    import subprocess
    import sys

    blocked = ["rich", "matplotlib", "soundfile", "jsonargparse", "wandb", "optuna"]
    code = (
        "import sys\n"
        "class Hide:\n"  # every finder says "not installed", as on the GPU machine
        "    def __init__(self, finder): self.finder = finder\n"
        "    def __getattr__(self, name): return getattr(self.finder, name)\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}: return None\n"
        "        return self.finder.find_spec(name, path, target)\n"
        "    def find_distributions(self, context=None, **kw):\n"
        "        found = getattr(self.finder, 'find_distributions', lambda *a, **k: [])\n"
        f"        return [d for d in found(context, **kw) if d.name.lower() not in {blocked!r}]\n"
        "sys.meta_path = [Hide(f) if hasattr(f, 'find_spec') else f for f in sys.meta_path]\n"
        "from fastast_pl.tools.benchmark.cli import main\n"
        "common = ['--tiny', '--batch-sizes', '2', '--iters', '1', '--warmup', '0',"
        " '--targets', '2', '--dtype', 'bf16', '--no-memory', '--out', sys.argv[1]]\n"
        "assert main(common) == 0\n"
        "assert main(['--kind', 'train', *common]) == 0\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert {p.name for p in tmp_path.iterdir()} == {
        "benchmark.json",
        "benchmark.md",
        "train_benchmark.json",
        "train_benchmark.md",
    }


def test_int8_column_runs_onnx_runtime_per_schedule(tmp_path):
    """The int8 mode: one ONNX Runtime int8 copy per schedule, same tokens as eager, no
    profiler memory (ONNX Runtime allocates outside torch), CPU only."""
    argv = ["--tiny", "--batch-sizes", "1", "--iters", "1", "--warmup", "1", "--no-hf"]
    argv += ["--targets", "2", "--modes", "eager", "int8", "--device", "cpu"]
    assert benchmark.main([*argv, "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "benchmark.json").read_text())
    rows = {(r["mode"], r["schedule"]): r for r in doc["rows"]}
    assert set(rows) == {(m, s) for m in ("eager", "int8") for s in ("r=0", "2x")}
    for (mode, schedule), r in rows.items():
        assert r["dtype"] == ("int8" if mode == "int8" else "fp32")
        assert (r["peak_mem_mb"] is None) == (mode == "int8")
        assert r["tokens"] == rows[("eager", schedule)]["tokens"]


def test_short_clip_rows_against_the_padded_window(tmp_path):
    """--short-clips: crop-pos and merge-pad rows per clip at r=0, their tokens counted here
    from the patch columns, the speed-up taken against eager r=0 (the padded window)."""
    argv = ["--tiny", "--batch-sizes", "1", "--iters", "2", "--warmup", "1", "--no-hf"]
    argv += ["--targets", "2", "--short-clips", "0.5", "--device", "cpu", "--no-memory"]
    assert benchmark.main([*argv, "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "benchmark.json").read_text())
    rows = {(r["mode"], r["schedule"]): r for r in doc["rows"]}
    assert set(rows) == {("eager", "r=0"), ("eager", "2x"), ("crop-pos", "0.5 s"),
                         ("merge-pad", "0.5 s")}  # fmt: skip
    # TINY: 128 frames x 128 mel bins, patch 16, stride 10: 12 x 12 patches. 0.5 s at 16 kHz,
    # 25/10 ms: 1 + (8000 - 400) // 160 = 48 frames. crop-pos: 5 columns cover 56 frames;
    # merge-pad: columns start at 0, 10, 20, 30, 40 (< 48), then one token per row.
    assert doc["meta"]["short_clips"] == [{"clip": "0.5 s", "frames": 48}]
    assert rows[("crop-pos", "0.5 s")]["tokens"] == [2 + 12 * 5] * 5
    assert rows[("merge-pad", "0.5 s")]["tokens"] == [2 + 12 * 6] * 5
    for mode in ("crop-pos", "merge-pad"):
        r = rows[(mode, "0.5 s")]
        assert r["r"] == [0, 0, 0, 0]
        assert math.isclose(r["flop_ratio"], vit_flops([146] * 5, 64) / vit_flops(r["tokens"], 64))
        low, high = map(float, r["speedup_range"].split("-"))
        assert low <= high
    with pytest.raises(ValueError, match="shorter than the model's window"):
        benchmark.main([*argv, "--short-clips", "2", "--out", str(tmp_path)])  # 198 > 128
    with pytest.raises(ValueError, match="only --kind inference"):
        benchmark.main(["--kind", "train", "--tiny", "--short-clips", "1", "--out", str(tmp_path)])
