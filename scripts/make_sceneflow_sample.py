"""Generate stereo pairs in the official Scene Flow layout (PNG frames, PFM disparities).

    python scripts/make_sceneflow_sample.py out=datasets/sceneflow_sample height=272 width=480 \\
        train_pairs=40 test_pairs=8 seed=0 workers=0

``train_pairs`` is spread over FlyingThings3D TRAIN, Driving and Monkaa; ``test_pairs`` go to
FlyingThings3D TEST. ``max_disp`` defaults to 0.2 x width; ``objects_min``/``objects_max`` bound the
objects per scene; ``workers=0`` uses every core (the output does not depend on it). Re-running with
the same arguments reuses the existing folder. ``version`` picks the generator (3, the default: natural
textures, thin structures, a camera model; 2: what ``generated-v1`` and the first shipped weights used).
Prints the disparity histogram, the shares of occluded and textureless pixels and the spectral slopes
(also in ``<out>/stats.json``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from stereo.cli import parse_overrides
from stereo.data.synthetic import GENERATOR_VERSION, format_statistics, generate_sceneflow_sample


@dataclass
class SampleConfig:
    out: str = "datasets/sceneflow_sample"
    height: int = 540
    width: int = 960
    train_pairs: int = 30
    test_pairs: int = 10
    seed: int = 0
    max_disp: float | None = None  # default: 0.2 x width, pixels
    objects_min: int = 5
    objects_max: int = 40
    workers: int = 0  # processes; 0 = all cores
    replace: bool = False  # replace an older generated sample in `out` (never other folders)
    version: int = GENERATOR_VERSION  # generator version: 3 or 2


def main(argv: list[str]) -> None:
    cfg = parse_overrides(SampleConfig, argv)
    t0 = time.perf_counter()
    manifest = generate_sceneflow_sample(
        cfg.out,
        height=cfg.height,
        width=cfg.width,
        train_pairs=cfg.train_pairs,
        test_pairs=cfg.test_pairs,
        seed=cfg.seed,
        max_disp=cfg.max_disp,
        objects=(cfg.objects_min, cfg.objects_max),
        workers=cfg.workers,
        replace=cfg.replace,
        version=cfg.version,
    )
    p = manifest["parameters"]
    seconds = time.perf_counter() - t0
    print(
        f"Scene Flow layout at {cfg.out}: {p['train_pairs']} train + {p['test_pairs']} test pairs, "
        f"{p['height']}x{p['width']}, disparities up to {p['max_disp']:.0f} px ({seconds:.0f} s)"
    )
    print(format_statistics(json.loads((Path(cfg.out) / "stats.json").read_text())))


if __name__ == "__main__":
    main(sys.argv[1:])
