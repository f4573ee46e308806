"""Convert a stereo checkpoint written before checkpoints were plain data, so the tools load it.

    python scripts/convert_checkpoint.py checkpoint=runs/old/checkpoints/last.pt out=runs/old/checkpoints/last_v2.pt

Every tool loads checkpoints with ``torch.load(weights_only=True)`` and refuses files that hold anything
but tensors and plain values. Older training checkpoints kept NumPy's random state as a pickled array;
this script reads such a file with full unpickling (which can run code: use it only on files you made or
trust), stores that state as a tensor and writes ``out``, then loads ``out`` back the safe way.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from stereo.checkpoint import convert_legacy_checkpoint
from stereo.cli import parse_overrides
from stereo.errors import StereoError


@dataclass
class ConvertConfig:
    checkpoint: str = "???"
    out: str = "???"


def main(argv: list[str]) -> None:
    cfg = parse_overrides(ConvertConfig, argv)
    print(f"reading {cfg.checkpoint} with full unpickling (only for files you made or trust)")
    try:
        ckpt = convert_legacy_checkpoint(cfg.checkpoint, cfg.out)
    except StereoError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"wrote {cfg.out} (step {ckpt.get('step')}); it loads with weights_only=True")


if __name__ == "__main__":
    main(sys.argv[1:])
