"""Speed/accuracy of early exit over the hourglass heads: one evaluation per setting, side by side.

    python scripts/early_exit_sweep.py checkpoint=runs/x/checkpoints/last.pt root=datasets/generated-v1/272x480 \\
        thresholds=[0.3,0.5,0.7,0.9] limit=50 out=bench_results/early_exit.json

Settings: ``off`` (every head), each fixed head, and ``confidence`` at each threshold. Prints a table
(EPE, bad-3, seconds per pair, mean head used, time relative to off), writes JSON and, under
``<out>.tensorboard``, one TensorBoard scalar series per metric indexed by setting.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stereo.bench.harness import environment, format_table
from stereo.checkpoint import load_checkpoint
from stereo.cli import parse_overrides
from stereo.config import load_config, to_plain
from stereo.evaluate import evaluate
from stereo.io import write_json


@dataclass
class SweepConfig:
    checkpoint: str = "???"
    root: str = "datasets/generated-v1/272x480"
    render_pass: str = "final"
    limit: int = 50
    thresholds: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7, 0.9])
    device: str = "cpu"
    threads: int = 0
    out: str = "bench_results/early_exit.json"


def main(argv: list[str]) -> None:
    cfg = parse_overrides(SweepConfig, argv, doc=__doc__)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    heads = load_checkpoint(cfg.checkpoint)["model_config"].get("hourglasses", 3)
    settings = [("off", [])] + [(f"head={k}", ["early_exit=head", f"exit_head={k}"]) for k in range(1, heads)]
    settings += [(f"confidence>={t:g}", ["early_exit=confidence", f"exit_threshold={t}"]) for t in cfg.thresholds]
    base = [f"checkpoint={cfg.checkpoint}", f"data.root={cfg.root}", f"data.render_pass={cfg.render_pass}",
            f"data.limit={cfg.limit}", f"device={cfg.device}"]  # fmt: skip
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, over in settings:
            r = evaluate(load_config("eval", base + over), Path(tmp) / name, tensorboard=False)
            results.append({"setting": name, **r.to_json()})
    off = results[0]["seconds_per_pair"]
    for r in results:
        rows.append([r["setting"], f"{r['epe']:.3f}", f"{r['bad3']:.2f}", f"{r['seconds_per_pair']:.3f}",
                     f"{r['mean_head']:.2f}", f"{r['seconds_per_pair'] / off:.2f}x"])  # fmt: skip
    print(format_table(rows, ["setting", "EPE px", "bad3 %", "s/pair", "mean head", "time vs off"]))
    write_json(cfg.out, {"environment": environment(), "config": to_plain(cfg), "results": results})
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(f"{cfg.out}.tensorboard") as w:
        for i, r in enumerate(results):
            for k in ("epe", "bad3", "seconds_per_pair", "mean_head"):
                w.add_scalar(f"early_exit/{k}", r[k], i)
        w.add_text("early_exit/settings", "\n".join(f"{i}: {r['setting']}" for i, r in enumerate(results)))
    print(f"wrote {cfg.out}")
