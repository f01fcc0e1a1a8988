"""Where and how a speed figure was taken: machine, versions, settings, load.

A clips/s number means little without the machine, the thread count, the clock and the
load it ran under; every figure the engine produces carries this record.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path

import torch

MEMORY_METHOD = {
    "cuda": "torch.cuda.max_memory_allocated above the memory held before the call",
    "cpu": "torch profiler allocation events (profile_memory=True), peak of the running sum "
    "over one untimed call; tensors only, weights and input excluded",
}


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
