"""Test-session settings: one torch thread per test process, W&B never online.

The suite runs under pytest-xdist with one process per core; torch's default of one
thread per core in every process oversubscribes the CPU and makes small ops crawl.
"""

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)


@pytest.fixture()
def repo_root() -> str:
    """The repository root (configs in experiments/ are referred to from here)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
