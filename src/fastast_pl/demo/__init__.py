"""`python -m fastast_pl demo` (`make demo`): the method's three claims on built-in synthetic audio.

Demo-only code: ``run`` (the stages as CLI runs, the table and the checks), ``plots`` (the
Pareto plot and the merge map), ``clip`` (one test clip through the merged student). The
schedules come from ``tome.flops.plan_schedules`` and the speeds from ``speed.schedules``,
shared with the ``benchmark`` tool and ``report``.
"""

from fastast_pl.demo.run import CONFIG_FILES, main

__all__ = ["CONFIG_FILES", "main"]
