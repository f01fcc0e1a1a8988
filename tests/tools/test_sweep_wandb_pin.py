"""Local sweeps use wandb's internal ``wandb.sdk.launch.sweeps.utils``: pyproject.toml bounds
wandb to the tested line (the installed, locked wandb must be inside it), and a wandb
without that module is an ImportError naming the module, the version found and the range."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def test_locked_wandb_is_inside_the_bound_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (wandb,) = [Requirement(r) for r in project["dependencies"] if r.startswith("wandb")]
    assert wandb.specifier.filter([version("wandb")]), (wandb, version("wandb"))
    assert any(s.operator == "<" for s in wandb.specifier)  # an internal API: bounded


def test_wandb_without_the_sweep_module_is_named() -> None:
    code = (
        "import sys; sys.modules['wandb.sdk.launch.sweeps.utils'] = None; "
        "import fastast_pl.tools.sweep.spec"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode != 0
    assert "wandb.sdk.launch.sweeps.utils" in done.stderr
    assert f"which wandb {version('wandb')} does not have" in done.stderr
    assert "wandb>=0.19,<0.32" in done.stderr
