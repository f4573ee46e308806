"""Benchmark every attention kind: forward and forward+backward time and peak memory, against efficient.

    python scripts/bench_attention.py [runs=3] [threads=2] [budget_gb=12] [out=bench_results/attention.json]
    python scripts/bench_attention.py kinds=[efficient,linear] sizes=[[68,120]]      # a subset

Every case runs in a fresh subprocess (see :mod:`stereo.bench.harness`). Dot-product cases whose estimated
memory exceeds ``budget_gb``, or whose work exceeds ``max_dot_tflop``, are skipped with the estimate.
Overrides are ``key=value`` as in every script of this project.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import OmegaConf

from stereo.bench.cases import dot_product_attention_bytes
from stereo.bench.harness import GiB, MeasureConfig, MiB, environment, format_table, run_isolated
from stereo.cli import parse_overrides
from stereo.io import write_json


@dataclass
class BenchAttentionConfig(MeasureConfig):
    # Feature-map sizes (H, W): Scene Flow 540x960 at 1/8, 1/4, 1/2 and full (padded to 544).
    sizes: list = field(default_factory=lambda: [[68, 120], [136, 240], [272, 480], [544, 960]])
    channels: int = 128
    key_channels: int = 64
    value_channels: int = 128
    heads: int = 1
    normalization: str = "softmax"
    batch: int = 1
    device: str = "cpu"
    budget_gb: float = 12.0  # skip dot-product cases estimated to need more memory than this
    max_dot_tflop: float = 1.5  # ... or more floating-point work than this (per measured call)
    dot_max_positions: int = 136 * 240  # dot-product only up to 1/4 of 544x960; efficient alone above
    sdpa: bool = True  # also measure torch's fused scaled_dot_product_attention
    # The linear kinds measured beside efficient and dot-product (stereo.models.attention.ATTENTION_KINDS).
    kinds: list = field(default_factory=lambda: ["linear", "latent", "multires"])
    latents: int = 64  # kind=latent
    latent_layers: int = 1
    scales: list = field(default_factory=lambda: [1, 2, 4, 8])  # kind=multires (heads = len(scales))
    out: str = "bench_results/attention.json"


def _dot_tflop(cfg: BenchAttentionConfig, n: int, backward: bool) -> float:
    flop = 2 * cfg.batch * n * n * (cfg.key_channels + cfg.value_channels)
    return flop * (3 if backward else 1) / 1e12


def main(argv: list[str]) -> dict:
    cfg = parse_overrides(BenchAttentionConfig, argv, doc=__doc__)
    kinds = ["efficient", *cfg.kinds, "dot_product"] + (["dot_product_sdpa"] if cfg.sdpa else [])
    extras = {"latent": {"latents": cfg.latents, "latent_layers": cfg.latent_layers},
              "multires": {"scales": list(cfg.scales)}}  # fmt: skip
    common = {
        k: cfg[k]
        for k in (
            "channels",
            "key_channels",
            "value_channels",
            "heads",
            "normalization",
            "batch",
            "device",
            "threads",
            "warmup",
            "runs",
        )
    }
    results = []
    for h, w in cfg.sizes:
        n = h * w
        for backward in (False, True):
            for kind in kinds:
                case = {"kind": kind, "height": h, "width": w, "backward": backward}
                label = f"{kind:17s} {h}x{w} {'fwd+bwd' if backward else 'fwd'}"
                skip = None
                if kind.startswith("dot_product"):
                    est = dot_product_attention_bytes(
                        cfg.batch,
                        cfg.heads,
                        n,
                        cfg.channels,
                        cfg.key_channels,
                        cfg.value_channels,
                        cfg.normalization,
                        backward,
                    )
                    tflop = _dot_tflop(cfg, n, backward)
                    if n > cfg.dot_max_positions:
                        skip = f"skipped: needs {est / GiB:.0f} GB, ~{tflop:.1f} TFLOP per call"
                    elif est > cfg.budget_gb * GiB:
                        skip = f"skipped: needs {est / GiB:.1f} GB (budget {cfg.budget_gb:g} GB)"
                    elif tflop > cfg.max_dot_tflop:
                        skip = f"skipped: ~{tflop:.1f} TFLOP per call (budget {cfg.max_dot_tflop:g})"
                if skip:
                    print(f"{label}: {skip}", flush=True)
                    results.append({**case, "estimated_bytes": est, "skipped": skip})
                    continue
                print(f"{label}: running ...", end="", flush=True)
                args = {**common, **case, "extra": extras.get(kind)}
                r = run_isolated("stereo.bench.cases:attention_case", args)
                print(f" {r['median_s'] * 1e3:.1f} ms, peak {r['peak_bytes'] / MiB:.0f} MiB", flush=True)
                if kind.startswith("dot_product"):
                    r["estimated_bytes"] = est
                results.append({**case, **r})

    rows, ratios = [], {}
    by_key = {(r["kind"], r["height"], r["width"], r["backward"]): r for r in results}
    for h, w in cfg.sizes:
        for backward in (False, True):
            eff = by_key[("efficient", h, w, backward)]
            for kind in kinds:
                r = by_key[(kind, h, w, backward)]
                row = [f"{h}x{w}", "fwd+bwd" if backward else "fwd", kind]
                if "skipped" in r:
                    rows.append(row + [f"skip ({r['estimated_bytes'] / GiB:.0f} GB)", "-", "-", "-"])
                    continue
                t, m = r["median_s"] / eff["median_s"], r["peak_bytes"] / max(eff["peak_bytes"], 1)
                ratios[f"{kind}/{h}x{w}/{'fwd+bwd' if backward else 'fwd'}"] = {"time_ratio": t, "memory_ratio": m}
                rows.append(row + [_ms(r), _mib(r), f"{t:.2f}x", f"{m:.2f}x"])
    header = ["size", "pass", "kind", "ms", "MiB", "t / efficient", "mem / efficient"]

    print()
    print(
        f"Attention benchmark: C={cfg.channels}, d_k={cfg.key_channels}, d_v={cfg.value_channels}, "
        f"heads={cfg.heads}, {cfg.normalization}, batch {cfg.batch}, {cfg.device}, "
        f"median of {cfg.runs} runs after {cfg.warmup} warm-up, peak memory above the input"
    )
    print(format_table(rows, header))
    targets = _targets(by_key)
    if targets:
        print()
        for name, (ok, detail) in targets.items():
            print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}")
    payload = {
        "config": OmegaConf.to_container(cfg),
        "environment": environment(),
        "results": results,
        "ratios": ratios,
        "targets": {k: {"pass": ok, "detail": d} for k, (ok, d) in targets.items()},
    }
    write_json(cfg.out, payload)
    print(f"\nwrote {cfg.out}")
    return payload


def _ms(r: dict) -> str:
    return f"{r['median_s'] * 1e3:.1f}"


def _mib(r: dict) -> str:
    return f"{r['peak_bytes'] / MiB:.0f}"


def _targets(by_key: dict) -> dict[str, tuple[bool, str]]:
    """The issue's targets, evaluated on whatever cases ran."""
    out = {}

    def ok(k):
        return k in by_key and "skipped" not in by_key[k]

    e, d = ("efficient", 136, 240, False), ("dot_product", 136, 240, False)
    if ok(e) and ok(d):
        t = by_key[d]["median_s"] / by_key[e]["median_s"]
        m = by_key[d]["peak_bytes"] / by_key[e]["peak_bytes"]
        out["136x240 fwd: >= 50x faster"] = (t >= 50, f"{t:.0f}x")
        out["136x240 fwd: >= 30x less memory"] = (m >= 30, f"{m:.0f}x")
    e, d = ("efficient", 68, 120, False), ("dot_product", 68, 120, False)
    if ok(e) and ok(d):
        t = by_key[d]["median_s"] / by_key[e]["median_s"]
        out["68x120 fwd: >= 10x faster"] = (t >= 10, f"{t:.0f}x")
    a, b = ("efficient", 272, 480, False), ("efficient", 544, 960, False)
    if ok(a) and ok(b):
        g = by_key[b]["median_s"] / by_key[a]["median_s"]
        out["efficient fwd 544x960 / 272x480 time <= 5x"] = (g <= 5, f"{g:.2f}x for 4x positions")
    f = ("efficient", 544, 960, True)
    if ok(f):
        gb = by_key[f]["peak_bytes"] / GiB
        out["efficient fwd+bwd at 544x960 <= 2 GB"] = (gb <= 2, f"{gb:.2f} GB")
    return out
