"""A tiny fit, a test from its checkpoint and a CPU memory measurement print none of the
library messages that ask nothing of the user, and still print those that do.

Run in a fresh interpreter: Lightning shows some messages once per process, and Kineto
writes to the stderr file descriptor from C++.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import fastast_pl
from fastast_pl.speed.engine import Variant, peak_memory_mb

from helpers.tiny_run import tiny

SCRIPT = r"""
import json, sys, torch
from fastast_pl.cli import main
from fastast_pl.speed.engine import Variant, peak_memory_mb
fit, test = json.loads(sys.argv[1])
main(fit)
main(test)
layer = torch.nn.Linear(64, 64)
variant = Variant("layer", "r=0", 1.0, [], [], 0.0, run=layer)
print("peak MiB > 0:", peak_memory_mb(variant, torch.randn(8, 64), torch.device("cpu")) > 0)
"""

NOISE = (
    "tensorboardX",  # Lightning's default-logger notice
    "litlogger",  # Lightning's advertisement
    "LeafSpec",  # torch deprecating what Lightning's _pytree calls
    "The dirpath has changed",  # test from another run's checkpoint
    "gpuGetDeviceCount",  # Kineto on a machine with CUDA libraries and no GPU
    "capped",  # no schedule of this run is capped
)


def test_a_tiny_run_prints_no_library_noise(tmp_path):
    args = tiny(tmp_path / "data", tmp_path / "runs")
    commands = [["fit", *args], ["test", *args, "--ckpt_path", "last"]]
    src = os.path.dirname(os.path.dirname(fastast_pl.__file__))
    env = {**os.environ, "PYTHONPATH": src, "WANDB_MODE": "offline"}
    env.pop("KINETO_LOG_LEVEL", None)
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(commands)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    printed = run.stdout + run.stderr
    assert run.returncode == 0, printed[-3000:]
    assert "peak MiB > 0: True" in printed and "test/acc" in printed
    for message in NOISE:
        assert message not in printed, message
    # a message that asks the user to act is still shown
    assert "Set a lower value for log_every_n_steps" in printed


def test_a_memory_measurement_without_allocations_is_an_error_not_zero():
    """With Kineto's own log silenced, a profiler that recorded nothing must not read as
    0 MiB: a call with no allocation stands in for a failed collection."""
    x = torch.randn(4, 8)
    nothing = Variant("none", "r=0", 1.0, [], [], 0.0, run=lambda x: None)
    with pytest.raises(RuntimeError, match="recorded no CPU allocation.*--no-memory"):
        peak_memory_mb(nothing, x, torch.device("cpu"))
