"""Model benchmarks per merge schedule: inference, training steps, end-to-end test epochs.

``python -m fastast_pl benchmark --kind inference|train|epoch`` (see docs/benchmarks.md).
Modules: ``models`` (what is measured: sizes, the one builder per model, schedules from
``tome.flops``), ``measure`` (rows and checks from ``fastast_pl.speed``'s timings),
``inference``, ``training`` and ``epoch`` (one benchmark each), ``render`` (table,
Markdown, plot), ``cli`` (arguments).
"""

from fastast_pl.tools.benchmark.cli import main

__all__ = ["main"]
