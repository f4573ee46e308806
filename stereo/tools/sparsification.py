"""How well the confidence ranks pixels by error: a sparsification curve on a generated benchmark.

    python scripts/sparsification.py root=datasets/generated-v1/272x480 render_pass=clean \\
        out=bench_results/sparsification.json

``checkpoint=null`` uses the shipped weights. Prints the mean error of the most confident share of the
pixels (100% .. 10%) beside the oracle (pixels removed by decreasing error) and random removal, with the
areas under the curves, and writes JSON (:mod:`stereo.confidence`).
"""

from __future__ import annotations

from dataclasses import dataclass

from stereo.bench.harness import format_table
from stereo.cli import parse_overrides
from stereo.confidence import measure
from stereo.config import rng
from stereo.io import write_json
from stereo.tools import AnalysisToolConfig


@dataclass
class SparsificationConfig(AnalysisToolConfig):
    max_disp: float = rng(96.0, gt=0)  # mask 0 < gt < max_disp
    out: str = "bench_results/sparsification.json"


def main(argv: list[str]) -> None:
    cfg = parse_overrides(SparsificationConfig, argv, doc=__doc__)
    r = measure(cfg.checkpoint, cfg.root, cfg.render_pass, cfg.limit, cfg.max_disp, cfg.device)
    rows = [[f"{100 * f:.0f}%", f"{c:.3f}", f"{o:.3f}", f"{q:.3f}"]
            for f, c, o, q in zip(r["fractions"], r["confidence"], r["oracle"], r["random"], strict=True)]  # fmt: skip
    print(f"{r['pairs']} pairs of {cfg.root} ({cfg.render_pass}), {r['mask']}; EPE (px) of the pixels kept")
    print(format_table(rows, ["kept", "by confidence", "oracle", "random"]))
    print(f"AUC: confidence {r['auc']:.3f}, oracle {r['auc_oracle']:.3f}, random {r['auc_random']:.3f} "
          f"(relative {r['relative']:.2f}: 0 = oracle, 1 = random)")  # fmt: skip
    write_json(cfg.out, r)
    print(f"wrote {cfg.out}")
