"""`python -m fastast_pl.tools.sweep.budget SUBCOMMAND ... --merge.flop_ratio=F --merge.weight.L=W`

A trial front end for sweeps that search the *shape* of a per-layer merge schedule under a
fixed FLOP budget. A sweep gives each layer a weight ``w_l >= 0`` and fixes the analytic
FLOP ratio ``F`` (unmerged / merged, ``tome.flops.flops_ratio``); this program turns them
into the per-layer r that spends the budget in that shape and runs the CLI with it:
layer l merges the ratio ``s * w_l / max(w)`` of its mergeable tokens, with the one scale
``s`` (bisection on ``[0, 0.5)``) the smallest whose schedule reaches ``F``. The resulting r
list is passed as ``--model.init_args.<merge.key>=[r_0, ...]`` (key default ``eval_merge``;
``merge`` for training sweeps). Layers without a weight get 1; without ``--merge.flop_ratio``
the arguments pass through unchanged. Both ``wandb agent`` and the local runner call it like
the CLI (it is one of the programs `spec.cli_args` accepts); the merge-stats callback logs
the r and tokens per layer it chose. ``tome.flops.schedule_for_flops_reduction`` covers only
the named shapes, hence this search over arbitrary per-layer weights.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from fastast_pl.cli import INIT_WEIGHT_KEYS
from fastast_pl.cli import main as cli_main
from fastast_pl.tome.flops import flops_ratio
from fastast_pl.tome.schedule import MergeSchedule, resolve_schedule
from fastast_pl.tools.sweep.spec import SweepError
from fastast_pl.tools.sweep.trial import TrialParser

PREFIX = "--merge."  # the front end's own flags; the CLI's keys start with --model.
MAX_RATIO = 0.4999  # MergeSchedule ratios live in [0, 0.5)


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


def budget_schedule(
    weights: list[float],
    target: float,
    num_tokens: int,
    depth: int,
    num_prefix_tokens: int,
    dim: int,
    mlp_ratio: float = 4.0,
) -> list[int]:
    """r per layer in the shape of `weights` whose FLOP ratio first reaches `target`."""
    if len(weights) != depth or any(w < 0 for w in weights):
        raise SweepError(f"budget weights {weights}: expected {depth} numbers >= 0")
    if target < 1.0:
        raise SweepError(f"--merge.flop_ratio={target}: expected a FLOP ratio >= 1")
    top = max(weights)

    def schedule(scale: float):
        ratios = [scale * w / top if top > 0 else 0.0 for w in weights]
        return resolve_schedule(MergeSchedule(ratio=ratios), num_tokens, depth, num_prefix_tokens)

    def ratio(scale: float) -> float:
        return flops_ratio(schedule(scale), dim, mlp_ratio)

    if target == 1.0:
        return [0] * depth
    if ratio(MAX_RATIO) < target:
        raise SweepError(
            f"--merge.flop_ratio={target} is out of reach with weights {weights}: this shape "
            f"gives at most {ratio(MAX_RATIO):.3f}x on {num_tokens} tokens, depth {depth}"
        )
    lo, hi = 0.0, MAX_RATIO  # ratio(lo) < target <= ratio(hi); r grows with the scale
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if ratio(mid) >= target else (mid, hi)
    return list(schedule(hi).r)


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
    r = budget_schedule(weights, target, **dims)
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
