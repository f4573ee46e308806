"""Inference cost from Scene Flow size to full-resolution Middlebury, against the original PSMNet and
the machine's roofline.

    python scripts/bench_inference.py [original=/path/to/PSMNet] [runs=3] [threads=2]

Every case runs in a fresh process (peak memory = that process's resident high-water mark above the
loaded model and inputs; ``process`` = the whole process). Variants of ``model`` (default ``ea_psmnet``):

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

from dataclasses import dataclass, field

from omegaconf import OmegaConf

from stereo.bench.harness import GiB, environment, format_table, run_isolated
from stereo.cli import parse_overrides
from stereo.io import write_json


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


def _case(kwargs: dict) -> dict:
    return run_isolated("stereo.bench.cases:model_case", kwargs)


def _sizes(sizes: list) -> list[list[int]]:
    """``[[H, W], ...]`` from the config (lists or tuples) as plain lists, for membership tests."""
    return [list(hw) for hw in sizes]


def _estimated_3d_gb(model: str, h: int, w: int) -> float:
    from stereo.config import load_config
    from stereo.models import build_model

    net = build_model(load_config(f"model/{model}"))
    return (h // 4) * (w // 4) * (net.max_disp // 4) * net.bytes_per_cell() / GiB


def main(argv: list[str]) -> None:
    cfg = parse_overrides(BenchInferenceConfig, argv, doc=__doc__)
    env = environment()
    roof = run_isolated("stereo.bench.cases:matmul_case", {"threads": cfg.threads})["gflops"]
    h0, w0 = cfg.sizes[0]
    flops0 = run_isolated("stereo.bench.cases:flops_case", {"model": cfg.model, "height": h0, "width": w0})["flops"]
    print(f"fp32 matmul roofline: {roof:.0f} GFLOP/s; {cfg.model}: {flops0 / 1e9:.0f} GFLOP at {h0}x{w0}", flush=True)
    rows, results = [], []
    for h, w in cfg.sizes:
        large = h * w > 544 * 960
        timing = {"threads": cfg.threads, "runs": cfg.large_runs if large else cfg.runs, "warmup": 0 if large else 1}
        flops = flops0 * (h * w) / (h0 * w0)
        fast = {"model": cfg.model, "fold_bn": True, "runtime": {"memory_budget_gb": cfg.memory_budget_gb}}
        variants = [("fast", fast)]
        est = _estimated_3d_gb(cfg.model, h, w)
        if est <= cfg.eager_limit_gb:
            variants.insert(0, ("eager", {"model": cfg.model, "runtime": {"memory_budget_gb": None}}))
        else:
            print(f"{h}x{w}: eager skipped (3-D part estimated at {est:.1f} GB > eager_limit_gb)", flush=True)
        if cfg.original and h * w <= cfg.original_max_size[0] * cfg.original_max_size[1]:
            variants.insert(0, ("original PSMNet", {"model": "psmnet", "original": cfg.original}))
        if [h, w] in _sizes(cfg.budget_sizes):
            variants += [(f"fast, budget {b:g} GB", {**fast, "runtime": {"memory_budget_gb": b}}) for b in cfg.budgets]
        if cfg.onednn_off and [h, w] in _sizes(cfg.onednn_sizes):
            variants.append(("fast, oneDNN off", {**fast, "onednn": False}))
        if cfg.compile and [h, w] in _sizes(cfg.compile_sizes):
            variants.append(("fast + compile", {**fast, "compile": True}))
        for label, kw in variants:
            print(f"{h}x{w} {label} ...", flush=True)
            r = _case({**kw, "height": h, "width": w, **timing})
            if r.get("compile_s") is not None:
                print(f"  compiled in {r['compile_s']:.0f} s (first call)", flush=True)
            r.update(label=label, height=h, width=w, gflop=flops / 1e9, gflops=flops / 1e9 / r["median_s"])
            results.append(r)
    base = {(r["height"], r["width"]): r for r in results if r["label"] == "original PSMNet"}
    for r in results:
        o = base.get((r["height"], r["width"]))
        r["time_vs_original"] = r["median_s"] / o["median_s"] if o else None
        r["memory_vs_original"] = r["process_peak_bytes"] / o["process_peak_bytes"] if o else None
        rows.append([
            f"{r['height']}x{r['width']}", r["label"], f"{r['median_s']:.2f}",
            f"{min(r['times_s']):.2f}-{max(r['times_s']):.2f}", len(r["times_s"]),
            f"{r['peak_bytes'] / GiB:.2f}", f"{r['process_peak_bytes'] / GiB:.2f}", r["bands"] or "-",
            f"{r['gflops']:.0f} ({r['gflops'] / roof:.0%})",
            f"{r['time_vs_original']:.2f}x / {r['memory_vs_original']:.2f}x" if o else "-",
        ])  # fmt: skip
    header = ["size", "variant", "median s", "range s", "runs", "peak GiB", "process GiB", "bands",
              "GFLOP/s (of roofline)", "time / memory vs original"]  # fmt: skip
    print(f"\n{cfg.model}, eval, fp32, {cfg.threads} threads; roofline {roof:.0f} GFLOP/s (fp32 matmul)")
    print(format_table(rows, header))
    pix = [(r["height"] * r["width"], r["median_s"]) for r in results if r["label"] == "fast"]
    per_mpix = [t / (p / 1e6) for p, t in pix]
    print("fast path seconds per megapixel by size: " + ", ".join(f"{v:.2f}" for v in per_mpix))

    train = []
    th, tw = cfg.train_size
    cases = [("original PSMNet", {"model": "psmnet", "original": cfg.original})] * bool(cfg.original)
    for label, kw in (cases + [(cfg.model, {"model": cfg.model})]) * cfg.train:
        print(f"training step {th}x{tw} batch {cfg.train_batch}: {label} ...", flush=True)
        r = _case({**kw, "height": th, "width": tw, "train": True, "batch": cfg.train_batch,
                   "threads": cfg.threads, "runs": cfg.runs})  # fmt: skip
        train.append({**r, "label": label})
    if cfg.train and cfg.original:
        ratio = train[1]["median_s"] / train[0]["median_s"]
        print(f"training step: original {train[0]['median_s']:.2f} s, {cfg.model} {train[1]['median_s']:.2f} s "
              f"({ratio:.2f}x)")  # fmt: skip
    elif cfg.train:
        print(f"training step: {cfg.model} {train[0]['median_s']:.2f} s (no original= given)")

    profile = None
    if cfg.profile:
        ph, pw = cfg.profile_size
        profile = {}
        for label, fold in (("eager", False), ("fast", True)):
            profile[label] = run_isolated("stereo.bench.cases:profile_case", {"model": cfg.model, "height": ph,
                                          "width": pw, "fold_bn": fold, "threads": cfg.threads})  # fmt: skip
            print(f"\nprofile {label} {ph}x{pw} (self CPU time by operator, top 12):")
            print(format_table([[k, f"{v:.2f}", f"{100 * v / profile[label]['total_s']:.0f}%"]
                                for k, v in profile[label]["ops"][:12]], ["op", "s", "share"]))  # fmt: skip
    write_json(cfg.out, {"environment": env, "config": OmegaConf.to_container(cfg), "roofline_gflops": roof,
                         "flops_at_first_size": flops0, "eval": results, "train": train, "profile": profile,
                         "seconds_per_megapixel_fast": per_mpix})  # fmt: skip
    print(f"\nwrote {cfg.out}")
