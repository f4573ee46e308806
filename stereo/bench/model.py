"""Benchmark the networks: parameters, eval forward time and peak memory, training step time.

    python scripts/bench_model.py [runs=3] [threads=2] [budget_gb=12] [memory=true] [out=bench_results/model.json]

Eval forward of ``psmnet``, ``ea_psmnet``, ``ea_psmnet`` with dot-product attention, ``ea_psmnet_light`` and
``ea_psmnet`` with attention at 1/2 resolution (efficient and dot-product), ``ea_psmnet`` with each linear attention
kind (linear, latent, multires) at 1/4 resolution and ``ea_psmnet_light`` with its sub-pixel refinement
(``model.refine``) and stage (one, two or three updates; two then a round of the runtime's ``propagate``; two, the
learned choice, then none or one round of update and choice), at each size in ``eval_sizes``
(``variants=[label,...]`` runs only those) and in each of ``eval_precisions``; a training
step (forward, PSMNet's 0.5/0.7/1.0 loss over the heads, backward, Adam) at ``train_size``, batch ``train_batch``,
of each of ``train_models`` in each of ``train_precisions`` (fp32 by default; ``[fp32,bf16]`` on hardware with
native bf16, for either list: the ratios then add each bf16 case's time over its fp32 twin). Dot-product cases whose
attention map alone is estimated above ``budget_gb`` are skipped with the estimate.

Times: the cases of one size (and the training steps) run in one process, taking turns round by round
(:func:`~stereo.bench.harness.interleave`), and every ratio is the median over rounds of the ratio within
a round: on a shared, noisy machine separate processes' medians can swing by a third. Memory
(``memory=true``): each case once more alone in a fresh process, its peak working memory and the
process's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from stereo.bench.cases import NetworkCase, dot_product_attention_bytes
from stereo.bench.harness import GiB, MeasureConfig, MiB, Timing, environment, format_table, ratio, run_isolated
from stereo.cli import parse_overrides
from stereo.config import to_plain
from stereo.errors import ConfigError
from stereo.io import write_json

DOT = ["feature.attention.0.kind=dot_product"]
HALF = [
    "feature.attention.0.position=layer1",
    "feature.attention.0.key_channels=16",
    "feature.attention.0.value_channels=32",
]
TWO_UPDATES = ["refine=modes", "subpixel=match", "subpixel_steps=2"]  # the shipped weights' stage since gen3l
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
    ("ea_psmnet_light refine=modes subpixel=match", "ea_psmnet_light", ["refine=modes", "subpixel=match"], None),
    ("ea_psmnet_light refine=modes subpixel=match subpixel_steps=2", "ea_psmnet_light", TWO_UPDATES, None),
    ("ea_psmnet_light refine=modes subpixel=match subpixel_steps=3", "ea_psmnet_light", TWO_UPDATES, None),
    ("ea_psmnet_light refine=modes subpixel=match subpixel_steps=2 propagate=1", "ea_psmnet_light", TWO_UPDATES, None),
    (
        "ea_psmnet_light refine=modes subpixel=match subpixel_steps=2 subpixel_select=learned",
        "ea_psmnet_light",
        TWO_UPDATES + ["subpixel_select=learned"],
        None,
    ),
    (
        "ea_psmnet_light refine=modes subpixel=match subpixel_steps=2 subpixel_select=learned subpixel_rounds=1",
        "ea_psmnet_light",
        TWO_UPDATES + ["subpixel_select=learned"],
        None,
    ),
    ("ea_psmnet attn@1/2", "ea_psmnet", HALF, None),
    ("ea_psmnet attn@1/2 dot-product", "ea_psmnet", HALF + DOT, (32, 16, 32, 2)),
]

RUNTIME_OF = {  # variants that differ from another only in runtime settings (stereo.config.RuntimeConfig)
    "ea_psmnet_light refine=modes subpixel=match subpixel_steps=3": {"subpixel_steps": 3},
    "ea_psmnet_light refine=modes subpixel=match subpixel_steps=2 propagate=1": {"propagate": 1},
    "ea_psmnet_light refine=modes subpixel=match subpixel_steps=2 subpixel_select=learned subpixel_rounds=1": {
        "subpixel_rounds": 1
    },
}


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
    memory: bool = True  # also run each case alone in a fresh process for its memory
    out: str = "bench_results/model.json"


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(BenchModelConfig, argv, doc=__doc__)
    labels = [v[0] for v in VARIANTS]
    unknown = [v for v in cfg.variants or [] if v not in labels]
    if unknown:
        raise ConfigError(f"variants: unknown {', '.join(map(repr, unknown))}; known: {', '.join(labels)}")
    how = {"device": cfg.device, "threads": cfg.threads, "warmup": cfg.warmup, "runs": cfg.runs}
    results = []
    for h, w in cfg.eval_sizes:
        cases, skipped = _eval_cases(cfg, h, w)
        results += skipped + _measure(cases, how, cfg.memory, f"{h}x{w} eval")
    th, tw = cfg.train_size
    train = [_record(m, m, th, tw, p, train=True, batch=cfg.train_batch)
             for m in cfg.train_models for p in cfg.train_precisions]  # fmt: skip
    results += _measure(train, how, cfg.memory, f"{th}x{tw} training step")
    print()
    print(f"Model benchmark: {cfg.device}, {cfg.threads} threads, the cases of a size in turns in one process, "
          f"median of {cfg.runs} rounds after {cfg.warmup} warm-up; memory: each case alone")  # fmt: skip
    print(format_table([_row(r) for r in results], ["variant", "size", "mode", "params", "median s", "work MiB",
                                                     "proc GB"]))  # fmt: skip
    ratios = _ratios(results)
    for k, v in ratios.items():
        print(f"  {k}: {v:.3f}")
    payload = {"config": to_plain(cfg), "environment": environment(), "results": results, "ratios": ratios}
    write_json(cfg.out, payload)
    print(f"\nwrote {cfg.out}")
    return payload


def _record(variant: str, model: str, h: int, w: int, precision: str, overrides: list | None = None,
            train: bool = False, batch: int = 1) -> dict[str, Any]:  # fmt: skip
    """A case to measure: its variant (the table's label) and its :class:`~stereo.bench.cases.NetworkCase`,
    whose label is unique within its interleaved group."""
    label = f"{variant} {precision}" + (" train" if train else "")
    case = NetworkCase(label, model, h, w, list(overrides or []), train=train, batch=batch, precision=precision,
                       runtime=RUNTIME_OF.get(variant))  # fmt: skip
    return {"variant": variant, "case": asdict(case)}


def _eval_cases(cfg: BenchModelConfig, h: int, w: int) -> tuple[list[dict], list[dict]]:
    """The eval cases at one size, and those skipped (a dot-product map estimated above ``budget_gb``)."""
    cases, skipped = [], []
    for variant, model, overrides, attn in VARIANTS:
        if cfg.variants is not None and variant not in cfg.variants:
            continue
        for precision in cfg.eval_precisions:
            r = _record(variant, model, h, w, precision, overrides)
            if attn is not None:
                c, k, v, stride = attn
                est = dot_product_attention_bytes(1, 1, (h // stride) * (w // stride), c, k, v)
                if est > cfg.budget_gb * GiB:
                    r["skipped"] = f"attention map alone needs {est / GiB:.0f} GB (budget {cfg.budget_gb:g} GB)"
                    r["estimated_bytes"] = est
                    print(f"{variant} {h}x{w} eval {precision}: skipped: {r['skipped']}", flush=True)
                    skipped.append(r)
                    continue
            cases.append(r)
    return cases, skipped


def _measure(records: list[dict], how: dict, memory: bool, what: str) -> list[dict]:
    """Time ``records`` in turns in one process (``timing``, ``parameters``) and, with ``memory``, each alone
    in a fresh one (``alone``: its memory and its own time)."""
    if not records:
        return records
    print(f"{what}: {len(records)} case(s) in turns ...", end="", flush=True)
    r = run_isolated("stereo.bench.cases:model_interleaved", {"cases": [c["case"] for c in records], "how": how})
    print(" done", flush=True)
    for c in records:
        c["timing"], c["parameters"] = r["timings"][c["case"]["label"]], r["parameters"][c["case"]["label"]]
        c["alone"] = None
        if memory:
            print(f"  {c['case']['label']} alone ...", end="", flush=True)
            c["alone"] = run_isolated("stereo.bench.cases:model_case", {"case": c["case"], "how": how})
            t = c["alone"]["timing"]
            print(f" peak {(t['process_peak_bytes'] or t['peak_bytes']) / GiB:.2f} GB", flush=True)
    return records


def _row(r: dict) -> list:
    c = r["case"]
    mode, size = ("train " if c["train"] else "eval fwd ") + c["precision"], f"{c['height']}x{c['width']}"
    if "skipped" in r:
        return [r["variant"], size, mode, "-", f"skip: {r['skipped']}", "-", "-"]
    median = r["timing"]["median_s"]
    alone = (r.get("alone") or {}).get("timing", {})
    return [r["variant"], size, mode, f"{r['parameters']:,}",
            f"{median:.2f}" + (f" ({c['batch'] / median:.2f} samples/s)" if c["train"] else ""),
            f"{alone['peak_bytes'] / MiB:.0f}" if alone.get("peak_bytes") is not None else "-",
            f"{alone['process_peak_bytes'] / GiB:.2f}" if alone.get("process_peak_bytes") else "-"]  # fmt: skip


def _ratios(results: list[dict]) -> dict[str, float]:
    """Time ratios within each interleaved group (bf16 over its fp32 twin, the refinement over the light
    model, ea_psmnet over psmnet) and ea_psmnet's process peak over psmnet's (measured alone)."""
    by = {(r["variant"], r["case"]["height"], r["case"]["width"], r["case"]["train"], r["case"]["precision"]): r
          for r in results if "skipped" not in r}  # fmt: skip
    out = {}
    for (variant, h, w, train, precision), r in by.items():
        mode, t = "train" if train else "eval", Timing.from_json(r["timing"])
        twin = by.get((variant, h, w, train, "fp32"))
        if precision != "fp32" and twin:
            out[f"{variant} {precision}/fp32 time {h}x{w} {mode}"] = ratio(t, Timing.from_json(twin["timing"]))
        if precision != "fp32":
            continue
        light, base = by.get(("ea_psmnet_light", h, w, train, "fp32")), by.get(("psmnet", h, w, train, "fp32"))
        if variant.startswith("ea_psmnet_light refine=") and light:
            out[f"{variant}/ea_psmnet_light time {h}x{w}"] = ratio(t, Timing.from_json(light["timing"]))
        if variant == "ea_psmnet" and base:
            out[f"ea_psmnet/psmnet time {h}x{w} {mode}"] = ratio(t, Timing.from_json(base["timing"]))
            peaks = [(x.get("alone") or {}).get("timing", {}).get("process_peak_bytes") for x in (r, base)]
            if all(peaks):
                out[f"ea_psmnet/psmnet process peak {h}x{w} {mode}"] = peaks[0] / peaks[1]
    return out
