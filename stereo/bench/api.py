"""Overhead of the Python API over the network alone, side by side (each variant in a fresh process).

    python scripts/bench_api.py [height=544 width=960 runs=5 threads=2 out=bench_results/api.json]

Variants: ``network`` (``stereo.models.run`` on ready tensors), ``api`` (``StereoModel.predict``
on uint8 numpy arrays: conversion, padding and the result back as numpy included) and
``api_confidence`` (the same with the confidence map). Prints medians and ratios to ``network``.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import OmegaConf

from stereo.bench.cases import API_VARIANTS
from stereo.bench.harness import MeasureConfig, environment, format_table, run_isolated
from stereo.cli import parse_overrides
from stereo.config import rng
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
    rows = [run_isolated("stereo.bench.cases:api_case", {"variant": v, "height": cfg.height, "width": cfg.width,
                                                         "threads": cfg.threads, "warmup": cfg.warmup,
                                                         "runs": cfg.runs}) for v in API_VARIANTS]  # fmt: skip
    base = rows[0]["median_s"]
    table = [[r["variant"], f"{r['median_s']:.3f}", f"{min(r['times_s']):.3f}", f"{max(r['times_s']):.3f}",
              f"{r['median_s'] / base:.3f}x"] for r in rows]  # fmt: skip
    print(f"shipped weights at {cfg.height}x{cfg.width}, {cfg.runs} runs after {cfg.warmup} warm-up, one process each")
    print(format_table(table, ["variant", "median s", "min s", "max s", "vs network"]))
    write_json(cfg.out, {"environment": environment(), "config": OmegaConf.to_container(cfg), "results": rows})
    print(f"wrote {cfg.out}")
