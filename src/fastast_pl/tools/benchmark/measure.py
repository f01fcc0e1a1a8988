"""Measuring: clocks, interleaved timing of variants, peak memory, per-row figures, metadata.

Every benchmark measures a list of ``Variant``s the same way: one process, the timed calls
alternating between all variants round-robin (the order rotated by one every round), so a
drift in machine load hits every variant alike.

Peak memory is the peak of memory allocated *above what was held before the call*
(activations, gradients and workspaces; weights and the input excluded). CUDA:
``torch.cuda.max_memory_allocated``. CPU: the torch profiler's allocation events
(``profile_memory=True``) summed in time order over one extra, untimed call; this counts
tensor memory exactly, unlike process RSS, which the allocator's caching distorts.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

MEMORY_METHOD = {
    "cuda": "torch.cuda.max_memory_allocated above the memory held before the call",
    "cpu": "torch profiler allocation events (profile_memory=True), peak of the running sum "
    "over one untimed call; tensors only, weights and input excluded",
}
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass
class Variant:
    """One measured configuration: a model, a merge schedule and how it runs."""

    model: str  # "ours", "hf", "student", "distill"
    schedule: str  # display name: "r=0", "1.50x", ...
    target: float  # requested FLOP reduction factor (1.0 for none)
    r: list[int]
    tokens: list[int]
    gflops: float  # analytic GFLOPs per clip of what ``run`` does
    run: Callable[[torch.Tensor], object] = field(repr=False)
    prepare: Callable[[], None] = field(repr=False, default=lambda: None)
    mode: str = "eager"  # "eager", "bf16" (autocast) or "compile" (torch.compile)
    dtype: str = "fp32"


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for ``dtype == "bf16"``, else nothing."""
    if dtype == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def timed_call(v: Variant, x: torch.Tensor, device: torch.device, clock: str = "wall") -> float:
    """Seconds for one call of variant v (its merge schedule set beforehand, untimed)."""
    now = CLOCKS[clock]
    v.prepare()
    sync(device)
    t0 = now()
    with autocast(device, v.dtype):
        v.run(x)
    sync(device)
    return now() - t0


def rounds(variants: Sequence[Variant], n: int) -> Iterator[list[Variant]]:
    """n rounds over all variants, the order rotated by one every round."""
    k = len(variants)
    for i in range(n):
        yield [variants[(i + j) % k] for j in range(k)]


@dataclass
class Timings:
    """Per variant (by id): the wall seconds of its first call and the timed calls."""

    first_call_s: dict[int, float]
    times: dict[int, list[float]]


def interleaved_times(
    variants: Sequence[Variant],
    x: torch.Tensor,
    device: torch.device,
    warmup: int,
    iters: int,
    clock: str,
    advance: Callable[[], None] = lambda: None,
) -> Timings:
    """One untimed first call per variant (its wall time kept: compile time), ``warmup - 1``
    more untimed rounds, then ``iters`` timed rounds."""
    first = {}
    for v in variants:
        first[id(v)] = timed_call(v, x, device, "wall")
        advance()
    for rnd in rounds(variants, max(warmup - 1, 0)):
        for v in rnd:
            timed_call(v, x, device)
            advance()
    times: dict[int, list[float]] = {id(v): [] for v in variants}
    for rnd in rounds(variants, iters):
        for v in rnd:
            times[id(v)].append(timed_call(v, x, device, clock))
            advance()
    return Timings(first, times)


def peak_memory_mb(v: Variant, x: torch.Tensor, device: torch.device) -> float:
    """Peak memory (MiB) allocated above the pre-call state during one call of v."""
    v.prepare()
    gc.collect()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        with autocast(device, v.dtype):
            v.run(x)
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            with autocast(device, v.dtype):
                out = v.run(x)
            del out
    # Each "[memory]" record is one allocation (+bytes) or free (-bytes) of the CPU
    # allocator; the running sum in time order is the tensor memory held at each moment.
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    held = peak = 0
    for e in events:
        held += e.nbytes()
        peak = max(peak, held)
    return peak / 2**20


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarise(
    variants: Sequence[Variant],
    batch_size: int,
    timings: Timings,
    memory: dict[int, float | None],
) -> list[dict]:
    """One row per variant: latency, throughput, and its speed-up and FLOP ratio against
    the r=0 variant of the same model and mode (plus vs eager and vs HF where present)."""
    median = {k: statistics.median(v) for k, v in timings.times.items()}

    def find(model: str, mode: str, schedule: str) -> Variant | None:
        match = (v for v in variants if (v.model, v.mode, v.schedule) == (model, mode, schedule))
        return next(match, None)

    hf = find("hf", "eager", "r=0")
    rows = []
    for v in variants:
        base = find(v.model, v.mode, "r=0") or v
        eager = find(v.model, "eager", v.schedule)
        lat = [t * 1e3 for t in timings.times[id(v)]]
        speedup = median[id(base)] / median[id(v)]
        rows.append(
            {
                "model": v.model,
                "schedule": v.schedule,
                "mode": v.mode,
                "dtype": v.dtype,
                "target": v.target,
                "batch_size": batch_size,
                "r": list(v.r),
                "tokens": list(v.tokens),
                "gflops_per_clip": v.gflops,
                "flop_ratio": base.gflops / v.gflops,
                "latency_ms_median": median[id(v)] * 1e3,
                "latency_ms_p90": quantile(lat, 0.9),
                # Median-based: robust to the odd disturbed call on a shared machine.
                "throughput": batch_size / median[id(v)],
                "speedup": speedup,
                "speedup_per_flop_ratio": speedup / (base.gflops / v.gflops),
                "speedup_vs_eager": (
                    median[id(eager)] / median[id(v)] if eager and v.mode != "eager" else None
                ),
                "speedup_vs_hf": (
                    median[id(hf)] / median[id(v)] if hf and v.mode == "eager" else None
                ),
                "compile_s": timings.first_call_s[id(v)] if v.mode == "compile" else None,
                "peak_mem_mb": memory[id(v)],
                "latencies_ms": lat,
            }
        )
    return rows


