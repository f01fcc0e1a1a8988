"""The commands the README and docs/config.md show work as shown (a new user met some that
did not: `fit --data.help` exiting 2, an AudioSet model scored with softmax)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fastast_pl.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md").read_text() + (ROOT / "docs" / "config.md").read_text()
HELP = re.compile(r"--([\w.]+)\.help(?:[ =]([\w.]+))?")


def _documented_help() -> list[tuple[str, str]]:
    return sorted(set(HELP.findall(DOCS)))


def test_the_docs_name_help_commands():
    assert len(_documented_help()) >= 3


@pytest.mark.parametrize("key, target", _documented_help())
def test_documented_help_prints_and_exits_0(key, target, capsys):
    # Only subclass-typed keys have `.help`; it takes the class whose keys to show.
    assert target, f"--{key}.help without a class: LightningCLI needs one"
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", f"--{key}.help", target])
    assert exit_info.value.code == 0
    assert f"--{key}." in capsys.readouterr().out


def test_audioset_classify_examples_score_multi_label():
    """A hub model gives fastast_pl no label kind (softmax is assumed): without
    `--label-kind multi` its 527 scores would be a softmax (summing to 1)."""
    lines = DOCS.replace("\\\n", " ").splitlines()  # shell continuations joined
    commands = [ln for ln in lines if "fastast_pl classify" in ln and "audioset" in ln.lower()]
    assert commands
    for command in commands:
        assert "--label-kind multi" in command, command
