"""Speed against accuracy on a CPU: time per 544x960 pair beside bad-2 and bad-1 on the generated benchmarks,
for OpenCV SGBM and our networks, in fp32 and (where the CPU has it natively) bf16.

    python scripts/bench_chart.py [size=[544,960]] [runs=5] [limit=24] [plot=bench_results/chart.png]

Time: every method in turns in one fresh process (:func:`~stereo.bench.harness.interleave`), on the same
image pair (the first example pair of ``stereo/examples``, resized to ``size``), through what a user calls:
``stereo.load_model(...).predict`` on numpy images (no confidence) and SGBM's predictor through
:func:`stereo.models.run`, with SGBM searching the shipped network's range (128 px). Medians of ``runs``.
Accuracy: ``stereo-eval``'s code on the first ``limit`` test pairs of each benchmark (``benchmarks``, built by
``scripts/make_generated_benchmark.py``), ``render_pass``, mask 0 < gt < the set's range, per-image
averaging; SGBM's holes filled. ``ea_psmnet`` has random weights here: its time only (a vertical line).
``fast=<checkpoint>`` adds an ``ea_psmnet_fast`` checkpoint (``experiment=fast``) beside them.

Writes the JSON (with the date, CPU model and flags) and, when matplotlib is installed (``pip install
-e .[chart]``), the chart from that JSON (:func:`plot`).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stereo.bench.harness import environment, format_table, run_isolated
from stereo.cli import parse_overrides
from stereo.config import to_plain
from stereo.errors import ConfigError, MissingFileError
from stereo.io import write_json

SGBM = "SGBM (OpenCV)"
SHIPPED = "shipped (ea_psmnet_light)"
EA = "ea_psmnet (random weights: time only)"
FAST = "fast (ea_psmnet_fast)"


@dataclass
class ChartConfig:
    size: list = field(default_factory=lambda: [544, 960])
    runs: int = 5
    warmup: int = 1
    threads: int = 2
    precisions: list = field(default_factory=lambda: ["fp32", "bf16"])  # bf16 only where native
    root: str = "datasets"
    benchmarks: list = field(default_factory=lambda: ["generated-v1/272x480", "generated-v2/272x480"])
    limit: int = 24
    render_pass: str = "final"
    device: str = "cpu"
    fast: str | None = None  # an ea_psmnet_fast checkpoint: its point beside the others
    out: str = "bench_results/chart.json"
    plot: str | None = "bench_results/chart.png"


def chart_timings(
    height: int, width: int, precisions: list[str], warmup: int, runs: int, threads: int, fast: str | None = None
) -> dict:
    """Seconds per pair of every method and precision, in turns in this process (run it in a fresh one)."""
    import numpy as np
    import torch
    from PIL import Image

    from stereo.api import load_model, untrained_model
    from stereo.bench.harness import interleave, ratio
    from stereo.models import run
    from stereo.sgbm import SGBMStereo

    torch.set_num_threads(threads)
    examples = Path(__file__).resolve().parents[1] / "examples"
    left, right = (np.asarray(Image.open(examples / f"flying1_{v}.png").convert("RGB").resize((width, height)))
                   for v in ("left", "right"))  # fmt: skip
    shipped = {p: load_model("shipped", device="cpu", precision=p) for p in precisions}
    sgbm = SGBMStereo(int(shipped[precisions[0]].max_disp))
    lt, rt = (torch.from_numpy(i.transpose(2, 0, 1).copy())[None].float() / 255 for i in (left, right))
    steps: dict[str, Any] = {f"{SGBM} -": lambda: run(sgbm, lt, rt)}  # 8-bit images, fixed-point arithmetic
    for p, model in shipped.items():
        steps[f"{SHIPPED} {p}"] = lambda m=model: m.predict(left, right, confidence=False)
    for p in precisions if fast else []:
        quick = load_model(fast, device="cpu", precision=p)
        steps[f"{FAST} {p}"] = lambda m=quick: m.predict(left, right, confidence=False)
    for p in precisions:
        ea = untrained_model("ea_psmnet", device="cpu", precision=p)
        steps[f"{EA} {p}"] = lambda m=ea: m.predict(left, right, confidence=False)
    timings = interleave(steps, torch.device("cpu"), warmup, runs)
    ratios = {f"{m} bf16 over fp32": ratio(timings[f"{m} bf16"], timings[f"{m} fp32"])
              for m in (SHIPPED, EA, FAST) if "bf16" in precisions and f"{m} fp32" in timings}  # fmt: skip
    for label in [k for k in timings if k.startswith((SHIPPED, FAST))]:
        ratios[f"{label} over SGBM"] = ratio(timings[label], timings[f"{SGBM} -"])
    return {"timings": {label: t.to_json() for label, t in timings.items()}, "ratios": ratios}


def chart_accuracy(cfg: ChartConfig, precisions: list[str]) -> list[dict[str, Any]]:
    """bad-1/bad-2/EPE of SGBM and the shipped weights in each precision on each benchmark (stereo-eval's code)."""
    from stereo.evaluate import benchmark_max_disp, evaluate_methods

    cases = [(SGBM, "-", ["method=sgbm"])] + [
        (SHIPPED, p, ["checkpoint=shipped", f"precision={p}"]) for p in precisions
    ]
    cases += [(FAST, p, [f"checkpoint={cfg.fast}", f"precision={p}"]) for p in precisions if cfg.fast]
    results = []
    for bench in cfg.benchmarks:
        root = Path(cfg.root) / bench
        if not (root / "sample.json").is_file():
            name = bench.split("/")[0]
            build = f"python scripts/make_generated_benchmark.py name={name} out={Path(cfg.root) / name}"
            raise MissingFileError(f"{root / 'sample.json'}: benchmark {bench} not built; build it with: {build}")
        extra = [f"data.limit={cfg.limit}", f"device={cfg.device}"]
        methods = [(label, over) for label, _, over in cases]
        reports = evaluate_methods(
            methods, root, [cfg.render_pass], benchmark_max_disp(root), extra, show_progress=False
        )
        for (label, precision, _), (_, r) in zip(cases, reports, strict=True):
            results.append({"benchmark": bench, "method": label, "precision": precision, "pairs": r.pairs,
                            "epe": r.epe, "bad1": r.bad1, "bad2": r.bad2, "bad3": r.bad3})  # fmt: skip
    return results


def _precisions(cfg: ChartConfig) -> tuple[list[str], str | None]:
    from stereo.device import cpu_has_native_bf16

    unknown = sorted(set(cfg.precisions) - {"fp32", "bf16"})
    if unknown or "fp32" not in cfg.precisions:
        raise ConfigError(f"precisions={cfg.precisions}: expected fp32 and optionally bf16")
    if "bf16" in cfg.precisions and not cpu_has_native_bf16():
        return ["fp32"], "bf16 left out: this CPU has no native bf16 (emulated bf16 is far slower)"
    return list(cfg.precisions), None


def main(argv: list[str]) -> None:
    cfg = parse_overrides(ChartConfig, argv, doc=__doc__)
    precisions, note = _precisions(cfg)
    if note:
        print(note)
    h, w = (int(v) for v in cfg.size)
    accuracy = chart_accuracy(cfg, precisions)
    print(f"timing {h}x{w}, {cfg.runs} rounds in turns ...", flush=True)
    how = {"height": h, "width": w, "precisions": precisions, "warmup": cfg.warmup, "runs": cfg.runs,
           "threads": cfg.threads, "fast": cfg.fast}  # fmt: skip
    measured = run_isolated("stereo.bench.chart:chart_timings", how)
    env = environment()
    env["threads"] = cfg.threads
    result = {"date": datetime.date.today().isoformat(), "environment": env, "config": to_plain(cfg),
              "note": note, **measured, "accuracy": accuracy}  # fmt: skip
    print(format_table(_rows(result), ["method", "precision", f"s per {h}x{w} pair", *_columns(result)]))
    for name, value in result["ratios"].items():
        print(f"time, {name}: {value:.2f}x ({1 / value:.2f}x as fast; median over rounds of the ratio within one)")
    write_json(cfg.out, result)
    print(f"wrote {cfg.out}")
    if cfg.plot:
        try:
            plot(result, cfg.plot)
            print(f"wrote {cfg.plot}")
        except ImportError:
            print("no chart drawn: matplotlib is not installed (pip install -e .[chart])")


def _columns(result: dict) -> list[str]:
    return [f"{b} {m}" for b in result["config"]["benchmarks"] for m in ("bad-1 %", "bad-2 %", "EPE px")]


def _rows(result: dict) -> list[list[Any]]:
    rows = []
    for label, timing in result["timings"].items():
        method, precision = label.rsplit(" ", 1)
        acc = {r["benchmark"]: r for r in result["accuracy"] if r["method"] == method and r["precision"] == precision}
        cells = []
        for b in result["config"]["benchmarks"]:
            r = acc.get(b)
            cells += [f"{r['bad1']:.1f}", f"{r['bad2']:.1f}", f"{r['epe']:.2f}"] if r else ["-", "-", "-"]
        rows.append([method, precision, f"{timing['median_s']:.3f}", *cells])
    return rows


def plot(result: dict, path: str | Path) -> None:
    """Draw the chart from a :func:`main` JSON: bad-2 and bad-1 against seconds per pair, one marker per
    benchmark, one colour per method and precision; time-only methods as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env, cfg = result["environment"], result["config"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6), sharex=True)
    markers = dict(zip(cfg["benchmarks"], "osD^v", strict=False))
    colours = plt.get_cmap("tab10")
    for i, (label, timing) in enumerate(result["timings"].items()):
        method, precision = label.rsplit(" ", 1)
        seconds = timing["median_s"]
        points = [r for r in result["accuracy"] if r["method"] == method and r["precision"] == precision]
        for ax, metric in zip(axes, ("bad2", "bad1"), strict=True):
            if not points:
                ax.axvline(seconds, color=colours(i), linestyle="--", label=label)
            for r in points:
                ax.scatter(seconds, r[metric], color=colours(i), marker=markers[r["benchmark"]], s=60,
                           label=f"{label}, {r['benchmark']}")  # fmt: skip
    h, w = cfg["size"]
    for ax, metric in zip(axes, ("bad-2", "bad-1"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel(f"seconds per {h}x{w} pair ({env['threads']} threads, log scale)")
        ax.set_ylabel(f"{metric} % ({cfg['render_pass']} pass, first {cfg['limit']} test pairs)")
        ax.grid(True, which="both", alpha=0.3)
    flags = ", ".join(env.get("cpu_flags") or []) or "unknown"
    fig.suptitle(f"Speed and accuracy on a CPU, {result['date']}: {env.get('cpu_model')} ({flags}), "
                 f"torch {env['torch']}", fontsize=10)  # fmt: skip
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.22, 1, 0.95))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
