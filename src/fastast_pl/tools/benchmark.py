"""Model benchmark: throughput, latency, peak memory and analytic FLOPs per merge schedule.

One process, one run: our ``ASTModel`` without merging (r=0) and with merge schedules that
cut the analytic FLOPs by the requested factors, next to the HF transformers
``ASTForAudioClassification`` of the same size as the outside baseline. Timed forwards
alternate between all variants (round-robin, rotating the order every round), so drifts
in machine load hit every variant alike. Prints a table, writes ``benchmark.json`` and
``benchmark.png`` (measured speed-up against the FLOP ratio, the ideal line) to ``--out``.

Peak memory is the peak of memory allocated *above what was held before the forward*
(activations and workspaces; weights and the input excluded). CUDA:
``torch.cuda.max_memory_allocated``. CPU: the torch profiler's allocation events
(``profile_memory=True``) summed in time order over one extra, untimed forward; this counts
tensor memory exactly, unlike process RSS, which the allocator's caching distorts.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from fastast_pl.models.arch import ASTArch
from fastast_pl.models.ast import ASTModel
from fastast_pl.tome import MergeSpec
from fastast_pl.tome.flops import schedule_for_flops_reduction, vit_flops

DEFAULT_TARGETS = (1.25, 1.5, 2.0, 3.0)
MEMORY_METHOD = {
    "cuda": "torch.cuda.max_memory_allocated above the memory held before the forward",
    "cpu": "torch profiler allocation events (profile_memory=True), peak of the running sum "
    "over one untimed forward; tensors only, weights and input excluded",
}


@dataclass(frozen=True)
class ModelSize:
    """Transformer and input sizes shared by our model and the HF baseline."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float
    input_tdim: int
    input_fdim: int
    num_classes: int


# AST-Base on a 1024x128 fbank: 12 x 101 patches + cls + dist = 1214 tokens.
BASE = ModelSize(768, 12, 12, 4.0, 1024, 128, 527)
# A small model for smoke tests: 12 x 12 patches + 2 = 146 tokens.
TINY = ModelSize(64, 4, 4, 4.0, 128, 128, 10)


@dataclass
class Variant:
    """One measured configuration: a model and the merge schedule it runs."""

    model: str  # "ours" or "hf"
    schedule: str  # display name: "r=0", "1.50x", ...
    target: float  # requested FLOP reduction factor (1.0 for none)
    r: list[int]
    tokens: list[int]
    gflops: float  # analytic GFLOPs per clip
    forward: Callable[[torch.Tensor], torch.Tensor] = field(repr=False)
    prepare: Callable[[], None] = field(repr=False, default=lambda: None)


