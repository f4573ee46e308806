"""ONNX Runtime vs PyTorch eager at inference: time and peak memory, side by side in one run.

    python scripts/bench_onnx.py [models=[ea_psmnet_light,ea_psmnet]] [sizes=[[272,480],[544,960]]] [runs=3]
        [checkpoints=[shipped]]

Each model is exported once (random weights, ``stereo.export.export_onnx``); each of ``checkpoints`` (a file,
or ``shipped``: the weights shipped with the package) with its own weights and model, against PyTorch as
``stereo-infer`` runs it (:func:`stereo.checkpoint.load_network`). Times: both backends of a model
and size in turns in one process (:func:`~stereo.bench.harness.interleave`; the ratio is the median over
rounds of the ratio within a round). Memory: each alone in a fresh process (resident high-water mark above
the start).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stereo.bench.cases import BACKENDS
from stereo.bench.harness import GiB, MeasureConfig, Timing, environment, format_table, ratio, run_isolated
from stereo.cli import parse_overrides
from stereo.config import load_config, to_plain
from stereo.export import export_onnx
from stereo.io import write_json
from stereo.models import build_model
from stereo.weights import resolve_checkpoint


@dataclass
class BenchOnnxConfig(MeasureConfig):
    models: list = field(default_factory=lambda: ["ea_psmnet_light", "ea_psmnet"])
    checkpoints: list = field(default_factory=list)  # e.g. [shipped]: trained models as they ship
    sizes: list = field(default_factory=lambda: [[272, 480], [544, 960]])
    profile: bool = False  # also where each backend spends an eval forward, by operator, at the first size
    out: str = "bench_results/onnx.json"


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(BenchOnnxConfig, argv, doc=__doc__)
    how = {"threads": cfg.threads, "warmup": cfg.warmup, "runs": cfg.runs}
    results: list[dict] = []
    rows, profiles = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        # (label, file to export, checkpoint the PyTorch side loads: None = the model config, random weights)
        targets: list[tuple[str, Path, str | None]] = []
        for name in cfg.models:
            torch.manual_seed(0)
            mcfg = load_config(f"model/{name}")
            ckpt = Path(tmp) / f"{name}.pt"
            torch.save({"model": build_model(mcfg).state_dict(), "model_config": to_plain(mcfg)}, ckpt)
            targets.append((name, ckpt, None))
        for checkpoint in cfg.checkpoints:
            path = resolve_checkpoint(checkpoint)
            targets.append((Path(path).stem, Path(path), path))
        for i, (name, source, checkpoint) in enumerate(targets):
            onnx_path = str(Path(tmp) / f"{i}-{name}.onnx")
            export_onnx(source, onnx_path)
            for h, w in cfg.sizes:
                rows.append(_compare(name, h, w, onnx_path, how, results, checkpoint=checkpoint))
            if cfg.profile:
                profiles[name] = _profile(name, cfg.sizes[0], onnx_path, how, checkpoint=checkpoint)
    print()
    print(
        f"ONNX Runtime vs PyTorch eager, eval, {cfg.threads} threads, in turns: median of {cfg.runs} rounds after "
        f"{cfg.warmup} warm-up; memory: each alone"
    )
    print(
        format_table(rows, ["model", "size", "torch s", "ORT s", "ORT/torch t", "torch GB", "ORT GB", "ORT/torch mem"])
    )
    payload = {"config": to_plain(cfg), "environment": environment(), "results": results, "profiles": profiles}
    write_json(cfg.out, payload)
    print(f"\nwrote {cfg.out}")
    return payload


def _compare(
    name: str, h: int, w: int, onnx_path: str, how: dict, results: list[dict], checkpoint: str | None = None
) -> list[str]:
    """Both backends at one size: in turns for the time ratio, each alone for its memory; a table row. ``name``:
    a model config with random weights, or the label of ``checkpoint``, which then gives the network."""
    print(f"{name} {h}x{w}: torch and onnxruntime in turns ...", end="", flush=True)
    case = {"model": name, "height": h, "width": w, "onnx_path": onnx_path, "how": how, "checkpoint": checkpoint}
    timed = run_isolated("stereo.bench.cases:backend_interleaved", case)
    t, o = (Timing.from_json(timed["timings"][b]) for b in BACKENDS)
    print(f" {t.median_s:.2f} s / {o.median_s:.2f} s", flush=True)
    peak = {}
    for backend in BACKENDS:
        alone = run_isolated("stereo.bench.cases:backend_case", {**case, "backend": backend})
        results.append({**alone, "interleaved": timed["timings"][backend]})
        peak[backend] = alone["timing"]["peak_bytes"]
    return [name, f"{h}x{w}", f"{t.median_s:.2f}", f"{o.median_s:.2f}", f"{ratio(o, t):.2f}x",
            f"{peak['torch'] / GiB:.2f}", f"{peak['onnxruntime'] / GiB:.2f}",
            f"{peak['onnxruntime'] / peak['torch']:.2f}x"]  # fmt: skip


def _profile(name: str, size: list, onnx_path: str, how: dict, checkpoint: str | None = None) -> dict:
    """Both backends' time by operator for one eval forward, printed as two tables (top 10)."""
    h, w = size
    p = run_isolated("stereo.bench.cases:backend_profile", {"model": name, "height": h, "width": w,
                     "onnx_path": onnx_path, "how": how, "checkpoint": checkpoint})  # fmt: skip
    for backend in ("onnxruntime", "torch"):
        ops, total = p[backend]["ops"], p[backend]["total_s"]
        print(f"\n{name} {h}x{w}, {backend}: {total:.2f} s, by operator (top 10)")
        print(format_table([[k, f"{v:.3f}", f"{100 * v / total:.0f}%"] for k, v in ops[:10]], ["op", "s", "share"]))
    return p
