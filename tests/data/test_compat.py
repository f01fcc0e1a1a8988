"""The torchaudio-beside-torch check that runs when fastast_pl.data is imported, and the
parts that need no audio (tome, models) importing without torchaudio.

Each broken case is real: a stub ``torchaudio`` package placed first on the path of a
fresh interpreter, which then imports fastast_pl.data (or the inference API). Without the
check those imports fail with the stub's bare error (or, for the missing function, with an
ImportError naming neither version nor fix), so every assertion below fails if the check is
removed.
"""

import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

import fastast_pl

SRC = Path(fastast_pl.__file__).resolve().parents[1]
LOADER_ERROR = (
    "Could not load this library: /site-packages/torchaudio/lib/libtorchaudio.so\n"
    "/site-packages/torchaudio/lib/libtorchaudio.so: undefined symbol: "
    "torch_exception_get_what_without_backtrace"
)


def _import_with_stub(
    tmp_path: Path, stub_init: str, code: str = "import fastast_pl.data"
) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter whose `torchaudio` is the given stub."""
    stub = tmp_path / "stub" / "torchaudio"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(textwrap.dedent(stub_init))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stub.parent), str(SRC)])}
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_unloadable_extension_names_versions_loader_line_and_fix(tmp_path):
    result = _import_with_stub(tmp_path, f"raise OSError({LOADER_ERROR!r})")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: torchaudio ")
    assert metadata.version("torch") in last and metadata.version("torchaudio") in last
    assert "undefined symbol: torch_exception_get_what_without_backtrace" in last
    assert "make install" in last
    assert "torch==" in last and "torchaudio==" in last  # the pair from the lock


@pytest.mark.slow
def test_missing_function_is_caught_too(tmp_path):
    # The library loads, but a function the pipeline needs is not there.
    result = _import_with_stub(
        tmp_path,
        """
        import types, sys
        sys.modules["torchaudio.compliance"] = types.ModuleType("torchaudio.compliance")
        """,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: torchaudio ") and "make install" in last
    assert "kaldi" in last


@pytest.mark.slow
def test_inference_api_runs_the_check_too(tmp_path):
    result = _import_with_stub(
        tmp_path, f"raise OSError({LOADER_ERROR!r})", "from fastast_pl import AudioClassifier"
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: torchaudio ") and "make install" in last


@pytest.mark.slow
@pytest.mark.parametrize(
    "code",
    [
        # hear21passt imports torchaudio itself: without the check, the stub's bare OSError.
        "from fastast_pl.models.passt_teacher import PasstArch, load_passt_teacher\n"
        "load_passt_teacher('weights.pt', PasstArch(), 16000)",
        "import torch\nfrom fastast_pl.models.waveform_teacher import resample\n"
        "resample(torch.zeros(1, 800), 16000, 8000)",
    ],
    ids=["passt-teacher", "waveform-teacher-resample"],
)
def test_waveform_teachers_run_the_check_too(tmp_path, code):
    result = _import_with_stub(tmp_path, f"raise OSError({LOADER_ERROR!r})", code)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: torchaudio ") and "make install" in last


@pytest.mark.slow
def test_tome_and_models_import_without_torchaudio(tmp_path):
    # As if torchaudio were not installed: importing it raises ImportError.
    code = "import fastast_pl, fastast_pl.tome, fastast_pl.models; print('imported')"
    result = _import_with_stub(tmp_path, "raise ImportError('No module named torchaudio')", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"


@pytest.mark.slow
def test_working_stack_imports_in_a_fresh_interpreter():
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    result = subprocess.run(
        [sys.executable, "-c", "import fastast_pl.data"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
