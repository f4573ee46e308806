"""Fixed generated benchmarks: versioned test sets that one command rebuilds identically.

``generated-v1``: generator v2 (:mod:`stereo.data.synthetic`), seed 20261125, FlyingThings3D TEST layout
in two parts, ``272x480`` (200 pairs, disparities up to 96 px) and ``540x960`` (20 pairs, up to 192 px),
clean and final passes. The committed manifest (``generated-v1.json`` beside this file) holds the
SHA-256 of every file and coarse thumbnails of the first pairs, so a change to the generator cannot
change the benchmark silently: :func:`verify` compares a built copy (ground truth bit for bit; images by
their thumbnails, since library builds round a few pixels differently), and the tests regenerate a slice.
A generator change that alters the pairs needs a new name.

``generated-v2``: generator v3 (natural textures, thin structures, a camera model), seed 20261127, the
same parts and rules.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from stereo.data.synthetic import GENERATOR_VERSIONS, generate_sceneflow_sample
from stereo.errors import DataError, MissingFileError

MANIFEST_DIR = Path(__file__).resolve().parent
BENCHMARKS: dict[str, dict[str, Any]] = {
    "generated-v1": {
        "generator_version": 2,
        "seed": 20261125,
        "objects": (5, 40),
        "fingerprint_pairs": 2,
        "parts": {"272x480": (272, 480, 200), "540x960": (540, 960, 20)},
    },
    # generator v3: photographs and dead leaves as textures, many thin structures, a camera model
    "generated-v2": {
        "generator_version": 3,
        "seed": 20261127,
        "objects": (5, 40),
        "fingerprint_pairs": 2,
        "parts": {"272x480": (272, 480, 200), "540x960": (540, 960, 20)},
    },
}


def manifest_path(name: str) -> Path:
    return MANIFEST_DIR / f"{name}.json"


def build(name: str, out: str | os.PathLike, workers: int = 0, progress: bool = True) -> dict[str, Any]:
    """Generate every part of benchmark ``name`` under ``<out>/<part>``; returns the built manifest."""
    spec = _spec(name)
    parts = {}
    for part, (h, w, n) in spec["parts"].items():
        m = generate_sceneflow_sample(Path(out) / part, height=h, width=w, train_pairs=0, test_pairs=n,
                                      seed=spec["seed"], objects=spec["objects"], progress=progress,
                                      workers=workers, fingerprint_pairs=spec["fingerprint_pairs"],
                                      version=spec["generator_version"])  # fmt: skip
        # Hash what is on disk now: a reused folder may have been modified since it was generated.
        m = {**m, "files": {f: _sha256(Path(out) / part / f) for f in m["files"]}}
        parts[part] = m
    return {"name": name, "generator_version": spec["generator_version"], "parts": parts}


def _spec(name: str) -> dict[str, Any]:
    if name not in BENCHMARKS:
        raise DataError(f"no generated benchmark named {name!r}; expected one of {', '.join(BENCHMARKS)}")
    spec = BENCHMARKS[name]
    if spec["generator_version"] not in GENERATOR_VERSIONS:
        raise DataError(
            f"{name} was made with generator v{spec['generator_version']}, which this version no longer has: "
            "it cannot be rebuilt identically"
        )
    return spec


def _sha256(path: Path) -> str:
    if not path.is_file():
        return "missing"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify(name: str, built: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Compare a built manifest with the committed one: ``(problems, notes)``.

    A problem is a difference of content: parameters, any ground-truth file (PFM, bit for bit), a missing
    file, or a fingerprint thumbnail. Images that differ only in their bytes are a note: PNG encoders and
    the SIMD paths of OpenCV and NumPy builds round a few pixel values differently, which the thumbnails
    (robust to that) would show if it were more.
    """
    path = manifest_path(name)
    if not path.is_file():
        raise MissingFileError(f"no committed manifest for {name} at {path}")
    ref = json.loads(path.read_text())
    problems, notes = [], []
    for part, m in ref["parts"].items():
        got = built["parts"].get(part)
        if got is None:
            problems.append(f"{part}: missing")
            continue
        if got["parameters"] != m["parameters"]:
            problems.append(f"{part}: parameters differ")
        changed = [f for f, h in m["files"].items() if got["files"].get(f) != h]
        missing = [f for f in changed if got["files"].get(f, "missing") == "missing"]
        for what, files in (
            ("missing", missing),
            ("ground-truth files differ", [f for f in changed if f.endswith(".pfm") and f not in missing]),
            ("fingerprints differ", thumbnails_match(m.get("thumbnails", {}), got.get("thumbnails", {}))),
        ):
            if files:
                problems.append(f"{part}: {len(files)} {what} (first: {files[0]})")
        images = [f for f in m["files"] if not f.endswith(".pfm")]
        if differ := sum(f in changed for f in images):
            notes.append(f"{part}: {len(images) - differ} of {len(images)} images bit-identical")
    return problems, notes


def thumbnails_match(expected: dict[str, list[float]], got: dict[str, list[float]], tol: float = 0.02) -> list[str]:
    """Files whose thumbnails differ by more than ``tol`` (robust to encoder and SIMD rounding)."""
    # 1e-9: the values are decimals in binary floats (0.54 - 0.52 = 0.020000000000000018 is within 0.02)
    return [f for f, t in expected.items() if f not in got or np.abs(np.subtract(t, got[f])).max() > tol + 1e-9]


def build_slice(name: str, part: str, pairs: int, out: str | os.PathLike) -> Path:
    """The first ``pairs`` test pairs of ``name``/``part`` under ``out`` (identical to the full set's first
    pairs: pair i is seeded by (seed, i)); returns the dataset root. Reused when already there."""
    spec = _spec(name)
    h, w, n = spec["parts"][part]
    if not 1 <= pairs <= n:
        raise DataError(f"{name}/{part} has {n} pairs; asked for a slice of {pairs}")
    generate_sceneflow_sample(out, height=h, width=w, train_pairs=0, test_pairs=pairs, seed=spec["seed"],
                              objects=spec["objects"], progress=False, version=spec["generator_version"])  # fmt: skip
    return Path(out)