@dataclass
class Row:
    """Measured figures of one variant at one batch size (one row of table and JSON)."""

    model: str
    schedule: str
    target: float
    batch_size: int
    r: list[int]
    tokens: list[int]
    gflops_per_clip: float
    flop_ratio: float
    latency_ms_median: float
    latency_ms_p90: float
    throughput: float
    speedup: float  # vs our r=0 model, same batch size
    speedup_per_flop_ratio: float
    speedup_vs_hf: float | None  # None without the HF baseline
    peak_mem_mb: float | None
    latencies_ms: list[float]


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m fastast_pl benchmark``."""
    p = argparse.ArgumentParser(
        prog="fastast_pl benchmark",
        description="Throughput, latency, memory and FLOPs of AST per ToMe merge schedule, "
        "with the HF transformers AST as the baseline.",
    )
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--iters", type=int, default=5, help="timed forwards per variant and batch size")
    p.add_argument("--warmup", type=int, default=1, help="untimed forwards per variant first")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 uses autocast")
    p.add_argument(
        "--targets",
        type=float,
        nargs="*",
        default=list(DEFAULT_TARGETS),
        help="FLOP reduction factors (> 1) to find merge schedules for",
    )
    p.add_argument(
        "--shape",
        choices=["constant", "decreasing", "late"],
        default="constant",
        help="merge schedule shape searched for each target (constant: ToMe's one r per layer)",
    )
    p.add_argument("--out", type=Path, default=Path("bench"), help="folder for JSON and PNG")
    p.add_argument("--tiny", action="store_true", help="a small model (smoke tests)")
    p.add_argument("--no-hf", action="store_true", help="leave out the HF baseline")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory forward")
    p.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time (default); cpu: this process's CPU time (CPU device only; "
        "with --threads 1 it is robust to other load on a shared machine)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    return p


def _check_args(args: argparse.Namespace) -> None:
    """Reject bad values before any model is built."""
    if not args.batch_sizes or any(b < 1 for b in args.batch_sizes):
        raise ValueError(f"--batch-sizes {args.batch_sizes}: expected integers >= 1")
    if args.iters < 1:
        raise ValueError(f"--iters {args.iters}: expected >= 1")
    if args.warmup < 0:
        raise ValueError(f"--warmup {args.warmup}: expected >= 0")
    bad = [t for t in args.targets if not t > 1.0]
    if bad:
        raise ValueError(f"--targets {bad}: FLOP reduction factors must be > 1")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads}: expected >= 1")
    if args.clock == "cpu" and args.device == "cuda":
        raise ValueError("--clock cpu measures CPU time; it means nothing with --device cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device; use --device cpu or auto")


def main(argv: list[str] | None = None) -> int:
    """``python -m fastast_pl benchmark [options]``: measure, print, write JSON and PNG."""
    args = build_parser().parse_args(argv)
    _check_args(args)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    if args.clock == "cpu" and device.type != "cpu":
        raise ValueError(f"--clock cpu needs the CPU device, got {device.type}")
    threads_before = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        result = run_benchmark(
            size=TINY if args.tiny else BASE,
            batch_sizes=args.batch_sizes,
            iters=args.iters,
            warmup=args.warmup,
            device=device,
            dtype=args.dtype,
            targets=sorted(args.targets),
            shape=args.shape,
            with_hf=not args.no_hf,
            with_memory=not args.no_memory,
            seed=args.seed,
            clock=args.clock,
        )
    finally:
        torch.set_num_threads(threads_before)
    result["meta"]["command"] = "python -m fastast_pl benchmark " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "benchmark.json"
    json_path.write_text(json.dumps(result, indent=2, allow_nan=False))
    (args.out / "benchmark.md").write_text(to_markdown(result))
    png_path = args.out / "benchmark.png"
    plot(result, png_path)
    print_table(result)
    print(f"wrote {json_path}, {png_path} and benchmark.md")
    return 0


# ----------------------------------------------------------------------------- variants


def _build_ours(size: ModelSize) -> ASTModel:
    return ASTModel(
        num_classes=size.num_classes,
        input_tdim=size.input_tdim,
        input_fdim=size.input_fdim,
        arch=ASTArch(
            embed_dim=size.embed_dim,
            depth=size.depth,
            num_heads=size.num_heads,
            mlp_ratio=size.mlp_ratio,
        ),
        merge=0,
        prop_attn=True,
    )


def _build_hf(size: ModelSize) -> nn.Module:
    from transformers import ASTConfig, ASTForAudioClassification

    config = ASTConfig(
        hidden_size=size.embed_dim,
        num_hidden_layers=size.depth,
        num_attention_heads=size.num_heads,
        intermediate_size=int(size.embed_dim * size.mlp_ratio),
        max_length=size.input_tdim,
        num_mel_bins=size.input_fdim,
        num_labels=size.num_classes,
        attn_implementation="sdpa",
    )
    return ASTForAudioClassification(config)


def make_variants(
    size: ModelSize,
    targets: Sequence[float],
    device: torch.device,
    with_hf: bool,
    shape: str = "constant",
) -> list[Variant]:
    """Build the models (random weights) and one variant per model/schedule.

    Each target's schedule comes from ``tome.flops.schedule_for_flops_reduction`` (``shape``
    "constant": ToMe's one r for every layer); FLOPs are ``tome.flops.vit_flops`` of the
    tokens each block sees.
    """
    ours = _build_ours(size).to(device).eval()
    depth, prefix = ours.depth, ours.num_prefix_tokens

    def gflops(tokens: Sequence[int]) -> float:
        return vit_flops(tokens, size.embed_dim, size.mlp_ratio) / 1e9

    def set_merge(spec: MergeSpec) -> Callable[[], None]:
        return lambda: ours.set_merge(spec)

    plain = ours.merge_schedule(0)
    variants = [Variant("ours", "r=0", 1.0, plain.r, plain.tokens, gflops(plain.tokens), ours)]
    variants[0].prepare = set_merge(0)
    for target in targets:
        spec = schedule_for_flops_reduction(
            target, ours.num_tokens, depth, prefix, size.embed_dim, shape, size.mlp_ratio
        )
        sched = ours.merge_schedule(spec)
        v = Variant(
            "ours", f"{target:g}x", target, sched.r, sched.tokens, gflops(sched.tokens), ours
        )
        v.prepare = set_merge(spec)
        variants.append(v)
    if with_hf:
        hf = _build_hf(size).to(device).eval()

        def hf_forward(x: torch.Tensor) -> torch.Tensor:
            return hf(input_values=x).logits

        variants.insert(
            0, Variant("hf", "r=0", 1.0, plain.r, plain.tokens, gflops(plain.tokens), hf_forward)
        )
    return variants


# ----------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    if dtype == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def _timed_forward(
    v: Variant, x: torch.Tensor, device: torch.device, dtype: str, clock: str = "wall"
) -> float:
    """Seconds for one forward of variant v (its merge schedule set beforehand, untimed)."""
    now = CLOCKS[clock]
    v.prepare()
    _sync(device)
    t0 = now()
    with _autocast(device, dtype):
        v.forward(x)
    _sync(device)
    return now() - t0


def _rounds(variants: Sequence[Variant], n: int) -> Iterator[list[Variant]]:
    """n rounds over all variants, the order rotated by one every round."""
    k = len(variants)
    for i in range(n):
        yield [variants[(i + j) % k] for j in range(k)]


def peak_memory_mb(v: Variant, x: torch.Tensor, device: torch.device, dtype: str) -> float:
    """Peak memory (MiB) allocated above the pre-forward state during one forward."""
    v.prepare()
    gc.collect()
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        with _autocast(device, dtype):
            v.forward(x)
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            with _autocast(device, dtype):
                out = v.forward(x)
            del out
    # Each "[memory]" record is one allocation (+bytes) or free (-bytes) of the CPU
    # allocator; the running sum in time order is the tensor memory held at each moment.
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    held = peak = 0
    for e in events:
        held += e.nbytes()
        peak = max(peak, held)
    return peak / 2**20


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _progress():
    """A progress bar on stderr (the table and the files are the output)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )


