"""Build a fixed generated benchmark (``generated-v1``, the default, ``generated-v2`` or ``generated-v3``) and
check it against its manifest.

    python scripts/make_generated_benchmark.py name=generated-v2 workers=0

``out`` defaults to ``datasets/<name>``. Writes its parts, ``<out>/272x480`` and ``<out>/540x960``
(``generated-v3``: ``<out>/200x296``), each a Scene Flow root with a FlyingThings3D TEST split in both passes,
``sample.json`` and ``stats.json``, prints their statistics and checks every file against the committed manifest
and fingerprints (``stereo/data/<name>.json`` and ``.fingerprints.npz``) by value: ground truth within 1e-3 px,
images within the stated tolerance, as 8x8-block means (other CPUs and library builds round a few pixels
differently: counted, not an error). ``write_manifest=true`` writes them instead (only when defining a new
benchmark version). Evaluate with ``stereo-eval data.root=<out>/272x480 ...``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stereo.cli import parse_overrides
from stereo.config import rng
from stereo.data.benchmarks import (
    GT_TOLERANCE_PX,
    IMAGE_BLOCK_LIMIT,
    IMAGE_TOLERANCE,
    build,
    manifest_path,
    verify,
    write_fingerprints,
)
from stereo.data.synthetic import format_statistics
from stereo.errors import StereoError


@dataclass
class BenchmarkConfig:
    name: str = "generated-v1"
    out: str | None = None  # null = datasets/<name>
    workers: int = rng(0, ge=0)  # processes; 0 = all cores
    write_manifest: bool = False


def main(argv: list[str]) -> None:
    cfg = parse_overrides(BenchmarkConfig, argv, doc=__doc__)
    if cfg.out is None:
        cfg.out = f"datasets/{cfg.name}"
    try:
        built = build(cfg.name, cfg.out, workers=cfg.workers)
    except (StereoError, FileExistsError) as e:
        raise SystemExit(f"error: {e}") from None
    for part in built["parts"]:
        print(f"== {cfg.name}/{part}")
        print(format_statistics(json.loads((Path(cfg.out) / part / "stats.json").read_text())))
    if cfg.write_manifest:
        record = {**built, "parts": {p: {k: v for k, v in m.items() if k != "fingerprints"}
                                     for p, m in built["parts"].items()}}  # fmt: skip
        manifest_path(cfg.name).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"wrote {manifest_path(cfg.name)} and {write_fingerprints(cfg.name, built)}")
        return
    problems, notes = verify(cfg.name, built)
    if problems:
        raise SystemExit(f"{cfg.name} differs from its manifest {manifest_path(cfg.name)}: " + "; ".join(problems))
    if notes:
        print(
            f"{cfg.name} matches {manifest_path(cfg.name)}: every file within tolerance (ground truth "
            f"{GT_TOLERANCE_PX:g} px, images {IMAGE_TOLERANCE:g}/{IMAGE_BLOCK_LIMIT:g} grey levels, 8x8-block "
            f"means); {'; '.join(notes)} "
            "(the others differ in their bytes: other CPUs and OpenCV/NumPy/OpenBLAS builds round differently)"
        )
    else:
        print(f"{cfg.name}: every file matches {manifest_path(cfg.name)} bit for bit")
