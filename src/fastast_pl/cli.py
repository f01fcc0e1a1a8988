"""`python -m fastast_pl`: LightningCLI with the data -> model links, plus tool subcommands.

`fit`, `validate`, `test`, `predict` are LightningCLI's. The other subcommands
(`benchmark`, ...) are plain functions with their own `--help`, dispatched here by name.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LightningCLI

from fastast_pl.data.datamodule import AudioDataModule
from fastast_pl.models.checkpoints.module_checkpoint import (
    ModuleCheckpoint,
    check_module_state,
    check_record,
    check_same_splits,
)
from fastast_pl.modules.base import ClassificationModule
from fastast_pl.trainer.ckpt_path import prepare_ckpt_path
from fastast_pl.trainer.predictions import PredictionCSVWriter
from fastast_pl.trainer.resume import warn_inexact_resume
from fastast_pl.trainer.run_dirs import check_fresh_run_dirs
from fastast_pl.trainer.run_logging import add_run_logging
from fastast_pl.utils.library_noise import (
    silence_checkpoint_dirpath_notice,
    silence_library_noise,
)

# subcommand -> "module:function" taking argv (list[str]) and returning an exit code or None.
TOOLS: dict[str, tuple[str, str]] = {
    "demo": (
        "fastast_pl.demo:main",
        "teacher -> distilled ToMe student on synthetic audio, with a table",
    ),
    "benchmark": ("fastast_pl.tools.benchmark:main", "throughput/latency/FLOPs per merge schedule"),
    "bench-data": (
        "fastast_pl.tools.benchmark.data_loading:main",
        "data-loading clips/s, uncached vs feature cache",
    ),
    "sweep": ("fastast_pl.tools.sweep:main", "run a W&B sweep file locally, trial after trial"),
    "report": ("fastast_pl.tools.report:main", "runs -> table + accuracy/throughput Pareto plot"),
    "config-docs": (
        "fastast_pl.tools.config_docs:main",
        "print every model/data config key (docs/config.md)",
    ),
    "stats": ("fastast_pl.tools.stats:main", "fbank mean/std of a config's training split"),
    "check-data": ("fastast_pl.tools.check_data:main", "decode every clip once, report bad audio"),
    "prepare": ("fastast_pl.tools.prepare:main", "ESC-50 / Speech Commands archive -> data dir"),
    "visualize": ("fastast_pl.tools.visualize:main", "draw which patches ToMe merged in a clip"),
    "classify": ("fastast_pl.tools.classify:main", "label your own audio files -> CSV"),
    "export": ("fastast_pl.tools.export:main", "checkpoint -> ONNX / torch.export (+ JSON)"),
    "search-schedule": (
        "fastast_pl.tools.search_schedule:main",
        "learn r per layer for a FLOP budget, the model frozen",
    ),
}


#: Model arguments the data sets (cli links): where each comes from.
LINKED_FROM_DATA = {
    "target_length": "data.features.target_length",
    "num_mel_bins": "data.features.num_mel_bins",
    "num_classes": "the data source's classes",
    "multi_label": "the data source's label kind",
}

# Model keys naming files that only initialise weights (a checkpoint restores them anyway).
INIT_WEIGHT_KEYS = ("model.init_args.init_from", "model.init_args.teacher.pretrained_path")


class FastASTCLI(LightningCLI):
    """LightningCLI whose model sizes come from the data, never typed twice.

    With `--ckpt_path`, Lightning takes the model's hyperparameters from the checkpoint
    and lets them override the configuration; here a `--model.*` value given on the
    command line still wins, so `test --ckpt_path X --model.eval_merge 8` evaluates X
    under a new merge schedule (command line > checkpoint > config files).
    """

    def __init__(self, *class_args, args: list[str] | None = None, **kwargs) -> None:
        self._command_line = list(sys.argv[1:] if args is None else args)
        silence_library_noise()
        super().__init__(*class_args, args=args, **kwargs)

    def parse_arguments(self, parser, args) -> None:
        """After parsing: `last`/`best`/PATH resolved and checked (trainer/ckpt_path.py), so
        that LightningCLI reads the hyperparameters of the checkpoint meant; the parsed
        configuration is kept to restore the command line's `--model.*` values afterwards."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        self._checkpoint = prepare_ckpt_path(self.config[subcommand]) if subcommand else None
        self._config_before_ckpt = self.config.clone() if subcommand else None

    def before_instantiate_classes(self) -> None:
        """LightningCLI has read the checkpoint's hyperparameters into the configuration
        (between `parse_arguments` and this hook): the command line's `--model.*` wins over
        them, and the files the weights were initialised from are not read again.

        A linked model key typed on the command line would be overwritten by the data's
        value without a word: refuse it, naming the data key to set instead."""
        given = _command_line_model_keys(self._command_line)
        for key in given:
            name = key.rsplit(".", 1)[-1]
            if key.count(".") == 2 and name in LINKED_FROM_DATA:
                raise ValueError(
                    f"--{key} is linked from the data ({LINKED_FROM_DATA[name]}) and would be "
                    "replaced by its value; set that instead, or drop the option"
                )
        before = self._config_before_ckpt
        subcommand = self.config.get("subcommand")
        if before is None or not self.config[subcommand].get("ckpt_path"):
            return
        # The weights come from the checkpoint: do not re-read the files it was initialised
        # from (they may be gone, or on another machine), unless asked on the command line.
        for key in INIT_WEIGHT_KEYS:
            full_key = f"{subcommand}.{key}"
            if key not in given and self.config.get(full_key) is not None:
                self.config[full_key] = None
        for key in given:
            full_key = f"{subcommand}.{key}"
            if full_key in before:
                self.config[full_key] = before[full_key]

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.features.target_length", "model.init_args.target_length")
        parser.link_arguments("data.features.num_mel_bins", "model.init_args.num_mel_bins")
        parser.link_arguments(
            "data.num_classes", "model.init_args.num_classes", apply_on="instantiate"
        )
        parser.link_arguments(
            "data.multi_label", "model.init_args.multi_label", apply_on="instantiate"
        )
        parser.add_argument(
            "--allow_ckpt_differences",
            type=list[str],
            default=[],
            help="Items the --ckpt_path checkpoint records that may differ from the data/model "
            "configured now, e.g. '[features.mean, arch.drop_path_rate]' or a whole group "
            "'[features]'; any other difference is refused (models/checkpoints/module_checkpoint.py)",
        )

    def instantiate_trainer(self, **kwargs):  # W&B under `wandb agent`, merge stats, LR
        return add_run_logging(super().instantiate_trainer(**kwargs))

    def before_fit(self) -> None:
        self._preflight()

    def before_validate(self) -> None:
        silence_checkpoint_dirpath_notice()
        self._preflight()

    def before_test(self) -> None:
        silence_checkpoint_dirpath_notice()
        self._preflight()

    def before_predict(self) -> None:
        """Predictions go to a CSV in the run directory unless a writer is configured."""
        if not any(isinstance(cb, BasePredictionWriter) for cb in self.trainer.callbacks):
            self.trainer.callbacks.append(PredictionCSVWriter())
        silence_checkpoint_dirpath_notice()
        self._preflight()

    def _preflight(self) -> None:
        """Before the trainer starts: the checkpoint fits the model, no earlier run is touched."""
        if self._checkpoint is not None:
            self._check_record(self._checkpoint)
            check_module_state(
                self._checkpoint,
                self.model.state_dict(),
                getattr(self.model, "num_classes", None),
                strict=self.model.strict_loading,
            )
            self._checkpoint = None  # names and shapes only; not needed any more
        ckpt_path = self.config_init[self.subcommand].get("ckpt_path")
        check_fresh_run_dirs(self.trainer, self.subcommand == "fit", ckpt_path)

    def _check_record(self, checkpoint: ModuleCheckpoint) -> None:
        """What the checkpoint records against the data and model configured now."""
        datamodule, model = self.datamodule, self.model
        feature_config = getattr(datamodule, "feature_config", None)
        architecture = getattr(model, "architecture", None)
        check_record(
            checkpoint,
            getattr(datamodule, "class_names", None),
            feature_config() if callable(feature_config) else None,
            architecture() if callable(architecture) else None,
            set(self.config_init[self.subcommand].get("allow_ckpt_differences") or ()),
        )
        identity = getattr(datamodule, "data_identity", None)
        if self.subcommand == "fit" and callable(identity):  # a resumed fit
            check_same_splits(checkpoint, identity())
        if self.subcommand == "fit":
            warn_inexact_resume(checkpoint, self.trainer.callbacks)


