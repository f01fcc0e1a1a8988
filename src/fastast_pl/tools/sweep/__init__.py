"""`python -m fastast_pl sweep FILE`: run a W&B sweep file locally on Optuna, trial after trial.

``spec`` reads the file (its parameters as Optuna distributions, its command expanded by the
W&B agent's own functions), ``check`` validates values through the CLI before trials start,
``run`` drives the Optuna study; ``budget`` is the trial front end of FLOP-budget sweeps.
"""

from fastast_pl.tools.sweep.run import main

__all__ = ["main"]
