"""The one timing engine: interleaved rounds of every variant, one clock, a spread per variant.

Every speed figure of the project (the ``benchmark`` tool, the demo's table, ``report``'s
measured speed-ups, ``benchmark --checkpoint``) is timed here and nowhere else; nothing is
timed inside a training or test loop. Variants run in one process, the timed calls
alternating between all variants round-robin (the order rotated by one every round), so a
drift in machine load hits every variant alike. The clock is the wall clock or this
process's CPU time (robust to other processes on a shared CPU when one torch thread runs).

A variant is anything callable on one input batch: ``Variant.run(x)``, with an untimed
``prepare()`` before each call (for instance switching a model's merge schedule). Extra
variants (another dtype, a quantised copy) are more ``Variant``s with their own ``mode``.

Peak memory is the peak of memory allocated *above what was held before the call*
(activations, gradients and workspaces; weights and the input excluded). CUDA:
``torch.cuda.max_memory_allocated``. CPU: the torch profiler's allocation events
(``profile_memory=True``) summed in time order over one extra, untimed call; this counts
tensor memory exactly, unlike process RSS, which the allocator's caching distorts.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass
class Variant:
    """One measured configuration: a model, a merge schedule and how it runs."""

    model: str  # "ours", "hf", "student", "distill", ...
    schedule: str  # display name: "r=0", "1.5x", ...
    target: float  # requested FLOP reduction factor (1.0 for none)
    r: list[int]
    tokens: list[int]
    gflops: float  # analytic GFLOPs per clip of what ``run`` does
    run: Callable[[torch.Tensor], object] = field(repr=False)
    prepare: Callable[[], None] = field(repr=False, default=lambda: None)
    mode: str = "eager"  # "eager", "bf16" (autocast), "compile" (torch.compile), ...
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


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (None: leave torch's setting), restored afterwards."""
    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise ValueError(f"threads={n}: expected >= 1")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def timed_call(v: Variant, x: torch.Tensor, device: torch.device, clock: str = "wall") -> float:
    """Seconds for one call of variant v (its ``prepare`` run beforehand, untimed)."""
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
    if clock not in CLOCKS:
        raise ValueError(f"clock={clock!r}: expected one of {sorted(CLOCKS)}")
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


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def spread(seconds: Sequence[float], clips: int) -> dict[str, float]:
    """clips/s at the median call, and at the slowest and fastest call (its spread)."""
    return {
        "clips_per_s": clips / statistics.median(seconds),
        "clips_per_s_min": clips / max(seconds),
        "clips_per_s_max": clips / min(seconds),
    }


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

    # Kineto (the profiler's C++ side) logs to stderr, e.g. "gpuGetDeviceCount failed" where
    # CUDA libraries are installed without a GPU; a failed collection shows as no events below.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            with autocast(device, v.dtype):
                out = v.run(x)
            del out
    # Each "[memory]" record is one allocation (+bytes) or free (-bytes) of the CPU
    # allocator; the running sum in time order is the tensor memory held at each moment.
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    if not events:  # a model call allocates: none recorded means the profiler failed
        raise RuntimeError(
            "the torch profiler recorded no CPU allocation during the call; measure without "
            "memory (benchmark --no-memory)"
        )
    events.sort(key=lambda e: e.start_ns())
    held = peak = 0
    for e in events:
        held += e.nbytes()
        peak = max(peak, held)
    return peak / 2**20


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
