"""Convert a checkpoint into a stereo checkpoint that every tool loads.

    python scripts/convert_checkpoint.py checkpoint=pretrained_sceneflow_new.tar out=psmnet_sceneflow.pt
    python scripts/convert_checkpoint.py checkpoint=runs/old/checkpoints/last.pt out=runs/old/checkpoints/last_v2.pt

- An original PSMNet checkpoint (JiaRenChang/PSMNet's ``stackhourglass`` files) is read safely and written
  as a ``model=psmnet`` checkpoint (the tools also accept the original file directly).
- Every tool loads checkpoints with ``torch.load(weights_only=True)`` and refuses files that hold anything
  but tensors and plain values. Older stereo training checkpoints kept NumPy's random state as a pickled
  array; such a file is read with full unpickling (which can run code: use this only on files you made or
  trust), that state stored as a tensor, and ``out`` loaded back the safe way.
"""

from __future__ import annotations

from dataclasses import dataclass

from stereo.checkpoint import convert_checkpoint
from stereo.cli import parse_overrides


@dataclass
class ConvertConfig:
    checkpoint: str = "???"
    out: str = "???"


def main(argv: list[str]) -> None:
    cfg = parse_overrides(ConvertConfig, argv, doc=__doc__)
    ckpt, what = convert_checkpoint(cfg.checkpoint, cfg.out)
    print(f"{cfg.checkpoint}: {what}")
    print(f"wrote {cfg.out} (step {ckpt.get('step')}); it loads with weights_only=True")