def run_benchmark(
    size: ModelSize,
    batch_sizes: Sequence[int],
    iters: int,
    warmup: int,
    device: torch.device,
    dtype: str,
    targets: Sequence[float],
    shape: str = "constant",
    with_hf: bool = True,
    with_memory: bool = True,
    seed: int = 0,
    clock: str = "wall",
) -> dict:
    """Measure every variant at every batch size; returns ``{"meta": ..., "rows": [...]}``."""
    torch.manual_seed(seed)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    load_before = _loadavg()
    t_start = time.perf_counter()
    variants = make_variants(size, targets, device, with_hf, shape)
    rows: list[Row] = []
    forwards = len(batch_sizes) * (warmup + iters) * len(variants)
    with torch.inference_mode(), _progress() as progress:
        task = progress.add_task("forward passes", total=forwards)
        for bs in batch_sizes:
            x = torch.randn(bs, size.input_tdim, size.input_fdim, device=device)  # (B, T, F)
            for rnd in _rounds(variants, warmup):
                for v in rnd:
                    _timed_forward(v, x, device, dtype)
                    progress.advance(task)
            times: dict[int, list[float]] = {id(v): [] for v in variants}
            for rnd in _rounds(variants, iters):
                for v in rnd:
                    times[id(v)].append(_timed_forward(v, x, device, dtype, clock))
                    progress.advance(task)
            mem = {
                id(v): peak_memory_mb(v, x, device, dtype) if with_memory else None
                for v in variants
            }
            rows += _rows_for_batch(variants, bs, times, mem)
    meta = _meta(size, device, dtype, iters, warmup, targets)
    meta["date"] = started  # start of the run
    meta["shape"] = shape
    meta["clock"] = clock
    meta["load_average_before"] = load_before
    meta["load_average_after"] = _loadavg()
    meta["wall_s"] = round(time.perf_counter() - t_start, 1)
    return {"meta": meta, "rows": [asdict(r) for r in rows], "checks": _checks(rows)}


