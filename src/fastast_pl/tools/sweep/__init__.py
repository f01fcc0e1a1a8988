"""`python -m fastast_pl sweep FILE`: run a W&B sweep file locally, one trial after another.

``spec`` reads the file and expands trial commands as the W&B agent does, ``plan`` asks
Optuna for trials (grid, random, bayes = TPE), ``check`` validates trials through the CLI
before they start, ``run`` runs them; ``budget`` is the trial front end of FLOP-budget sweeps.
"""

from fastast_pl.tools.sweep.run import main

__all__ = ["main"]
