"""Benchmark the networks: parameters, eval forward time and peak memory, training step time.

    python scripts/bench_model.py [runs=3] [threads=2] [budget_gb=12] [interleave=false] [out=bench_results/model.json]

Cases (each in a fresh subprocess): eval forward of ``psmnet``, ``ea_psmnet``, ``ea_psmnet`` with
dot-product attention, ``ea_psmnet_light`` and ``ea_psmnet`` with attention at 1/2 resolution
(efficient and dot-product), ``ea_psmnet`` with each linear attention kind (linear, latent,
multires) at 1/4 resolution and ``ea_psmnet_light`` with each sub-pixel refinement (``model.refine``),
at each size in ``eval_sizes`` (``variants=[label,...]`` runs only those) and in each of
``eval_precisions``; a training step (forward, PSMNet's
0.5/0.7/1.0 loss over the heads, backward, Adam) at ``train_size``, batch ``train_batch``, in each of
``train_precisions`` (fp32 by default; ``[fp32,bf16]`` on hardware with native bf16, for either list:
the table then adds each bf16 case's time over its fp32 twin).
Dot-product cases whose attention map alone is estimated above ``budget_gb`` are skipped with the
estimate.

``interleave=true`` times the eval variants of each size in one process instead, taking turns round by
round (:func:`~stereo.bench.cases.interleaved_case`): on a shared, noisy machine the ratios between them
(each the median over rounds of the ratio within a round) are then trustworthy, where separate processes'
medians can swing by a third. No memory figures in that mode.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from omegaconf import OmegaConf

from stereo.bench.cases import dot_product_attention_bytes
from stereo.bench.harness import GiB, MeasureConfig, MiB, environment, format_table, run_isolated
from stereo.cli import parse_overrides
from stereo.errors import ConfigError
from stereo.io import write_json

DOT = ["feature.attention.0.kind=dot_product"]
HALF = [
    "feature.attention.0.position=layer1",
    "feature.attention.0.key_channels=16",
    "feature.attention.0.value_channels=32",
]
# (label, model config, overrides, attention (channels, key, value, stride) for the memory estimate)
VARIANTS = [
    ("psmnet", "psmnet", [], None),
    ("ea_psmnet", "ea_psmnet", [], None),
    ("ea_psmnet dot-product", "ea_psmnet", DOT, (128, 64, 128, 4)),
    ("ea_psmnet linear", "ea_psmnet", ["feature.attention.0.kind=linear"], None),
    ("ea_psmnet latent", "ea_psmnet", ["feature.attention.0.kind=latent"], None),
    ("ea_psmnet multires", "ea_psmnet", ["feature.attention.0.kind=multires", "feature.attention.0.heads=4"], None),
    ("ea_psmnet_light", "ea_psmnet_light", [], None),
    ("ea_psmnet_light refine=modes", "ea_psmnet_light", ["refine=modes"], None),
    ("ea_psmnet attn@1/2", "ea_psmnet", HALF, None),
    ("ea_psmnet attn@1/2 dot-product", "ea_psmnet", HALF + DOT, (32, 16, 32, 2)),
]


@dataclass
class BenchModelConfig(MeasureConfig):
    eval_sizes: list = field(default_factory=lambda: [[256, 512], [544, 960]])
    train_size: list = field(default_factory=lambda: [256, 512])
    train_models: list = field(default_factory=lambda: ["ea_psmnet", "ea_psmnet_light"])
    # bf16 is emulated on CPUs without AVX512-BF16/AMX (> 30 min for these cases): add it on GPUs and
    # CPUs with those instructions.
    eval_precisions: list = field(default_factory=lambda: ["fp32"])
    train_precisions: list = field(default_factory=lambda: ["fp32"])
    train_batch: int = 1
    device: str = "cpu"
    budget_gb: float = 12.0
    variants: list | None = None  # labels of VARIANTS to run; null = all
    interleave: bool = False  # eval variants of a size in one process, taking turns (ratios, no memory)
    out: str = "bench_results/model.json"


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(BenchModelConfig, argv, doc=__doc__)
    labels = [v[0] for v in VARIANTS]
    unknown = [v for v in cfg.variants or [] if v not in labels]
    if unknown:
        raise ConfigError(f"variants: unknown {', '.join(map(repr, unknown))}; known: {', '.join(labels)}")
    common = {"device": cfg.device, "threads": cfg.threads, "warmup": cfg.warmup, "runs": cfg.runs}
    results = []
    eval_cases = [(size, variant, p) for size in cfg.eval_sizes for variant in VARIANTS for p in cfg.eval_precisions]
    for (h, w), (label, model, overrides, attn), precision in eval_cases:
        if cfg.variants is not None and label not in cfg.variants:
            continue
        case = {
            "label": label,
            "model": model,
            "overrides": overrides,
            "height": h,
            "width": w,
            "train": False,
            "precision": precision,
        }
        if attn is not None:
            c, k, v, stride = attn
            n = (h // stride) * (w // stride)
            est = dot_product_attention_bytes(1, 1, n, c, k, v)
            if est > cfg.budget_gb * GiB:
                skip = f"skipped: attention map alone needs {est / GiB:.0f} GB (budget {cfg.budget_gb:g} GB)"
                print(f"{label} {h}x{w} eval: {skip}", flush=True)
                results.append({**case, "estimated_bytes": est, "skipped": skip})
                continue
        if cfg.interleave:
            results.append(case)  # timed below with the other variants of its size and precision
            continue
        print(f"{label} {h}x{w} eval {precision} ...", end="", flush=True)
        args = {k: v for k, v in case.items() if k != "label"}
        r = run_isolated("stereo.bench.cases:model_case", {**common, **args})
        peak = r["process_peak_bytes"] or r["peak_bytes"]  # the process's on CPU; CUDA: the allocator's
        print(f" {r['median_s']:.2f} s, peak {peak / GiB:.2f} GB", flush=True)
        results.append({**case, **r})
    if cfg.interleave:
        results = _interleaved(results, common)
    th, tw = cfg.train_size
    for model in cfg.train_models:
        for precision in cfg.train_precisions:
            print(f"{model} {th}x{tw} train step {precision} ...", end="", flush=True)
            args = {"model": model, "height": th, "width": tw, "train": True, "precision": precision}
            r = run_isolated("stereo.bench.cases:model_case", {**common, **args, "batch": cfg.train_batch})
            print(f" {r['median_s']:.2f} s", flush=True)
            results.append({"label": model, **r})

    rows = []
    for r in results:
        mode = ("train " if r["train"] else "eval fwd ") + r.get("precision", "fp32")
        size = f"{r['height']}x{r['width']}"
        if "skipped" in r:
            rows.append([r["label"], size, mode, "-", r["skipped"].replace("skipped: ", "skip: "), "-", "-"])
            continue
        rows.append(
            [
                r["label"],
                size,
                mode,
                f"{r['parameters']:,}",
                f"{r['median_s']:.2f}" + (f" ({r['batch'] / r['median_s']:.2f} samples/s)" if r["train"] else ""),
                f"{r['peak_bytes'] / MiB:.0f}" if r.get("peak_bytes") is not None else "-",
                f"{r['process_peak_bytes'] / GiB:.2f}" if r.get("process_peak_bytes") else "-",
            ]
        )
    print()
    how = "eval variants of a size interleaved in one process, " if cfg.interleave else ""
    print(f"Model benchmark: {cfg.device}, {cfg.threads} threads, {how}median of {cfg.runs} after {cfg.warmup} warm-up")
    print(format_table(rows, ["variant", "size", "mode", "params", "median s", "work MiB", "proc GB"]))
    ratios = _ratios(results)
    for k, v in ratios.items():
        print(f"  {k}: {v:.3f}")
    payload = {
        "config": OmegaConf.to_container(cfg),
        "environment": environment(),
        "results": results,
        "ratios": ratios,
    }
    write_json(cfg.out, payload)
    print(f"\nwrote {cfg.out}")
    return payload


def _interleaved(results: list[dict], common: dict) -> list[dict]:
    """Time the eval cases of ``results`` that have no time yet, those of one size and precision together in
    one process (:func:`~stereo.bench.cases.interleaved_case`); returns ``results`` with their times."""
    pending = [r for r in results if not r["train"] and "skipped" not in r and "median_s" not in r]
    groups: dict[tuple, list[dict]] = {}
    for r in pending:
        groups.setdefault((r["height"], r["width"], r["precision"]), []).append(r)
    for (h, w, precision), cases in groups.items():
        labels = ", ".join(c["label"] for c in cases)
        print(f"{h}x{w} eval {precision}, interleaved: {labels} ...", end="", flush=True)
        variants = [{"label": c["label"], "model": c["model"], "overrides": c["overrides"]} for c in cases]
        args = {**common, "variants": variants, "height": h, "width": w, "precision": precision}
        r = run_isolated("stereo.bench.cases:interleaved_case", args)
        print(" done", flush=True)
        for c in cases:
            c.update(
                interleaved=True,
                times_s=r["times_s"][c["label"]],
                median_s=r["median_s"][c["label"]],
                parameters=r["parameters"][c["label"]],
                peak_bytes=None,
                process_peak_bytes=None,
            )
    return results


def _ratio(r: dict, base: dict) -> float:
    """``r``'s time over ``base``'s: the median of the per-round ratios when both ran interleaved (same
    rounds), else the ratio of the medians."""
    if r.get("interleaved") and base.get("interleaved"):
        return statistics.median(a / b for a, b in zip(r["times_s"], base["times_s"], strict=True))
    return r["median_s"] / base["median_s"]


def _ratios(results: list[dict]) -> dict[str, float]:
    by = {
        (r["label"], r["height"], r["width"], r["train"]): r
        for r in results
        if "skipped" not in r and r.get("precision", "fp32") == "fp32"
    }
    out = {}
    for r in results:
        twin = by.get((r["label"], r["height"], r["width"], r["train"]))
        if r.get("precision", "fp32") != "fp32" and "skipped" not in r and twin:
            mode = "train" if r["train"] else "eval"
            out[f"{r['label']} {r['precision']}/fp32 time {r['height']}x{r['width']} {mode}"] = (
                r["median_s"] / twin["median_s"]
            )
    for (label, h, w, train), r in by.items():
        base = by.get(("psmnet", h, w, train))
        light = by.get(("ea_psmnet_light", h, w, train))
        if label.startswith("ea_psmnet_light refine=") and light:
            out[f"{label}/ea_psmnet_light time {h}x{w}"] = _ratio(r, light)
        if label == "ea_psmnet" and base:
            mode = "train" if train else "eval"
            out[f"ea_psmnet/psmnet time {h}x{w} {mode}"] = _ratio(r, base)
            if r.get("process_peak_bytes") and base.get("process_peak_bytes"):
                out[f"ea_psmnet/psmnet process peak {h}x{w} {mode}"] = (
                    r["process_peak_bytes"] / base["process_peak_bytes"]
                )
    return out
