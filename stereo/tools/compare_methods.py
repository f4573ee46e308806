"""Evaluate OpenCV SGBM and any checkpoints on one dataset, in both passes, side by side.

    python scripts/compare_methods.py root=datasets/generated-v1/272x480 \\
        'checkpoints={untrained: runs/demo/untrained/checkpoints/last.pt, demo: runs/demo/train/checkpoints/last.pt}'

Every method goes through ``stereo-eval``'s code (same pairs, mask 0 < gt < ``max_disp``, per-image
averaging, full density: SGBM's holes filled). Prints markdown tables (EPE, bad-1/2/3, D1, seconds per
pair; the error bands and the share of bad-1 that is 1-3 px, docs/data.md) and writes JSON. ``max_disp``
defaults to the generated set's (sample.json) or 192; ``region=nonocc`` evaluates only the pixels visible
in both views, ``region=occluded`` the others, ``region=edges`` only those near depth edges (``data.region``,
docs/evaluation.md).

A checkpoint's value may carry ``stereo-eval`` runtime overrides after its path, to compare runtime variants of
one set of weights side by side, each such value quoted (Hydra reads ``=`` only inside quotes):
``"checkpoints={plain: shipped, zncc: 'shipped polish=zncc', local: 'shipped regression=local'}"``. The keys
that this script sets for every method (the data, the mask, the device) are refused there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stereo.bench.harness import environment
from stereo.cli import parse_overrides
from stereo.config import to_plain
from stereo.errors import ConfigError
from stereo.evaluate import benchmark_max_disp, evaluate_methods
from stereo.io import write_json


@dataclass
class CompareConfig:
    root: str = "datasets/generated-v1/272x480"
    checkpoints: dict = field(default_factory=dict)  # label -> "checkpoint path [stereo-eval overrides]"
    passes: list = field(default_factory=lambda: ["clean", "final"])
    sgbm: bool = True
    max_disp: float | None = None
    region: str = "all"
    limit: int = -1
    device: str = "cpu"
    out: str = "bench_results/compare_methods.json"


# Set by this script for every method: a method's own value would be overridden (or contradict the others').
SHARED_KEYS = ("checkpoint", "method", "data.root", "data.render_pass", "data.region", "data.limit", "max_disp",
               "device")  # fmt: skip


def method_overrides(label: str, value: str) -> list[str]:
    """``stereo-eval`` overrides of one ``checkpoints`` entry: ``"PATH [key=value ...]"`` -> ``["checkpoint=PATH",
    "key=value", ...]``; a clear error for an empty entry, a word without ``=`` or a key this script sets."""
    path, *runtime = str(value).split() or [""]
    if not path or "=" in path:
        raise ConfigError(f"checkpoints.{label}={value!r}: expected a checkpoint path first, then key=value overrides")
    for item in runtime:
        key = item.split("=", 1)[0]
        if "=" not in item:
            raise ConfigError(f"checkpoints.{label}: {item!r} is not a key=value override of stereo-eval")
        if key.lstrip("+~") in SHARED_KEYS:
            raise ConfigError(
                f"checkpoints.{label}: {key} is set by compare_methods for every method ({', '.join(SHARED_KEYS)}); "
                "give it as compare_methods' own option (root=, passes=, region=, limit=, max_disp=, device=)"
            )
    return [f"checkpoint={path}", *runtime]


def main(argv: list[str]) -> None:
    cfg = parse_overrides(CompareConfig, argv, doc=__doc__)
    max_disp = cfg.max_disp if cfg.max_disp is not None else benchmark_max_disp(cfg.root, 192)
    methods = ([("SGBM (OpenCV, 3-way)", ["method=sgbm"])] if cfg.sgbm else []) + [
        (label, method_overrides(label, value)) for label, value in cfg.checkpoints.items()
    ]
    if not methods or not cfg.passes:
        raise ConfigError("nothing to compare: give checkpoints={label: path, ...}, sgbm=true and at least one pass")
    extra = [f"data.region={cfg.region}", f"data.limit={cfg.limit}", f"device={cfg.device}"]
    results = [
        {**r.to_json(), "label": label} for label, r in evaluate_methods(methods, cfg.root, cfg.passes, max_disp, extra)
    ]
    region = {"nonocc": "pixels visible in both views", "occluded": "pixels hidden in the right view",
              "edges": "pixels near depth edges",
              "textured": "textured pixels", "lowtexture": "textureless pixels"}  # fmt: skip
    region = region.get(cfg.region, "every pixel")
    print(f"\n{cfg.root}: {results[0]['pairs']} pairs, mask {results[0]['mask']}, {region}, per-image averaging\n")
    print("| method | pass | EPE px | bad-1 % | bad-2 % | bad-3 % | D1 % | s/pair |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['label']} | {r['render_pass']} | {r['epe']:.2f} | {r['bad1']:.1f} | {r['bad2']:.1f} | "
              f"{r['bad3']:.1f} | {r['d1']:.1f} | {r['seconds_per_pair']:.2f} |")  # fmt: skip
    print("\nError bands (% of pixels) and how bad-1 splits into sub-pixel-scale (1-3 px) and gross (> 3 px) errors:\n")
    print("| method | pass | <= 0.5 | 0.5-1 | 1-2 | 2-3 | > 3 | 1-3 px share of bad-1 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        b = r["bands"]
        share = 100 * (b["1-2"] + b["2-3"]) / r["bad1"] if r["bad1"] > 0 else float("nan")
        r["share_1_3_of_bad1"] = share
        bands = " | ".join(f"{v:.1f}" for v in b.values())
        print(f"| {r['label']} | {r['render_pass']} | {bands} | {share:.0f}% |")
    write_json(cfg.out, {"environment": environment(), "config": to_plain(cfg), "results": results})
    print(f"\nwrote {cfg.out}")