def _rows_for_batch(
    variants: Sequence[Variant],
    bs: int,
    times: dict[int, list[float]],
    mem: dict[int, float | None],
) -> list[Row]:
    median = {k: statistics.median(v) for k, v in times.items()}
    base = next(v for v in variants if v.model == "ours" and v.target == 1.0)
    hf = next((v for v in variants if v.model == "hf"), None)
    rows = []
    for v in variants:
        lat = [t * 1e3 for t in times[id(v)]]
        rows.append(
            Row(
                model=v.model,
                schedule=v.schedule,
                target=v.target,
                batch_size=bs,
                r=list(v.r),
                tokens=list(v.tokens),
                gflops_per_clip=v.gflops,
                flop_ratio=base.gflops / v.gflops,
                latency_ms_median=median[id(v)] * 1e3,
                latency_ms_p90=_quantile(lat, 0.9),
                # Median-based: robust to the odd disturbed forward on a shared machine.
                throughput=bs / median[id(v)],
                speedup=median[id(base)] / median[id(v)],
                speedup_per_flop_ratio=(median[id(base)] / median[id(v)])
                / (base.gflops / v.gflops),
                speedup_vs_hf=(median[id(hf)] / median[id(v)]) if hf else None,
                peak_mem_mb=mem[id(v)],
                latencies_ms=lat,
            )
        )
    return rows


def _checks(rows: Sequence[Row]) -> list[dict]:
    """The issue's targets, evaluated honestly on the measured rows."""
    out = []
    for r in rows:
        if r.model == "ours" and r.target == 1.0 and r.speedup_vs_hf is not None:
            out.append(
                {
                    "check": f"ours r=0 at least as fast as HF (bs={r.batch_size})",
                    "value": round(r.speedup_vs_hf, 3),
                    "passed": r.speedup_vs_hf >= 1.0,
                }
            )
        if r.model == "ours" and 1.0 < r.flop_ratio <= 2.0 + 1e-6:
            out.append(
                {
                    "check": f"speed-up >= 0.9 x FLOP ratio ({r.schedule}, bs={r.batch_size})",
                    "value": round(r.speedup_per_flop_ratio, 3),
                    "passed": r.speedup_per_flop_ratio >= 0.9,
                }
            )
    return out


# ----------------------------------------------------------------------------- metadata


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (platform's guess elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _meta(
    size: ModelSize,
    device: torch.device,
    dtype: str,
    iters: int,
    warmup: int,
    targets: Sequence[float],
) -> dict:
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "timm": _version("timm"),
        "python": platform.python_version(),
        "dtype": dtype,
        "iters": iters,
        "warmup": warmup,
        "targets": list(targets),
        "model_size": asdict(size),
        "memory_method": MEMORY_METHOD[device.type],
        "flops_method": "tome.flops.vit_flops: matmuls of the transformer blocks (2 FLOPs per "
        "multiply-add), patch embedding, head and the merge matching left out",
        "throughput_method": "batch_size / median latency; timed forwards alternate between "
        "variants round-robin (order rotated every round)",
    }


# ----------------------------------------------------------------------------- output


