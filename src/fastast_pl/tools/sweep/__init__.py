"""`python -m fastast_pl sweep FILE`: run a W&B sweep file locally, one trial after another.

``spec`` reads the file and expands trial commands as the W&B agent does, ``plan`` asks
Optuna for trials (grid, random, bayes = TPE), ``check`` validates trials through the CLI
before they start, ``run`` runs them; ``budget`` is the trial front end of FLOP-budget sweeps.
The names below are the package's interface (the CLI's `sweep` tool, the config tests).
"""

from fastast_pl.tools.sweep.check import TrialChecker, validate_sweep
from fastast_pl.tools.sweep.plan import SweepPlanner, plan_trials
from fastast_pl.tools.sweep.run import main
from fastast_pl.tools.sweep.spec import SweepError, load_sweep

__all__ = ["SweepError", "SweepPlanner", "TrialChecker", "load_sweep", "main", "plan_trials",
           "validate_sweep"]  # fmt: skip
