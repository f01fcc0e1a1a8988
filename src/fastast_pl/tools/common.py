"""What every tool subcommand shares: one-line user errors and reading a config's data section."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from jsonargparse import ArgumentError, ArgumentParser, Namespace

from fastast_pl.data.audio import AudioDecodeError
from fastast_pl.data.datamodule import AudioDataModule
from fastast_pl.data.features import FeatureConfig

# User errors every tool reports in one line (AudioDecodeError is a RuntimeError).
USER_ERRORS = (ValueError, OSError, AudioDecodeError)


class ToolError(ValueError):
    """A user error that a tool reports in one line (no traceback)."""


def fail(prog: str, err: BaseException) -> int:
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 2


def _data_parser() -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False, default_env=False)
    parser.add_class_arguments(AudioDataModule, "data")
    return parser


def read_data_config(paths: Sequence[str | Path]) -> Namespace:
    """The ``data:`` section of LightningCLI config files, validated as the CLI does.

    Later files override earlier ones key by key (nested keys such as ``synthetic.seed``
    too); other sections are ignored. Raises ``ToolError`` naming the file and the key.
    """
    parser = _data_parser()
    cfg = parser.get_defaults()
    found = False
    for path in paths:
        try:
            content = yaml.safe_load(Path(path).read_text())
        except OSError as err:
            raise ToolError(f"cannot read config file {path}: {err.strerror or err}") from err
        except yaml.YAMLError as err:
            raise ToolError(f"config file {path} is not valid YAML: {err}") from err
        if content is None:
            continue
        if not isinstance(content, Mapping):
            raise ToolError(
                f"config file {path}: expected a mapping of sections (trainer:, model:, "
                f"data:), found a {type(content).__name__}"
            )
        if content.get("data") is None:
            continue
        try:
            cfg = parser.parse_object({"data": content["data"]}, namespace=cfg)
        except ArgumentError as err:
            raise ToolError(f"config file {path}, data section: {err}") from err
        found = True
    if not found:
        raise ToolError(f"no data: section in the config file(s) {[str(p) for p in paths]}")
    return cfg


def read_features(paths: Sequence[str | Path]) -> FeatureConfig:
    """The feature settings (``data.features``) of LightningCLI config files."""
    return FeatureConfig(**read_data_config(paths).data.features.as_dict())


def build_datamodule(paths: Sequence[str | Path]) -> AudioDataModule:
    """The ``AudioDataModule`` that ``python -m fastast_pl fit --config ...`` would build."""
    cfg = read_data_config(paths)
    return _data_parser().instantiate(cfg).data