def print_table(result: dict) -> None:
    """Rich table of all rows, then the target checks."""
    from rich.console import Console
    from rich.table import Table

    meta = result["meta"]
    table = Table(
        title=f"AST benchmark on {meta['device_name']} ({meta['dtype']}, "
        f"{meta['torch_threads']} threads, {meta['iters']} iters, {meta['clock']} clock)"
    )
    for col in (
        "bs",
        "model",
        "schedule",
        "GFLOPs",
        "FLOP ratio",
        "speed-up",
        "speed-up/FLOP",
        "median ms",
        "p90 ms",
        "clips/s",
        "vs HF",
        "peak MiB",
    ):
        table.add_column(col, justify="right")
    for r in result["rows"]:
        mem = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        table.add_row(
            str(r["batch_size"]),
            r["model"],
            r["schedule"],
            f"{r['gflops_per_clip']:.3g}",
            f"{r['flop_ratio']:.2f}",
            f"{r['speedup']:.2f}",
            f"{r['speedup_per_flop_ratio']:.2f}",
            f"{r['latency_ms_median']:.1f}",
            f"{r['latency_ms_p90']:.1f}",
            f"{r['throughput']:.3g}",
            "-" if r["speedup_vs_hf"] is None else f"{r['speedup_vs_hf']:.2f}",
            mem,
        )
    console = Console(width=max(Console().width, 132))  # pipes default to 80 columns
    console.print(table)
    for c in result["checks"]:
        mark = "[green]pass[/green]" if c["passed"] else "[red]MISS[/red]"
        console.print(f"{mark}  {c['check']}: {c['value']}")


def to_markdown(result: dict) -> str:
    """The rows and checks as a Markdown table (for docs/benchmarks.md)."""
    head = (
        "| bs | model | schedule | GFLOPs/clip | FLOP ratio | speed-up | speed-up / FLOP ratio "
        "| median ms | p90 ms | clips/s | vs HF | peak MiB |"
    )
    lines = [head, "|" + "---:|" * 12]
    for r in result["rows"]:
        mem = "-" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:.0f}"
        vs_hf = "-" if r["speedup_vs_hf"] is None else f"{r['speedup_vs_hf']:.2f}"
        lines.append(
            f"| {r['batch_size']} | {r['model']} | {r['schedule']} | {r['gflops_per_clip']:.3g} "
            f"| {r['flop_ratio']:.2f} | {r['speedup']:.2f} | {r['speedup_per_flop_ratio']:.2f} "
            f"| {r['latency_ms_median']:.1f} | {r['latency_ms_p90']:.1f} "
            f"| {r['throughput']:.3g} | {vs_hf} | {mem} |"
        )
    lines.append("")
    for c in result["checks"]:
        lines.append(f"- {'pass' if c['passed'] else 'MISS'}: {c['check']}: {c['value']}")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Measured speed-up against the FLOP ratio of each schedule; y = x is the ideal."""
    # A bare Figure renders with Agg and never touches pyplot's global backend state.
    from matplotlib.figure import Figure

    rows = result["rows"]
    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot()
    top = max(r["flop_ratio"] for r in rows)
    ax.plot([1, top], [1, top], "k--", lw=1, label="ideal (= FLOP ratio)")
    for bs in sorted({r["batch_size"] for r in rows}):
        ours = sorted(
            (r for r in rows if r["model"] == "ours" and r["batch_size"] == bs),
            key=lambda r: r["flop_ratio"],
        )
        ax.plot(
            [r["flop_ratio"] for r in ours],
            [r["speedup"] for r in ours],
            "o-",
            label=f"ours, batch {bs}",
        )
        for r in ours:
            ax.annotate(
                r["schedule"],
                (r["flop_ratio"], r["speedup"]),
                xytext=(5, -10),
                textcoords="offset points",
                fontsize=7,
            )
        hf = [r for r in rows if r["model"] == "hf" and r["batch_size"] == bs]
        if hf:
            ax.plot([1.0], [hf[0]["speedup"]], "x", ms=8, label=f"HF AST, batch {bs}")
    meta = result["meta"]
    ax.set_xlabel("analytic FLOP ratio (r=0 / schedule)")
    ax.set_ylabel("measured speed-up vs our r=0")
    ax.set_title(
        f"{meta['device_name']} ({meta['dtype']}, {meta['torch_threads']} threads, "
        f"{meta['clock']} clock)",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
