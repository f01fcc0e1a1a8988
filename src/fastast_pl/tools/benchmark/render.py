"""Output of a benchmark result: a terminal table, a Markdown table, a speed-up plot.

One column list per benchmark kind drives both tables. rich and matplotlib are optional
here (the GPU command runs where only torch, timm, transformers and lightning exist):
without rich the Markdown is printed, without matplotlib no PNG is written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def _num(fmt: str) -> Callable[[object], str]:
    return lambda v: "-" if v is None else format(v, fmt)


_COMMON = [
    ("model", "model", str),
    ("schedule", "schedule", str),
    ("mode", "mode", str),
    ("GFLOPs/clip (2 per MAC)", "gflops_per_clip", _num(".3g")),
    ("GMACs/clip", "gmacs_per_clip", _num(".3g")),
    ("FLOP ratio", "flop_ratio", _num(".2f")),
    ("speed-up", "speedup", _num(".2f")),
    ("speed-up min-max (per round)", "speedup_range", str),
    ("speed-up / FLOP ratio", "speedup_per_flop_ratio", _num(".2f")),
    ("median ms", "latency_ms_median", _num(".1f")),
    ("p90 ms", "latency_ms_p90", _num(".1f")),
    ("min-max ms", "latency_ms_range", str),
]
COLUMNS = {
    "inference": [("bs", "batch_size", str), *_COMMON,
                  ("clips/s", "throughput", _num(".3g")),
                  ("vs eager", "speedup_vs_eager", _num(".2f")),
                  ("compile s", "compile_s", _num(".1f")),
                  ("vs HF", "speedup_vs_hf", _num(".2f")),
                  ("peak MiB", "peak_mem_mb", _num(".0f"))],
    "train": [("bs", "batch_size", str), *_COMMON,
              ("clips/s", "throughput", _num(".3g")),
              ("peak MiB", "peak_mem_mb", _num(".0f"))],
    "epoch": [("clips", "batch_size", str), *_COMMON,
              ("clips/s", "throughput", _num(".3g")),
              ("waiting for data", "data_share", _num(".1%"))],
}  # fmt: skip
FILE_STEM = {"inference": "benchmark", "train": "train_benchmark", "epoch": "epoch_benchmark"}


def _title(meta: dict) -> str:
    return (
        f"{meta['kind']} benchmark on {meta['device_name']} ({meta['dtype']}, "
        f"{meta['torch_threads']} threads, {meta['iters']} iters, {meta['clock']} clock)"
    )


def to_markdown(result: dict) -> str:
    """The rows and checks as a Markdown table (for docs/benchmarks.md)."""
    columns = COLUMNS[result["meta"]["kind"]]
    lines = ["| " + " | ".join(h for h, _, _ in columns) + " |", "|" + "---:|" * len(columns)]
    for r in result["rows"]:
        lines.append("| " + " | ".join(fmt(r.get(key)) for _, key, fmt in columns) + " |")
    lines.append("")
    for c in result["checks"]:
        lines.append(f"- {'pass' if c['passed'] else 'MISS'}: {c['check']}: {c['value']}")
    return "\n".join(lines) + "\n"


def print_table(result: dict) -> None:
    """A rich table of all rows, then the target checks (the Markdown without rich)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(_title(result["meta"]))
        print(to_markdown(result))
        return
    columns = COLUMNS[result["meta"]["kind"]]
    table = Table(title=_title(result["meta"]))
    for head, _, _ in columns:
        table.add_column(head, justify="right")
    for r in result["rows"]:
        table.add_row(*(fmt(r.get(key)) for _, key, fmt in columns))
    console = Console(width=max(Console().width, 150))  # pipes default to 80 columns
    console.print(table)
    for c in result["checks"]:
        mark = "[green]pass[/green]" if c["passed"] else "[red]MISS[/red]"
        console.print(f"{mark}  {c['check']}: {c['value']}")


def plot(result: dict, path: Path) -> bool:
    """Measured speed-up against the FLOP ratio per model/mode/batch; y = x is the ideal.
    Returns False (and writes nothing) where matplotlib is not installed."""
    try:
        # A bare Figure renders with Agg and never touches pyplot's global backend state.
        from matplotlib.figure import Figure
    except ImportError:
        return False
    rows, meta = result["rows"], result["meta"]
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    top = max(r["flop_ratio"] for r in rows)
    ax.plot([1, top], [1, top], "k--", lw=1, label="ideal (= FLOP ratio)")
    for key in sorted(
        {(r["model"], r["mode"], r["batch_size"]) for r in rows if r["model"] != "hf"}
    ):
        line = sorted((r for r in rows if (r["model"], r["mode"], r["batch_size"]) == key),
                      key=lambda r: r["flop_ratio"])  # fmt: skip
        ax.plot([r["flop_ratio"] for r in line], [r["speedup"] for r in line], "o-",
                label=f"{key[0]} {key[1]}, batch {key[2]}")  # fmt: skip
        for r in line:
            ax.annotate(r["schedule"], (r["flop_ratio"], r["speedup"]), xytext=(5, -10),
                        textcoords="offset points", fontsize=7)  # fmt: skip
    for r in rows:  # HF's speed relative to our eager r=0 at the same batch size
        if r["model"] == "ours" and r["mode"] == "eager" and r["speedup_vs_hf"] is not None:
            if r["target"] == 1.0:
                ax.plot([1.0], [1.0 / r["speedup_vs_hf"]], "x", ms=8,
                        label=f"HF AST, batch {r['batch_size']}")  # fmt: skip
    ax.set_xlabel("analytic FLOP ratio (r=0 / schedule)")
    ax.set_ylabel("measured speed-up vs r=0 (same model and mode)")
    ax.set_title(_title(meta), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True