def _command_line_model_keys(argv: list[str]) -> list[str]:
    """`--model.eval_merge=8` / `--model.init_args.eval_merge 8` -> "model.init_args.eval_merge"."""
    keys = []
    for token in argv:
        if not token.startswith("--model."):
            continue
        parts = token[2:].split("=", 1)[0].split(".")
        if parts[1] not in ("init_args", "class_path", "dict_kwargs"):
            parts.insert(1, "init_args")
        keys.append(".".join(parts))
    return keys


def _run_tool(name: str, argv: list[str]) -> int:
    target = TOOLS[name][0]
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(argv) or 0)


LOG_LEVEL_ENV = "FASTAST_LOG_LEVEL"


def configure_logging(argv: list[str]) -> list[str]:
    """Show fastast_pl's log messages (INFO: adaptations, merge schedules) on stderr.

    ``--quiet`` (anywhere on the command line; removed from it) keeps only warnings;
    ``FASTAST_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR) sets the level outright. Called once
    per ``main``, never at import: a library user's own logging setup is left alone.
    """
    quiet = "--quiet" in argv
    level_name = os.environ.get(LOG_LEVEL_ENV) or ("WARNING" if quiet else "INFO")
    level = logging.getLevelName(level_name.strip().upper())
    if not isinstance(level, int):
        raise SystemExit(f"{LOG_LEVEL_ENV}={level_name!r}: expected DEBUG, INFO, WARNING or ERROR")
    logger = logging.getLogger("fastast_pl")
    logger.setLevel(level)
    for handler in [h for h in logger.handlers if getattr(h, "fastast_cli", False)]:
        logger.removeHandler(handler)  # a previous main() in this process (tests)
    handler = logging.StreamHandler(sys.stderr)
    handler.fastast_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("[fastast_pl] %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    return [a for a in argv if a != "--quiet"]


def main(args: list[str] | None = None) -> int | None:
    """Entry point of `python -m fastast_pl` and the `fastast-pl` script."""
    from_sys_argv = args is None
    argv = configure_logging(list(sys.argv[1:] if args is None else args))
    if argv and argv[0] in TOOLS:
        code = _run_tool(argv[0], argv[1:])
        if from_sys_argv:
            sys.exit(code)
        return code
    if not argv or argv[0] in ("-h", "--help"):
        tools = "\n".join(f"  {name:<10} {help_}" for name, (_, help_) in TOOLS.items())
        print(f"Tool subcommands (each has --help):\n{tools}\n")
        print(f"--quiet (anywhere) or {LOG_LEVEL_ENV}=WARNING hides fastast_pl's INFO log.\n")
    if from_sys_argv:
        sys.argv[1:] = argv  # without --quiet; LightningCLI reads sys.argv itself
    build_cli(None if from_sys_argv else argv)
    return None


def build_cli(args: list[str] | None = None, run: bool = True) -> FastASTCLI:
    """The LightningCLI of `fit/validate/test/predict`; returned so callers can read results."""
    return FastASTCLI(
        model_class=ClassificationModule,
        subclass_mode_model=True,
        datamodule_class=AudioDataModule,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": False},
        args=args,
        run=run,
    )
