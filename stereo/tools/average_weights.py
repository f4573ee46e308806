"""Average the weights of checkpoints of one architecture (a "model soup"), e.g. a fine-tuned run and the
weights it started from:

    python scripts/average_weights.py 'checkpoints=[stereo/weights/ea_psmnet_light_gen3n.pt, \\
        runs/finetune/checkpoints/last.pt]' out=runs/soup.pt

Floating-point tensors (BatchNorm statistics included) become their weighted mean (``weights``, default
equal); the result is a checkpoint without training state that ``checkpoint=``, ``train.init_from=`` and
``scripts/export_weights.py`` take (``stereo.weights.average_weights``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stereo.checkpoint import save_checkpoint
from stereo.cli import parse_overrides
from stereo.io import refuse_package_path
from stereo.weights import average_weights


@dataclass
class AverageConfig:
    checkpoints: list = field(default_factory=list)  # two or more checkpoint paths
    weights: list | None = None  # one positive weight per checkpoint; null = equal
    out: str = "???"


def main(argv: list[str]) -> None:
    cfg = parse_overrides(AverageConfig, argv, doc=__doc__)
    weights = None if cfg.weights is None else list(cfg.weights)
    soup = average_weights(list(cfg.checkpoints), weights)
    save_checkpoint(refuse_package_path(cfg.out, "out"), soup)
    shares = ", ".join(f"{w:.3g} x {c}" for c, w in zip(cfg.checkpoints, soup["averaged"]["weights"], strict=True))
    print(f"wrote {cfg.out}: {shares}")
