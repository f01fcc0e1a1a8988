"""docs/config.md is generated from the code: it must be current and describe every key."""

from pathlib import Path

from fastast_pl.tools.config_docs import render


def test_config_docs_are_current(repo_root):
    committed = (Path(repo_root) / "docs" / "config.md").read_text()
    assert committed == render(), (
        "regenerate: python -m fastast_pl config-docs --out docs/config.md"
    )


def test_every_config_key_has_a_description():
    rows = [line for line in render().splitlines() if line.startswith("| `")]
    assert len(rows) > 50
    undocumented = [row.split("|")[1].strip() for row in rows if not row.split("|")[4].strip()]
    assert not undocumented, f"config keys without a docstring description: {undocumented}"
