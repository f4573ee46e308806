"""ONNX Runtime vs PyTorch eager at inference: time and peak memory, side by side in one run.

    python scripts/bench_onnx.py [models=[ea_psmnet_light,ea_psmnet]] [sizes=[[272,480],[544,960]]] [runs=3]

Each model is exported once (random weights, ``stereo.export.export_onnx``); every case runs in a fresh
process (median of ``runs`` after a warm-up; memory = resident high-water mark above the start).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

from stereo.bench.harness import GiB, MeasureConfig, environment, format_table, run_isolated
from stereo.cli import parse_overrides
from stereo.config import load_config, to_plain
from stereo.export import export_onnx
from stereo.io import write_json
from stereo.models import build_model


@dataclass
class BenchOnnxConfig(MeasureConfig):
    models: list = field(default_factory=lambda: ["ea_psmnet_light", "ea_psmnet"])
    sizes: list = field(default_factory=lambda: [[272, 480], [544, 960]])
    out: str = "bench_results/onnx.json"


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(BenchOnnxConfig, argv, doc=__doc__)
    results, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in cfg.models:
            torch.manual_seed(0)
            mcfg = load_config(f"model/{name}")
            ckpt = Path(tmp) / f"{name}.pt"
            torch.save({"model": build_model(mcfg).state_dict(), "model_config": to_plain(mcfg)}, ckpt)
            onnx_path = Path(tmp) / f"{name}.onnx"
            export_onnx(ckpt, onnx_path)
            for h, w in cfg.sizes:
                pair = {}
                for backend in ("torch", "onnxruntime"):
                    print(f"{name} {h}x{w} {backend} ...", end="", flush=True)
                    r = run_isolated("stereo.bench.cases:backend_case", {
                        "model": name, "height": h, "width": w, "backend": backend, "onnx_path": str(onnx_path),
                        "threads": cfg.threads, "warmup": cfg.warmup, "runs": cfg.runs})  # fmt: skip
                    print(f" {r['median_s']:.2f} s, peak {r['peak_bytes'] / GiB:.2f} GB", flush=True)
                    results.append(r)
                    pair[backend] = r
                t, o = pair["torch"], pair["onnxruntime"]
                rows.append([name, f"{h}x{w}", f"{t['median_s']:.2f}", f"{o['median_s']:.2f}",
                             f"{o['median_s'] / t['median_s']:.2f}x", f"{t['peak_bytes'] / GiB:.2f}",
                             f"{o['peak_bytes'] / GiB:.2f}", f"{o['peak_bytes'] / t['peak_bytes']:.2f}x"])  # fmt: skip
    print()
    print(
        f"ONNX Runtime vs PyTorch eager, eval, {cfg.threads} threads, median of {cfg.runs} after {cfg.warmup} warm-up"
    )
    print(
        format_table(rows, ["model", "size", "torch s", "ORT s", "ORT/torch t", "torch GB", "ORT GB", "ORT/torch mem"])
    )
    payload = {"config": OmegaConf.to_container(cfg), "environment": environment(), "results": results}
    write_json(cfg.out, payload)
    print(f"\nwrote {cfg.out}")
    return payload
