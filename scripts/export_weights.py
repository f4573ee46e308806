"""Export a training checkpoint as shipped weights (the model and its config, no training state).

    python scripts/export_weights.py checkpoint=runs/experiment/shipped_light/checkpoints/last.pt \\
        'card={wall_hours: 3.4, hardware: "2 CPU cores", generated_v1: {sgbm_epe: 7.55}}'

Writes ``stereo/weights/ea_psmnet_light_gen2.pt`` by default (``out=``), which ``stereo-infer`` and
``stereo-eval`` use when no ``checkpoint=`` is given. The card records the training config and step from
the checkpoint plus whatever ``card`` adds (data, wall time, hardware, metrics).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from omegaconf import OmegaConf

from stereo.checkpoint import load_checkpoint
from stereo.cli import parse_overrides
from stereo.weights import DEFAULT_WEIGHTS, WEIGHTS_DIR, export_weights


@dataclass
class ExportConfig:
    checkpoint: str = "???"
    out: str = str(WEIGHTS_DIR / DEFAULT_WEIGHTS)
    card: dict = field(default_factory=dict)


def main(argv: list[str]) -> None:
    cfg = parse_overrides(ExportConfig, argv)
    ckpt = load_checkpoint(cfg.checkpoint)
    card = {"training_config": ckpt.get("config"), "step": ckpt.get("step"), **OmegaConf.to_container(cfg.card)}
    size = export_weights(cfg.checkpoint, cfg.out, card)
    print(f"wrote {cfg.out}: {size / 2**20:.2f} MiB, step {ckpt.get('step')}")


if __name__ == "__main__":
    main(sys.argv[1:])
