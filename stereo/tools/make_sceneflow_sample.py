"""Generate stereo pairs in the official Scene Flow layout (PNG frames, PFM disparities).

    python scripts/make_sceneflow_sample.py out=datasets/sceneflow_sample height=272 width=480 \\
        train_pairs=40 test_pairs=8 seed=0 workers=0

``train_pairs`` is spread over FlyingThings3D TRAIN, Driving and Monkaa; ``test_pairs`` go to
FlyingThings3D TEST. ``max_disp`` defaults to 0.2 x width; ``objects_min``/``objects_max`` bound the
objects per scene; ``workers=0`` uses every core (the output does not depend on it). Re-running with
the same arguments reuses the existing folder once its first pair matches what this code renders (a
folder made by changed generator code is refused; ``replace=true`` makes it again).
``version`` picks the generator (3, the default: natural textures, thin structures, a camera model; 2: what
``generated-v1`` and the first shipped weights used;
4: photographs that no training data uses, rendered with 3 x 3 samples per pixel, for benchmarks only;
5: those photographs are the scene, their own regions warped by known disparity, for benchmarks only,
at sizes the photographs give without enlarging, e.g. 272x480; ``objects`` are the layers in front;
6: the same renderer on v3's training photographs, training data for sub-pixel matching; 7: v6 with v2's
blurred and noisy final pass for a third of the pairs; 8: v5's scenes rendered at twice the views' resolution
with view-dependent brightness and weak surfaces, for benchmarks only; 9: v8 with glossy surfaces instead of weak
ones, ``generated-v3``'s; 10: v9 on the training photographs with some weak surfaces, training data).
Prints the disparity histogram, the shares of occluded and textureless pixels and the spectral slopes
(also in ``<out>/stats.json``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from stereo.cli import parse_overrides
from stereo.config import rng
from stereo.data.synthetic import GENERATOR_VERSION, GENERATOR_VERSIONS, format_statistics, generate_sceneflow_sample
from stereo.errors import StereoError

_VERSIONS_IN_WORDS = ", ".join(map(str, GENERATOR_VERSIONS[:-1])) + f" or {GENERATOR_VERSIONS[-1]}"


@dataclass
class SampleConfig:
    out: str = "datasets/sceneflow_sample"
    height: int = rng(540, ge=32)
    width: int = rng(960, ge=64)
    train_pairs: int = rng(30, ge=0)
    test_pairs: int = rng(10, ge=0)
    seed: int = 0
    max_disp: float | None = rng(None, gt=0)  # default: 0.2 x width, pixels
    objects_min: int = rng(5, ge=1)
    objects_max: int = rng(40, ge=1)
    workers: int = rng(0, ge=0)  # processes; 0 = all cores
    replace: bool = False  # replace an older generated sample in `out` (never other folders)
    version: int = rng(GENERATOR_VERSION, pattern="|".join(map(str, GENERATOR_VERSIONS)), expect=_VERSIONS_IN_WORDS)


def main(argv: list[str]) -> None:
    cfg = parse_overrides(SampleConfig, argv, doc=__doc__)
    t0 = time.perf_counter()
    try:
        manifest = _generate(cfg)
    except (StereoError, FileExistsError) as e:
        raise SystemExit(f"error: {e}") from None
    p = manifest["parameters"]
    seconds = time.perf_counter() - t0
    print(
        f"Scene Flow layout at {cfg.out}: {p['train_pairs']} train + {p['test_pairs']} test pairs, "
        f"{p['height']}x{p['width']}, disparities up to {p['max_disp']:.0f} px ({seconds:.0f} s)"
    )
    print(format_statistics(json.loads((Path(cfg.out) / "stats.json").read_text())))


def _generate(cfg) -> dict:
    return generate_sceneflow_sample(
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
