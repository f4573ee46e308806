"""Check that an original PSMNet checkpoint gives the original code's disparities through our loader.

    python scripts/check_original_psmnet.py original=/path/to/PSMNet [checkpoint=pretrained_sceneflow_new.tar]

``original`` is a checkout of github.com/JiaRenChang/PSMNet (its ``models/stackhourglass.py`` runs
here; nothing of it is copied into this project). Without ``checkpoint`` the weights are random, with
BatchNorm statistics measured on random images, saved in the original's format. At each size the
original (eval mode, ImageNet-normalised input as its loader feeds it) and ``stereo``'s ``psmnet``
(loaded from that file, BatchNorm folded) predict the same random pair; the script prints the median,
99.9th percentile and maximum difference in pixels, writes JSON, and fails unless the median is at most
1e-3 px and the 99.9th percentile at most 0.01 px.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from stereo.bench.harness import format_table
from stereo.cli import parse_overrides
from stereo.io import write_json
from stereo.original_psmnet import check_equality

MEDIAN_PX, P999_PX = 1e-3, 1e-2


@dataclass
class CheckConfig:
    original: str = "???"  # a checkout of JiaRenChang/PSMNet
    checkpoint: str | None = None  # an original PSMNet checkpoint; null = random weights
    sizes: list = field(default_factory=lambda: [[256, 512], [320, 640]])  # (H, W), multiples of 16
    threads: int = 2
    seed: int = 0
    out: str = "bench_results/original_psmnet_check.json"


def main(argv: list[str]) -> None:
    cfg = parse_overrides(CheckConfig, argv, doc=__doc__)
    torch.set_num_threads(cfg.threads)
    rows = check_equality(cfg.original, [tuple(s) for s in cfg.sizes], cfg.checkpoint, cfg.seed)
    table = [[f"{r['height']}x{r['width']}", f"{r['median_px']:.2e}", f"{r['p999_px']:.2e}", f"{r['max_px']:.2e}",
              f"{r['disparity_range_px'][0]:.1f}..{r['disparity_range_px'][1]:.1f}"] for r in rows]  # fmt: skip
    print(format_table(table, ["size", "median |diff| px", "99.9th pct px", "max px", "disparities px"]))
    write_json(cfg.out, {"checkpoint": cfg.checkpoint or "random weights", "rows": rows})
    bad = [r for r in rows if r["median_px"] > MEDIAN_PX or r["p999_px"] > P999_PX]
    if bad:
        where = ", ".join(f"{r['height']}x{r['width']}" for r in bad)
        raise SystemExit(f"error: differences above median {MEDIAN_PX} px / 99.9th percentile {P999_PX} px at {where}")
    print(f"equal within median {MEDIAN_PX} px and 99.9th percentile {P999_PX} px at every size; wrote {cfg.out}")
