"""Overhead of the Python API over the network alone: the variants in turns in one process.

    python scripts/bench_api.py [height=544 width=960 runs=5 threads=2 out=bench_results/api.json]

Variants: ``network`` (``stereo.models.run`` on ready tensors), ``api`` (``StereoModel.predict``
on uint8 numpy arrays: conversion, padding and the result back as numpy included) and
``api_confidence`` (the same with the confidence map). Prints medians and ratios to ``network`` (the
median over rounds of the ratio within a round, :func:`~stereo.bench.harness.ratio`).
"""

from __future__ import annotations

from dataclasses import dataclass

from stereo.bench.cases import API_VARIANTS
from stereo.bench.harness import MeasureConfig, Timing, environment, format_table, ratio, run_isolated
from stereo.cli import parse_overrides
from stereo.config import rng, to_plain
from stereo.io import write_json


@dataclass
class ApiBenchConfig(MeasureConfig):
    height: int = rng(544, ge=16)
    width: int = rng(960, ge=16)
    runs: int = rng(5, ge=1, help="timed runs per variant; the table shows their median")
    threads: int = rng(0, ge=0, help="CPU threads (0 = PyTorch's default)")
    out: str = "bench_results/api.json"


def main(argv: list[str]) -> None:
    cfg = parse_overrides(ApiBenchConfig, argv, doc=__doc__)
    how = {"threads": cfg.threads, "warmup": cfg.warmup, "runs": cfg.runs}
    r = run_isolated("stereo.bench.cases:api_interleaved", {"height": cfg.height, "width": cfg.width, "how": how})
    timings = {v: Timing.from_json(r["timings"][v]) for v in API_VARIANTS}
    base = timings["network"]
    table = [[v, f"{t.median_s:.3f}", f"{min(t.times_s):.3f}", f"{max(t.times_s):.3f}", f"{ratio(t, base):.3f}x"]
             for v, t in timings.items()]  # fmt: skip
    print(f"shipped weights at {cfg.height}x{cfg.width}, in turns: {cfg.runs} rounds after {cfg.warmup} warm-up")
    print(format_table(table, ["variant", "median s", "min s", "max s", "vs network"]))
    results = [{"variant": v, **t.to_json(), "vs_network": ratio(t, base)} for v, t in timings.items()]
    write_json(cfg.out, {"environment": environment(), "config": to_plain(cfg), "results": results})
    print(f"wrote {cfg.out}")
