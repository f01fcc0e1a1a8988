"""`python -m fastast_pl.tools.sweep.budget SUBCOMMAND ... --merge.flop_ratio=F --merge.weight.L=W`

A trial front end for sweeps that search the *shape* of a per-layer merge schedule under a
fixed FLOP budget. A sweep gives each layer a weight ``w_l >= 0`` and fixes the analytic
FLOP ratio ``F`` (unmerged / merged); the method's planner
(``tome.flops.schedule_for_flops_reduction`` with ``weights``) turns them into r per layer,
passed as ``--model.init_args.<merge.key>=[r_0, ...]`` (key default ``eval_merge``; ``merge``
for training sweeps). Layers without a weight get 1; without ``--merge.flop_ratio`` the
arguments pass through unchanged. Both ``wandb agent`` and the local runner call it like the
CLI (it is one of the programs `spec.cli_args` accepts); the merge-stats callback logs the r
and tokens per layer it chose.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from fastast_pl.cli import INIT_WEIGHT_KEYS
from fastast_pl.cli import main as cli_main
from fastast_pl.tome.flops import schedule_for_flops_reduction
from fastast_pl.tools.sweep.spec import SweepError
from fastast_pl.tools.sweep.trial import TrialParser

PREFIX = "--merge."  # the front end's own flags; the CLI's keys start with --model.


def split_budget_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(``{"flop_ratio": "2", "weight.3": "0.5", ...}``, the other arguments)."""
    budget, rest = {}, []
    for token in argv:
        if token.startswith(PREFIX):
            key, sep, value = token[len(PREFIX) :].partition("=")
            if not sep:
                raise SweepError(f"{token}: budget arguments are written --merge.KEY=VALUE")
            budget[key] = value
        else:
            rest.append(token)
    return budget, rest


def _model_dims(module: Any) -> dict[str, Any]:
    """Token count, depth and width of a module's AST (the one place that reads them)."""
    model = module.model
    return {
        "num_tokens": model.num_tokens,
        "depth": model.depth,
        "num_prefix_tokens": model.num_prefix_tokens,
        "dim": model.embed_dim,
        "mlp_ratio": model.arch.mlp_ratio,
    }


def resolve(argv: list[str], checker: Any = None) -> list[str]:
    """`argv` with its budget arguments replaced by the merge schedule they give."""
    budget, rest = split_budget_args(argv)
    if "flop_ratio" not in budget:
        return rest
    checker = checker or TrialParser()
    try:
        config = checker.parse(rest)
        for key in INIT_WEIGHT_KEYS:  # the shape does not depend on the weights: skip files
            if config.get(key) is not None:
                config[key] = None
        dims = _model_dims(checker.build_model(config))
        target = float(budget.pop("flop_ratio"))
        key = budget.pop("key", "eval_merge")
        weights = [1.0] * dims["depth"]
        for name, value in budget.items():
            layer = name.removeprefix("weight.")
            if name == layer or not layer.isdigit() or int(layer) >= dims["depth"]:
                raise SweepError(
                    f"--merge.{name}: expected weight.L with L a layer in [0, {dims['depth'] - 1}], "
                    "flop_ratio or key"
                )
            weights[int(layer)] = float(value)
    except ValueError as err:  # float() of a bad value; SweepError is a ValueError too
        raise SweepError(str(err)) from None
    if key not in ("merge", "eval_merge"):
        raise SweepError(f"--merge.key={key}: expected 'merge' or 'eval_merge'")
    try:
        r = schedule_for_flops_reduction(target, weights=weights, **dims)
    except ValueError as err:
        raise SweepError(f"--merge.flop_ratio={target}, weights {weights}: {err}") from None
    return [*rest, f"--model.init_args.{key}={json.dumps(r)}"]


def main(argv: list[str] | None = None) -> int:
    """Resolve the budget, then run `python -m fastast_pl` with the resulting schedule."""
    try:
        args = resolve(list(sys.argv[1:] if argv is None else argv))
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[budget] {args[-1]}", file=sys.stderr)
    cli_main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
