"""Generate a small Scene Flow sample in the official layout (PNG frames, PFM disparities).

    python scripts/make_sceneflow_sample.py out=datasets/sceneflow_sample height=540 width=960 \
        train_pairs=30 test_pairs=10 seed=0

``train_pairs`` is spread over FlyingThings3D TRAIN, Driving and Monkaa; ``test_pairs`` go to
FlyingThings3D TEST. Re-running with the same arguments reuses the existing sample.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from stereo.cli import parse_overrides
from stereo.data.synthetic import generate_sceneflow_sample


@dataclass
class SampleConfig:
    out: str = "datasets/sceneflow_sample"
    height: int = 540
    width: int = 960
    train_pairs: int = 30
    test_pairs: int = 10
    seed: int = 0
    max_disp: float | None = None  # default: 160 * width / 960 pixels


def main(argv: list[str]) -> None:
    cfg = parse_overrides(SampleConfig, argv)
    manifest = generate_sceneflow_sample(
        cfg.out,
        height=cfg.height,
        width=cfg.width,
        train_pairs=cfg.train_pairs,
        test_pairs=cfg.test_pairs,
        seed=cfg.seed,
        max_disp=cfg.max_disp,
    )
    print(
        f"Scene Flow sample at {cfg.out}: {manifest['train_pairs']} train + {manifest['test_pairs']} test "
        f"pairs, {manifest['height']}x{manifest['width']}, disparities up to {manifest['max_disp']:.0f} px"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
