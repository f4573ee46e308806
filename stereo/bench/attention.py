"""Benchmark every attention kind: forward and forward+backward time and peak memory, against efficient.

    python scripts/bench_attention.py [runs=3] [threads=2] [budget_gb=12] [out=bench_results/attention.json]
    python scripts/bench_attention.py kinds=[efficient,linear] sizes=[[68,120]]      # a subset

Times: the cases of a pass (forward, or forward + backward) run in one process in turns, round by round
(:func:`~stereo.bench.harness.interleave`), and the ratios to efficient are medians over rounds of the
ratio within a round. Memory: each case once more alone in a fresh process (see :mod:`stereo.bench.harness`).
Dot-product cases whose estimated memory exceeds ``budget_gb``, or whose work exceeds ``max_dot_tflop``,
are skipped with the estimate.
Overrides are ``key=value`` as in every script of this project.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from stereo.bench.cases import AttentionCase, dot_product_attention_bytes
from stereo.bench.harness import GiB, MeasureConfig, MiB, Timing, environment, format_table, ratio, run_isolated
from stereo.cli import parse_overrides
from stereo.config import to_plain
from stereo.io import write_json

_CASE = AttentionCase("efficient", 1, 1)


@dataclass
class BenchAttentionConfig(MeasureConfig):
    # Feature-map sizes (H, W): Scene Flow 540x960 at 1/8, 1/4, 1/2 and full (padded to 544).
    sizes: list = field(default_factory=lambda: [[68, 120], [136, 240], [272, 480], [544, 960]])
    # the module's shape: AttentionCase's defaults, one place for them
    channels: int = _CASE.channels
    key_channels: int = _CASE.key_channels
    value_channels: int = _CASE.value_channels
    heads: int = _CASE.heads
    normalization: str = _CASE.normalization
    batch: int = _CASE.batch
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
    how = {"device": cfg.device, "threads": cfg.threads, "warmup": cfg.warmup, "runs": cfg.runs}
    results = []
    for backward in (False, True):
        records = _cases(cfg, backward)
        ready = [r for r in records if "skipped" not in r]
        print(f"{'fwd+bwd' if backward else 'fwd'}: {len(ready)} case(s) in turns ...", end="", flush=True)
        timed = run_isolated("stereo.bench.cases:attention_interleaved", {"cases": [r["case"] for r in ready],
                                                                          "how": how})  # fmt: skip
        print(" done", flush=True)
        for r in ready:
            r["timing"] = timed["timings"][r["label"]]
            print(f"  {r['label']} alone ...", end="", flush=True)
            r["alone"] = run_isolated("stereo.bench.cases:attention_case", {"case": r["case"], "how": how})
            print(f" peak {r['alone']['timing']['peak_bytes'] / MiB:.0f} MiB", flush=True)
        results += records
    by_key = {_key(r["case"]): r for r in results}
    rows, ratios = _table(cfg, by_key)
    print()
    print(f"Attention benchmark: C={cfg.channels}, d_k={cfg.key_channels}, d_v={cfg.value_channels}, "
          f"heads={cfg.heads}, {cfg.normalization}, batch {cfg.batch}, {cfg.device}; times: the cases of a pass in "
          f"turns, median of {cfg.runs} rounds after {cfg.warmup} warm-up; memory: each alone, above its "
          "input")  # fmt: skip
    print(format_table(rows, ["size", "pass", "kind", "ms", "MiB", "t / efficient", "mem / efficient"]))
    targets = _targets(by_key)
    if targets:
        print()
        for name, (ok, detail) in targets.items():
            print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {detail}")
    payload = {"config": to_plain(cfg), "environment": environment(), "results": results, "ratios": ratios,
               "targets": {k: {"pass": ok, "detail": d} for k, (ok, d) in targets.items()}}  # fmt: skip
    write_json(cfg.out, payload)
    print(f"\nwrote {cfg.out}")
    return payload


def _kinds(cfg: BenchAttentionConfig) -> list[str]:
    return ["efficient", *cfg.kinds, "dot_product"] + (["dot_product_sdpa"] if cfg.sdpa else [])


def _key(case: dict) -> tuple[str, int, int, bool]:
    return case["kind"], case["height"], case["width"], case["backward"]


def _cases(cfg: BenchAttentionConfig, backward: bool) -> list[dict[str, Any]]:
    """Every size and kind of one pass, with dot-product cases over the budgets marked ``skipped``."""
    extras = {"latent": {"latents": cfg.latents, "latent_layers": cfg.latent_layers},
              "multires": {"scales": list(cfg.scales)}}  # fmt: skip
    records = []
    for h, w in cfg.sizes:
        for kind in _kinds(cfg):
            case = AttentionCase(kind, h, w, backward, cfg.channels, cfg.key_channels, cfg.value_channels, cfg.heads,
                                 cfg.normalization, cfg.batch, extras.get(kind))  # fmt: skip
            record: dict[str, Any] = {"label": case.label, "case": asdict(case)}
            if kind.startswith("dot_product"):
                n, est = h * w, dot_product_attention_bytes(cfg.batch, cfg.heads, h * w, cfg.channels,
                    cfg.key_channels, cfg.value_channels, cfg.normalization, backward)  # fmt: skip
                tflop = _dot_tflop(cfg, n, backward)
                if n > cfg.dot_max_positions:
                    record["skipped"] = f"needs {est / GiB:.0f} GB, ~{tflop:.1f} TFLOP per call"
                elif est > cfg.budget_gb * GiB:
                    record["skipped"] = f"needs {est / GiB:.1f} GB (budget {cfg.budget_gb:g} GB)"
                elif tflop > cfg.max_dot_tflop:
                    record["skipped"] = f"~{tflop:.1f} TFLOP per call (budget {cfg.max_dot_tflop:g})"
                record["estimated_bytes"] = est
            if "skipped" in record:
                print(f"{case.label}: skipped: {record['skipped']}", flush=True)
            records.append(record)
    return records


def _table(cfg: BenchAttentionConfig, by_key: dict) -> tuple[list[list], dict[str, dict[str, float]]]:
    """The table's rows and each kind's time (within its pass's rounds) and memory over efficient's."""
    rows, ratios = [], {}
    for backward in (False, True):
        for h, w in cfg.sizes:
            eff = by_key[("efficient", h, w, backward)]
            for kind in _kinds(cfg):
                r, row = by_key[(kind, h, w, backward)], [f"{h}x{w}", "fwd+bwd" if backward else "fwd", kind]
                if "skipped" in r:
                    rows.append(row + [f"skip ({r['estimated_bytes'] / GiB:.0f} GB)", "-", "-", "-"])
                    continue
                t, m = _time_ratio(r, eff), _peak(r) / max(_peak(eff), 1)
                ratios[f"{kind}/{h}x{w}/{'fwd+bwd' if backward else 'fwd'}"] = {"time_ratio": t, "memory_ratio": m}
                rows.append(row + [f"{r['timing']['median_s'] * 1e3:.1f}", f"{_peak(r) / MiB:.0f}", f"{t:.2f}x",
                                   f"{m:.2f}x"])  # fmt: skip
    return rows, ratios


def _time_ratio(r: dict, base: dict) -> float:
    return ratio(Timing.from_json(r["timing"]), Timing.from_json(base["timing"]))


def _peak(r: dict) -> int:
    """The working memory of a case measured alone, in bytes."""
    return r["alone"]["timing"]["peak_bytes"]


def _targets(by_key: dict) -> dict[str, tuple[bool, str]]:
    """The issue's targets, evaluated on whatever cases ran (times: within a pass's rounds)."""
    out = {}

    def ok(k):
        return k in by_key and "skipped" not in by_key[k]

    e, d = ("efficient", 136, 240, False), ("dot_product", 136, 240, False)
    if ok(e) and ok(d):
        t, m = _time_ratio(by_key[d], by_key[e]), _peak(by_key[d]) / _peak(by_key[e])
        out["136x240 fwd: >= 50x faster"] = (t >= 50, f"{t:.0f}x")
        out["136x240 fwd: >= 30x less memory"] = (m >= 30, f"{m:.0f}x")
    e, d = ("efficient", 68, 120, False), ("dot_product", 68, 120, False)
    if ok(e) and ok(d):
        t = _time_ratio(by_key[d], by_key[e])
        out["68x120 fwd: >= 10x faster"] = (t >= 10, f"{t:.0f}x")
    a, b = ("efficient", 272, 480, False), ("efficient", 544, 960, False)
    if ok(a) and ok(b):
        g = _time_ratio(by_key[b], by_key[a])
        out["efficient fwd 544x960 / 272x480 time <= 5x"] = (g <= 5, f"{g:.2f}x for 4x positions")
    f = ("efficient", 544, 960, True)
    if ok(f):
        gb = _peak(by_key[f]) / GiB
        out["efficient fwd+bwd at 544x960 <= 2 GB"] = (gb <= 2, f"{gb:.2f} GB")
    return out