def measure_batches(
    variants: Sequence[Variant],
    input_shape: tuple[int, int],
    batch_sizes: Sequence[int],
    settings: RunSettings,
    what: str,
    with_memory: bool,
) -> list[dict]:
    """Rows of every variant at every batch size, on random (B, T, F) inputs."""
    s, rows = settings, []
    with progress() as bar:
        task = bar.add_task(what, total=len(batch_sizes) * (max(s.warmup, 1) + s.iters)
                            * len(variants))  # fmt: skip
        for bs in batch_sizes:
            x = torch.randn(bs, *input_shape, device=s.device)  # (B, T, F)
            timings = interleaved_times(variants, x, s.device, s.warmup, s.iters, s.clock,
                                        lambda: bar.advance(task))  # fmt: skip
            # Memory of a compiled variant would count the compiler's own work, and the torch
            # profiler does not see ONNX Runtime's (int8): both left out.
            mem = {id(v): peak_memory_mb(v, x, s.device)
                   if with_memory and v.mode not in ("compile", "int8") else None
                   for v in variants}  # fmt: skip
            rows += summarise(variants, bs, timings, mem)
    return rows


def flop_ratio_checks(rows: Sequence[dict], what: str, count: str = "bs") -> list[dict]:
    """The issue's target: speed-up >= 0.9 x the FLOP ratio for every schedule whose FLOP
    target is up to 2x (``count`` names what a row's ``batch_size`` counts)."""
    return [
        {
            "check": f"{what} speed-up >= 0.9 x FLOP ratio ({r['model']} {r['schedule']} "
            f"{r['mode']}, {count}={r['batch_size']})",
            "value": round(r["speedup_per_flop_ratio"], 3),
            "passed": r["speedup_per_flop_ratio"] >= 0.9,
        }
        for r in rows
        if 1.0 < r["target"] <= 2.0
    ]


def progress():
    """A progress bar on stderr (rich where installed, else nothing: the GPU path)."""
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    except ImportError:
        return _NoProgress()
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: object, **kwargs: object) -> int:
        return 0

    def advance(self, *args: object) -> None:
        pass


# ----------------------------------------------------------------------------- metadata


def loadavg() -> list[float] | None:
    """1/5/15-minute load average, where the OS has one."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class RunSettings:
    """How a benchmark runs, whatever its kind (the CLI's common options)."""

    iters: int
    warmup: int
    device: torch.device
    dtype: str = "fp32"
    targets: tuple[float, ...] = ()
    shape: str = "constant"
    seed: int = 0
    clock: str = "wall"
    attn_backend: str = "auto"


def start_meta(settings: RunSettings) -> dict:
    """Seed torch; record the machine, versions, settings, start time and load."""
    torch.manual_seed(settings.seed)
    meta = run_meta(settings.device, settings.dtype, settings.iters, settings.warmup,
                    settings.clock)  # fmt: skip
    meta.update(shape=settings.shape, targets=list(settings.targets),
                attn_backend=settings.attn_backend, started=time.perf_counter())  # fmt: skip
    return meta


def finish_meta(meta: dict, kind: str, size: object, **extra: object) -> dict:
    """Add what ran, the load after it and the wall time since ``start_meta``."""
    started = meta.pop("started")
    meta.update(kind=kind, model_size=dict(size.__dict__), load_average_after=loadavg(),
                wall_s=round(time.perf_counter() - started, 1), **extra)  # fmt: skip
    return meta


def run_meta(device: torch.device, dtype: str, iters: int, warmup: int, clock: str) -> dict:
    """Where and how a run was taken: machine, versions, settings, start time and load."""
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "timm": _version("timm"),
        "python": platform.python_version(),
        "dtype": dtype,
        "iters": iters,
        "warmup": warmup,
        "clock": clock,
        "load_average_before": loadavg(),
        "memory_method": MEMORY_METHOD[device.type],
        "throughput_method": "batch_size / median latency; timed calls alternate between "
        "variants round-robin (order rotated every round)",
    }
