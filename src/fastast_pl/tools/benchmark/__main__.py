"""``python -m fastast_pl.tools.benchmark``: the benchmark without the Lightning CLI's imports
(what ``make bench-gpu`` runs on a machine with only torch, timm, transformers, lightning)."""

from fastast_pl.tools.benchmark.cli import main

raise SystemExit(main())
