"""Check, before anything imports torchaudio, that torch and torchaudio belong together.

torchaudio is built against one torch release (and one CUDA build); beside any other it
fails deep inside its C++ extension with a message that does not say what to do. We
compare the installed distributions' versions instead and fail early with the fix.
"""

from __future__ import annotations

from importlib import metadata


def _release_and_build(version: str) -> tuple[str, str]:
    """'2.11.0+cu130' -> ('2.11', 'cu130'); a version without a local part has build ''."""
    public, _, local = version.partition("+")
    major_minor = ".".join(public.split(".")[:2])
    return major_minor, local


def check_torch_family() -> None:
    """Raise ImportError naming both versions when torch and torchaudio do not match."""
    try:
        torch_version = metadata.version("torch")
        audio_version = metadata.version("torchaudio")
    except metadata.PackageNotFoundError as err:
        raise ImportError(
            f"fastast_pl needs torch and torchaudio installed; {err.name} is missing. "
            "Run `make install` (or `pip install -e .`) to get the pinned pair."
        ) from err
    torch_rel, torch_build = _release_and_build(torch_version)
    audio_rel, audio_build = _release_and_build(audio_version)
    if torch_rel != audio_rel or (torch_build and audio_build and torch_build != audio_build):
        raise ImportError(
            f"torch {torch_version} and torchaudio {audio_version} do not belong together: "
            "torchaudio only imports beside the torch release (and CUDA build) it was built "
            f"with. Install torchaudio=={torch_rel}.* from the same index as torch, or run "
            "`make install`, which installs the pinned pair from pyproject.toml."
        )
