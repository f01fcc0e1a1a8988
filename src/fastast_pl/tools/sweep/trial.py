"""Trial command lines parsed by the fastast-pl CLI's own parser, and their modules built on meta.

Shared by the pre-flight checks (``check``) and the FLOP-budget front end (``budget``), which
needs a trial's model dimensions before it can compute the trial's schedule.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from typing import Any

from fastast_pl.tools.sweep.spec import SweepError


class _Parsed(Exception):
    def __init__(self, cli: Any) -> None:
        super().__init__("parsed")
        self.cli = cli


class TrialParser:
    """Parses trial command lines exactly as `python -m fastast_pl` does and builds their
    LightningModules, without training. The CLI's parser is built once and reused."""

    def __init__(self, build_models: bool = True) -> None:
        self._parser: Any = None
        self._models: dict[str, Any] = {}
        self.build_models = build_models

    def parse(self, argv: list[str]) -> Any:
        """The subcommand's config of `argv`, as `python -m fastast_pl` would parse it."""
        from fastast_pl.cli import FastASTCLI
        from fastast_pl.data.datamodule import AudioDataModule
        from fastast_pl.modules.base import ClassificationModule

        class _ParseOnly(FastASTCLI):
            def before_instantiate_classes(self) -> None:
                raise _Parsed(self)

        sink = io.StringIO()
        try:
            with (
                contextlib.redirect_stderr(sink),
                contextlib.redirect_stdout(sink),
                warnings.catch_warnings(),
            ):
                warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
                if self._parser is None:
                    _ParseOnly(
                        model_class=ClassificationModule,
                        subclass_mode_model=True,
                        datamodule_class=AudioDataModule,
                        seed_everything_default=0,
                        args=argv,
                    )
                    raise SweepError("the command did not reach training (--help, --print_config?)")
                config = self._parser.parse_args(argv)
        except _Parsed as parsed:
            self._parser = parsed.cli.parser
            config = parsed.cli.config
        except SystemExit as err:
            lines = sink.getvalue().strip().splitlines()
            starts = [i for i, ln in enumerate(lines) if ln.startswith("error:")]
            lines = lines[starts[0] :] if starts else lines  # drop the usage text
            raise SweepError("\n".join(lines) or f"the CLI exited with {err.code}") from None
        return config[config["subcommand"]]

    def build_model(self, config: Any) -> Any:
        """Instantiate the configured LightningModule: runs its own __init__ checks.

        Tried on the meta device first (no memory, no compute); a module whose __init__
        needs real tensors is built on the CPU instead. Each distinct model config once.
        """
        import torch
        from jsonargparse import ArgumentParser

        from fastast_pl.modules.base import ClassificationModule

        model = config["model"].as_dict()
        key = json.dumps(model, sort_keys=True, default=str)
        if key in self._models:
            return self._models[key]
        parser = ArgumentParser(exit_on_error=False)
        parser.add_subclass_arguments(ClassificationModule, "model", required=True)
        model_cfg = parser.parse_object({"model": model})
        try:
            with torch.device("meta"):
                built = parser.instantiate_classes(model_cfg).model
        except Exception as err:  # meta-incompatible init (e.g. .tolist()): retry for real
            if "meta" not in str(err):
                raise
            built = parser.instantiate_classes(model_cfg).model
        self._models[key] = built
        return built
