"""Inference cost from Scene Flow size to full-resolution Middlebury, against the original PSMNet and
the machine's roofline.

    python scripts/bench_inference.py [original=/path/to/PSMNet] [runs=3] [threads=2]

Every case runs alone in a fresh process (its time; peak memory = that process's resident high-water mark
above the loaded model and inputs; ``process`` = the whole process). With ``original=``, the variants of a
size also run in turns in one process (:func:`~stereo.bench.harness.interleave`) for their time over the
original's (the median over rounds of the ratio within a round). Variants of ``model`` (default ``ea_psmnet``):

- ``eager``: the straightforward path (whole frame, BatchNorm as a separate pass, no memory budget);
  skipped where the estimated 3-D memory exceeds ``eager_limit_gb``;
- ``fast``: BatchNorm folded into the convolutions (:mod:`stereo.models.fuse`) and the memory budget
  (``memory_budget_gb``): large frames run their 3-D part in bands of rows with the same result;
- ``original``: the original PSMNet code (``models/stackhourglass.py`` of a JiaRenChang/PSMNet checkout
  given as ``original=``; its ``.cuda()`` calls are no-ops on CPU), at the sizes where it fits;
- ``fast, budget X GB``: the fast path under each smaller memory budget in ``budgets`` at each of
  ``budget_sizes`` (the memory/time trade-off of banding);
- ``fast + compile``: the fast path through ``torch.compile`` (inductor) at ``compile_sizes``
  (``compile=true``; compilation time reported apart);
- ``fast, oneDNN off``: the fast path with PyTorch's oneDNN CPU kernels disabled, at ``onednn_sizes``
  (``onednn_off=true``).

Also: a training step at ``train_size`` (batch ``train_batch``) of ``model`` and the original (unless
``train=false``); the fp32 matmul rate (4096^3) as the roofline; FLOPs of one forward counted at the
smallest size and scaled by pixels (exact for this network: every layer is convolutional or linear in the
pixels), so each row reports achieved GFLOP/s. Prints a table and writes JSON; ``profile=true`` adds a
torch.profiler table of the eager and fast paths at ``profile_size``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from stereo.bench.cases import NetworkCase
from stereo.bench.harness import GiB, Timing, environment, format_table, ratio, run_isolated
from stereo.cli import parse_overrides
from stereo.config import to_plain
from stereo.io import write_json

ORIGINAL = "original PSMNet"


@dataclass
class BenchInferenceConfig:
    model: str = "ea_psmnet"
    sizes: list = field(default_factory=lambda: [[272, 480], [544, 960], [1088, 1920], [1984, 2880]])
    original: str | None = None  # a checkout of github.com/JiaRenChang/PSMNet
    original_max_size: list = field(default_factory=lambda: [544, 960])  # larger needs > 12 GB there
    memory_budget_gb: float = 8.0
    eager_limit_gb: float = 16.0
    runs: int = 3
    large_runs: int = 2  # sizes above 544x960: runs each (no warm-up run: it would double the time)
    threads: int = 2
    budgets: list = field(default_factory=lambda: [2.0, 1.0])  # GB at each of budget_sizes; below a band: slow
    budget_sizes: list = field(default_factory=lambda: [[544, 960]])
    compile: bool = False
    compile_sizes: list = field(default_factory=lambda: [[272, 480], [544, 960]])
    onednn_off: bool = False
    onednn_sizes: list = field(default_factory=lambda: [[272, 480]])
    train: bool = True  # the training-step comparison at train_size
    train_size: list = field(default_factory=lambda: [256, 512])
    train_batch: int = 1
    profile: bool = False
    profile_size: list = field(default_factory=lambda: [544, 960])
    out: str = "bench_results/inference.json"


def _sizes(sizes: list) -> list[list[int]]:
    """``[[H, W], ...]`` from the config (lists or tuples) as plain lists, for membership tests."""
    return [list(hw) for hw in sizes]


def _estimated_3d_gb(model: str, h: int, w: int) -> float:
    from stereo.config import load_config
    from stereo.models import build_model

    net = build_model(load_config(f"model/{model}"))
    return (h // 4) * (w // 4) * (net.max_disp // 4) * net.bytes_per_cell() / GiB


def _variants(cfg: BenchInferenceConfig, h: int, w: int) -> list[NetworkCase]:
    """The eval cases at one size (see the module docstring)."""
    m = cfg.model
    fast = {"fold_bn": True, "runtime": {"memory_budget_gb": cfg.memory_budget_gb}}
    cases = [NetworkCase("fast", m, h, w, **fast)]  # type: ignore[arg-type]
    est = _estimated_3d_gb(m, h, w)
    if est <= cfg.eager_limit_gb:
        cases.insert(0, NetworkCase("eager", m, h, w, runtime={"memory_budget_gb": None}))
    else:
        print(f"{h}x{w}: eager skipped (3-D part estimated at {est:.1f} GB > eager_limit_gb)", flush=True)
    if cfg.original and h * w <= cfg.original_max_size[0] * cfg.original_max_size[1]:
        cases.insert(0, NetworkCase(ORIGINAL, "psmnet", h, w, original=cfg.original))
    if [h, w] in _sizes(cfg.budget_sizes):
        cases += [NetworkCase(f"fast, budget {b:g} GB", m, h, w, fold_bn=True, runtime={"memory_budget_gb": b})
                  for b in cfg.budgets]  # fmt: skip
    if cfg.onednn_off and [h, w] in _sizes(cfg.onednn_sizes):
        cases.append(NetworkCase("fast, oneDNN off", m, h, w, onednn=False, **fast))  # type: ignore[arg-type]
    if cfg.compile and [h, w] in _sizes(cfg.compile_sizes):
        cases.append(NetworkCase("fast + compile", m, h, w, compile=True, **fast))  # type: ignore[arg-type]
    return cases


def _vs_original(cases: list[NetworkCase], how: dict, results: list[dict]) -> None:
    """With the original among ``cases``: every case's time over the original's, the cases in turns in one
    process, and its process peak (measured alone) over the original's; into each result."""
    if not cases or cases[0].label != ORIGINAL:
        return
    timed = run_isolated("stereo.bench.cases:model_interleaved", {"cases": [asdict(c) for c in cases], "how": how})
    base, base_peak = Timing.from_json(timed["timings"][ORIGINAL]), results[0]["timing"]["process_peak_bytes"]
    for r in results:
        r["interleaved"] = timed["timings"][r["label"]]
        r["time_vs_original"] = ratio(Timing.from_json(r["interleaved"]), base)
        r["memory_vs_original"] = r["timing"]["process_peak_bytes"] / base_peak


