"""Convert a checkpoint into a stereo checkpoint that every tool loads.

    python scripts/convert_checkpoint.py checkpoint=pretrained_sceneflow_new.tar out=psmnet_sceneflow.pt
    python scripts/convert_checkpoint.py checkpoint=runs/old/checkpoints/last.pt out=runs/old/checkpoints/last_v2.pt

- An original PSMNet checkpoint (JiaRenChang/PSMNet's ``stackhourglass`` files) is read safely and written
  as a ``model=psmnet`` checkpoint (the tools also accept the original file directly).
- Every tool loads checkpoints with ``torch.load(weights_only=True)``, allowing NumPy scalars and arrays
  (older stereo checkpoints kept NumPy's random state), and refuses files that hold anything more: such a
  file could run code while it is read. This tool rewrites one only with ``trust_code=true``, which
  unpickles it fully and so runs whatever code it holds, with your rights: only for a file you made or
  whose source you trust. ``out`` is loaded back the safe way.
"""

from __future__ import annotations

from dataclasses import dataclass

from stereo.checkpoint import convert_checkpoint
from stereo.cli import parse_overrides


@dataclass
class ConvertConfig:
    checkpoint: str = "???"
    out: str = "???"
    trust_code: bool = False  # full unpickling of a file that safe loading refuses: runs any code it holds


def main(argv: list[str]) -> None:
    cfg = parse_overrides(ConvertConfig, argv, doc=__doc__)
    ckpt, what = convert_checkpoint(cfg.checkpoint, cfg.out, cfg.trust_code)
    print(f"{cfg.checkpoint}: {what}")
    print(f"wrote {cfg.out} (step {ckpt.get('step')}); it loads with weights_only=True")
