"""The demo's trade-off picture: accuracy against FLOP reduction and measured clips/s.

matplotlib's object API on the Agg canvas (no pyplot, no global backend change). The
demo's other picture, one clip's merge map, is ``visualize``'s
(``fastast_pl.merge_map.plot_merge_map``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


@dataclass
class ParetoPoint:
    """One model/schedule on the trade-off plot."""

    label: str
    accuracy: float
    flops_ratio: float
    throughput: float
    family: str  # "off the shelf", "labels only" or "CMKD": one family's points are joined


def plot_pareto(
    points: Sequence[ParetoPoint],
    path: str | Path,
    teacher_accuracy: float | None = None,
    timing_note: str = "",
) -> Path:
    """Accuracy against analytic FLOP reduction (left) and measured clips/s (right)."""
    fig = Figure(figsize=(10.0, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    markers = {
        "off the shelf": ("o", "tab:blue"),
        "labels only": ("s", "tab:grey"),
        "CMKD": ("*", "tab:red"),
    }
    for ax, key, xlabel in (
        (axes[0], "flops_ratio", "analytic FLOP reduction (x, higher = cheaper)"),
        (axes[1], "throughput", f"measured throughput (clips/s){timing_note}"),
    ):
        for family, (marker, colour) in markers.items():
            group = [p for p in points if p.family == family]
            if not group:
                continue
            xs = [getattr(p, key) for p in group]
            ys = [100 * p.accuracy for p in group]
            ax.plot(xs, ys, marker=marker, color=colour, markersize=10 if marker == "*" else 6,
                    linestyle="-" if len(group) > 1 else "none", label=family)  # fmt: skip
            below = family != "off the shelf"  # keep the families' labels apart
            for i, (p, x, y) in enumerate(zip(group, xs, ys)):
                offset = (4, -14 - 10 * (i % 2)) if below else (4, 6 + 10 * (i % 2))
                ax.annotate(p.label, (x, y), textcoords="offset points", xytext=offset,
                            fontsize=8, color=colour)  # fmt: skip
        if teacher_accuracy is not None:
            ax.axhline(100 * teacher_accuracy, color="tab:green", linestyle="--", linewidth=1,
                       label="CNN teacher")  # fmt: skip
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(loc="center left", fontsize=8)  # the free band between AST and teacher
    fig.suptitle("FastAST demo: accuracy vs cost (up and to the right is better)")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