def _eval(cfg: BenchInferenceConfig, flops0: float, roof: float) -> list[dict]:
    """Every eval case of every size, alone, with its achieved GFLOP/s (and its ratios to the original)."""
    h0, w0 = cfg.sizes[0]
    results = []
    for h, w in cfg.sizes:
        large = h * w > 544 * 960
        how = {"threads": cfg.threads, "runs": cfg.large_runs if large else cfg.runs, "warmup": 0 if large else 1}
        flops, cases, size = flops0 * (h * w) / (h0 * w0), _variants(cfg, h, w), []
        for c in cases:
            print(f"{h}x{w} {c.label} ...", flush=True)
            r = run_isolated("stereo.bench.cases:model_case", {"case": asdict(c), "how": how})
            if r["compile_s"] is not None:
                print(f"  compiled in {r['compile_s']:.0f} s (first call)", flush=True)
            gflops = flops / 1e9 / r["timing"]["median_s"]
            size.append({**r, "label": c.label, "gflop": flops / 1e9, "gflops": gflops, "of_roofline": gflops / roof})
        _vs_original(cases, how, size)
        results += size
    return results


def _eval_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        c, t, vs = r["case"], r["timing"], r.get("time_vs_original")
        rows.append([
            f"{c['height']}x{c['width']}", r["label"], f"{t['median_s']:.2f}",
            f"{min(t['times_s']):.2f}-{max(t['times_s']):.2f}", len(t["times_s"]),
            f"{t['peak_bytes'] / GiB:.2f}", f"{t['process_peak_bytes'] / GiB:.2f}", r["bands"] or "-",
            f"{r['gflops']:.0f} ({r['of_roofline']:.0%})",
            f"{vs:.2f}x / {r['memory_vs_original']:.2f}x" if vs is not None else "-",
        ])  # fmt: skip
    header = ["size", "variant", "median s", "range s", "runs", "peak GiB", "process GiB", "bands",
              "GFLOP/s (of roofline)", "time (in turns) / memory vs original"]  # fmt: skip
    return format_table(rows, header)


