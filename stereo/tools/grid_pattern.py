"""The 4-pixel pattern of a checkpoint's disparities on a generated benchmark, beside its ground truth.

    python scripts/grid_pattern.py root=datasets/generated-v1/272x480 render_pass=clean limit=100 \\
        out=bench_results/grid_pattern.json

``checkpoint=null`` uses the shipped weights. Prints the spectral power at a period of 4 pixels divided
by that of the neighbouring frequencies, along rows and along columns, for the predictions and for the
ground truth (about 1 without a pattern), and writes JSON (:mod:`stereo.grid_pattern`).
"""

from __future__ import annotations

from dataclasses import dataclass

from stereo.bench.harness import format_table
from stereo.cli import parse_overrides
from stereo.config import rng
from stereo.grid_pattern import measure
from stereo.io import write_json
from stereo.tools import AnalysisToolConfig


@dataclass
class GridPatternConfig(AnalysisToolConfig):
    regression: str = rng("soft_argmin", pattern="soft_argmin|local", expect="soft_argmin or local")
    out: str = "bench_results/grid_pattern.json"


def main(argv: list[str]) -> None:
    cfg = parse_overrides(GridPatternConfig, argv, doc=__doc__)
    r = measure(cfg.checkpoint, cfg.root, cfg.render_pass, cfg.limit, cfg.device, cfg.regression)
    rows = [[key.replace("_", " "), f"{r[key]['rows']:.3f}", f"{r[key]['columns']:.3f}"]
            for key in ("prediction", "ground_truth")]  # fmt: skip
    print(f"{r['pairs']} pairs of {cfg.root} ({cfg.render_pass}, regression={cfg.regression}): power at a "
          f"{r['period_px']}-px period / its neighbouring frequencies")  # fmt: skip
    print(format_table(rows, ["disparity", "along rows", "along columns"]))
    write_json(cfg.out, r)
    print(f"wrote {cfg.out}")
