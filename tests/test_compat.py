"""The torch / torchaudio pairing check that runs when fastast_pl is imported."""

from importlib import metadata

import pytest

from fastast_pl import _compat


def _fake_versions(monkeypatch, versions: dict[str, str]) -> None:
    def version(name: str) -> str:
        if name not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(_compat.metadata, "version", version)


@pytest.mark.parametrize(
    "torch_version, audio_version",
    [("2.12.0", "2.11.0"), ("2.11.0+cu130", "2.11.0+cu128"), ("2.13.0+cpu", "2.11.0+cu130")],
)
def test_mismatched_pair_names_both_versions(monkeypatch, torch_version, audio_version):
    _fake_versions(monkeypatch, {"torch": torch_version, "torchaudio": audio_version})
    with pytest.raises(ImportError) as err:
        _compat.check_torch_family()
    assert torch_version in str(err.value) and audio_version in str(err.value)
    assert "make install" in str(err.value)


@pytest.mark.parametrize(
    "torch_version, audio_version",
    [
        ("2.11.0", "2.11.0"),
        ("2.11.0+cu130", "2.11.0+cu130"),
        ("2.11.1", "2.11.0"),
        ("2.11.0+cpu", "2.11.0"),
    ],
)
def test_matching_pairs_pass(monkeypatch, torch_version, audio_version):
    _fake_versions(monkeypatch, {"torch": torch_version, "torchaudio": audio_version})
    _compat.check_torch_family()


def test_missing_torchaudio_says_how_to_install(monkeypatch):
    _fake_versions(monkeypatch, {"torch": "2.11.0"})
    with pytest.raises(ImportError, match="torchaudio is missing"):
        _compat.check_torch_family()


def test_installed_pair_passes():
    _compat.check_torch_family()  # the environment the suite runs in