def _train(cfg: BenchInferenceConfig) -> dict[str, Any] | None:
    """Training steps of ``model`` (and the original) at ``train_size``, in turns in one process."""
    if not cfg.train:
        return None
    th, tw = cfg.train_size
    cases = [NetworkCase(ORIGINAL, "psmnet", th, tw, train=True, batch=cfg.train_batch, original=cfg.original)]
    cases = cases * bool(cfg.original) + [NetworkCase(cfg.model, cfg.model, th, tw, train=True, batch=cfg.train_batch)]
    print(f"training step {th}x{tw} batch {cfg.train_batch}: {', '.join(c.label for c in cases)} ...", flush=True)
    how = {"threads": cfg.threads, "runs": cfg.runs}
    r = run_isolated("stereo.bench.cases:model_interleaved", {"cases": [asdict(c) for c in cases], "how": how})
    mine = Timing.from_json(r["timings"][cfg.model])
    if cfg.original:
        vs = ratio(mine, Timing.from_json(r["timings"][ORIGINAL]))
        print(f"training step: {cfg.model} {mine.median_s:.2f} s, {vs:.2f}x the original's (in turns)")
        r["time_vs_original"] = vs
    else:
        print(f"training step: {cfg.model} {mine.median_s:.2f} s (no original= given)")
    return r


def _profile(cfg: BenchInferenceConfig) -> dict[str, Any] | None:
    """torch.profiler's self CPU time by operator of the eager and fast paths at ``profile_size``."""
    if not cfg.profile:
        return None
    ph, pw = cfg.profile_size
    profile = {}
    for label, fold in (("eager", False), ("fast", True)):
        profile[label] = run_isolated("stereo.bench.cases:profile_case", {"model": cfg.model, "height": ph,
                                      "width": pw, "fold_bn": fold, "threads": cfg.threads})  # fmt: skip
        print(f"\nprofile {label} {ph}x{pw} (self CPU time by operator, top 12):")
        print(format_table([[k, f"{v:.2f}", f"{100 * v / profile[label]['total_s']:.0f}%"]
                            for k, v in profile[label]["ops"][:12]], ["op", "s", "share"]))  # fmt: skip
    return profile


def main(argv: list[str]) -> None:
    cfg = parse_overrides(BenchInferenceConfig, argv, doc=__doc__)
    env = environment()
    roof = run_isolated("stereo.bench.cases:matmul_case", {"threads": cfg.threads})["gflops"]
    h0, w0 = cfg.sizes[0]
    flops0 = run_isolated("stereo.bench.cases:flops_case", {"model": cfg.model, "height": h0, "width": w0})["flops"]
    print(f"fp32 matmul roofline: {roof:.0f} GFLOP/s; {cfg.model}: {flops0 / 1e9:.0f} GFLOP at {h0}x{w0}", flush=True)
    results = _eval(cfg, flops0, roof)
    print(f"\n{cfg.model}, eval, fp32, {cfg.threads} threads; roofline {roof:.0f} GFLOP/s (fp32 matmul)")
    print(_eval_table(results))
    pix = [(r["case"]["height"] * r["case"]["width"], r["timing"]["median_s"]) for r in results if r["label"] == "fast"]
    per_mpix = [t / (p / 1e6) for p, t in pix]
    print("fast path seconds per megapixel by size: " + ", ".join(f"{v:.2f}" for v in per_mpix))
    train, profile = _train(cfg), _profile(cfg)
    write_json(cfg.out, {"environment": env, "config": to_plain(cfg), "roofline_gflops": roof,
                         "flops_at_first_size": flops0, "eval": results, "train": train, "profile": profile,
                         "seconds_per_megapixel_fast": per_mpix})  # fmt: skip
    print(f"\nwrote {cfg.out}")
