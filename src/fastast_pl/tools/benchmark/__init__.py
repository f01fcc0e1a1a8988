"""``python -m fastast_pl benchmark --kind inference|train|epoch`` (docs/benchmarks.md):
``cli`` (arguments) and ``render`` (table, Markdown, plot) of what ``fastast_pl.speed`` measures.
"""

from fastast_pl.tools.benchmark.cli import main

__all__ = ["main"]
