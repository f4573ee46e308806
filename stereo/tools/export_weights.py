"""Export a training checkpoint as shipped weights (the model and its config, no training state).

    python scripts/export_weights.py checkpoint=runs/experiment/shipped/checkpoints/last.pt \\
        out=new_weights.pt \\
        'tables={generated_v1: bench_results/compare_v1.json, generated_v2: bench_results/compare_v2.json}' \\
        'card={wall_hours: 0.09, hardware: "1 NVIDIA H200"}'

Writes ``out`` (required; never a path inside the installed package: copy a file that is to ship into
``stereo/weights/`` and name it in ``stereo.weights.DEFAULT_WEIGHTS`` yourself; ``stereo-infer``,
``stereo-eval`` and ``stereo.load_model()`` use that file when no checkpoint is given). The card records
the training config and step from the checkpoint, the metrics on a 4-pair slice of generated-v1 (measured
here, after the export, on the exported file: ``tests/test_weights.py`` checks them again), the results
tables of ``scripts/compare_methods.py`` named in ``tables`` (benchmark -> its JSON), plus whatever
``card`` adds.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from stereo.checkpoint import load_checkpoint
from stereo.cli import parse_overrides
from stereo.config import to_plain
from stereo.evaluate import slice_metrics
from stereo.io import refuse_package_path
from stereo.weights import export_weights

TABLE_KEYS = ("label", "render_pass", "pairs", "mask", "epe", "bad1", "bad2", "bad3", "d1", "bands", "seconds_per_pair")


@dataclass
class ExportConfig:
    checkpoint: str = "???"
    out: str = "???"
    tables: dict = field(default_factory=dict)  # benchmark name -> JSON written by scripts/compare_methods.py
    card: dict = field(default_factory=dict)


def main(argv: list[str]) -> None:
    cfg = parse_overrides(ExportConfig, argv, doc=__doc__)
    refuse_package_path(cfg.out, "out")
    ckpt = load_checkpoint(cfg.checkpoint)
    card = {"training_config": ckpt.get("config"), "step": ckpt.get("step"), **to_plain(cfg.card)}
    for name, table in cfg.tables.items():
        results = json.loads(Path(table).read_text())["results"]
        card[name] = [{k: r[k] for k in TABLE_KEYS} for r in results]
    export_weights(cfg.checkpoint, cfg.out, card)
    with tempfile.TemporaryDirectory() as tmp:
        card["generated_v1_slice"] = slice_metrics(cfg.out, tmp)
    size = export_weights(cfg.checkpoint, cfg.out, card)
    print(json.dumps(card["generated_v1_slice"], indent=1))
    print(f"wrote {cfg.out}: {size / 2**20:.2f} MiB, step {ckpt.get('step')}")
