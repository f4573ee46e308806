"""Scene Flow discovery: find (left, right, left disparity) triples in the official folder structure.

Two layouts are detected automatically (see ``datasets/README.md``):

(a) one folder per subset, each official archive unpacked inside it (RAFT-Stereo / IGEV convention)::

    <root>/FlyingThings3D/{frames_cleanpass,frames_finalpass,disparity}/{TRAIN,TEST}/{A,B,C}/NNNN/{left,right}/
    <root>/Driving/{frames_*,disparity}/{15mm,35mm}_focallength/scene_*/{fast,slow}/{left,right}/
    <root>/Monkaa/{frames_*,disparity}/<scene>/{left,right}/

(b) PSMNet's flat renaming::

    <root>/{frames_cleanpass,frames_finalpass,frames_disparity}/{TRAIN,TEST}/...      (FlyingThings3D)
    <root>/{driving_frames_cleanpass,driving_frames_finalpass,driving_disparity}/...
    <root>/{monkaa_frames_cleanpass,monkaa_frames_finalpass,monkaa_disparity}/...

Split "train" is FlyingThings3D TRAIN + Driving + Monkaa; split "test" is FlyingThings3D TEST.
Discovered lists are cached as text files (one pair per line, paths relative to the root) and reused
while the dataset's top-level folders are unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from stereo.config import DataConfig
from stereo.data.registry import Sample, region_of, register_dataset
from stereo.errors import DatasetError
from stereo.io import atomic_write

log = logging.getLogger(__name__)

SUBSETS = ("flyingthings3d", "driving", "monkaa")
SPLITS = ("train", "test")
RENDER_PASSES = ("clean", "final")
DATASET_IMAGE_EXTENSIONS = (".png", ".webp")
CACHE_VERSION = 2

# Layout (b): PSMNet's folder names per subset: (frames prefix, disparity folder).
_FLAT = {
    "flyingthings3d": ("frames", "frames_disparity"),
    "driving": ("driving_frames", "driving_disparity"),
    "monkaa": ("monkaa_frames", "monkaa_disparity"),
}
_SUBSET_DIRS = {"flyingthings3d": "FlyingThings3D", "driving": "Driving", "monkaa": "Monkaa"}


class SceneFlowError(DatasetError):
    """The dataset root does not hold what discovery needs; the message says what and where."""


@register_dataset("sceneflow")
def sceneflow_samples(cfg: DataConfig, split: str, render_pass: str) -> list[Sample]:
    """``data=sceneflow``: Scene Flow's ``train`` or ``test`` split under ``cfg.root``; ``render_pass=both``
    lists every pair twice, clean then final (same disparities). ``data.region=nonocc`` also names each
    pair's right-view disparity, so that only the left pixels visible in the right view are evaluated
    (:mod:`stereo.data.occlusion`)."""
    passes = RENDER_PASSES if render_pass == "both" else (render_pass,)
    samples = [s for p in passes for s in discover(cfg.root, split, p, skip_missing=bool(cfg.skip_missing))]
    if region_of(cfg) in ("nonocc", "occluded"):
        samples = _with_right_disparities(samples, region_of(cfg))
    return samples


def _disparity(sample: Sample) -> Path:
    """A Scene Flow pair's disparity file: every pair has one (pairs without are never made)."""
    assert sample.disparity is not None, sample.left
    return sample.disparity


def _with_right_disparities(samples: list[Sample], region: str) -> list[Sample]:
    """The samples with ``right_disparity`` set: ``.../right/<frame>.pfm`` beside each ``.../left/<frame>.pfm``
    (``region`` ``occluded``: marked to evaluate the pixels it does not confirm)."""
    out, missing = [], []
    for s in samples:
        right = _disparity(s).parent.parent / "right" / _disparity(s).name
        if not right.is_file():
            missing.append(str(right))
        out.append(dataclasses.replace(s, right_disparity=right, occluded=region == "occluded"))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise SceneFlowError(
            f"data.region={region} needs the right view's disparity of every pair; missing {missing[0]}{more} "
            f"(use data.region=all to evaluate every pixel)"
        )
    return out


def _split_dirs(root: Path, split: str, render_pass: str, subsets: Sequence[str]) -> dict[str, tuple[Path, Path]]:
    """Per subset, the (frames, disparity) folders of ``split`` and ``render_pass`` under ``root``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if render_pass not in RENDER_PASSES:
        raise ValueError(f"render_pass must be one of {RENDER_PASSES}, got {render_pass!r}")
    unknown = [s for s in subsets if s not in SUBSETS]
    if unknown:
        raise ValueError(f"unknown subsets {unknown}; choose from {SUBSETS}")
    if not root.is_dir():
        raise SceneFlowError(f"Scene Flow root {root} does not exist or is not a directory")
    wanted = ["flyingthings3d"] if split == "test" else [s for s in SUBSETS if s in subsets]
    dirs = _locate(root, wanted, render_pass)
    if split == "test":
        dirs = {"flyingthings3d": (dirs["flyingthings3d"][0] / "TEST", dirs["flyingthings3d"][1] / "TEST")}
    elif "flyingthings3d" in dirs:
        dirs["flyingthings3d"] = (dirs["flyingthings3d"][0] / "TRAIN", dirs["flyingthings3d"][1] / "TRAIN")
    return dirs


def _complete_pairs(
    root: Path, dirs: dict[str, tuple[Path, Path]], split: str, render_pass: str, skip_missing: bool
) -> list[Sample]:
    """The complete pairs under ``dirs`` (unsorted); incomplete ones raise, or are skipped with a warning."""
    samples: list[Sample] = []
    missing: list[str] = []
    for subset, (frames, disparity) in dirs.items():
        found, lost = _pairs(subset, frames, disparity)
        samples += found
        missing += lost
    if missing:
        if not skip_missing:
            shown = "\n  ".join(missing[:10])
            more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise SceneFlowError(
                f"{len(missing)} left image(s) under {root} lack their right image or disparity:\n"
                f"  {shown}{more}\n(set data.skip_missing=true to skip incomplete pairs with a warning)"
            )
        log.warning("skipped %d incomplete pair(s) under %s (first: %s)", len(missing), root, missing[0])
    if not samples:
        looked = ", ".join(f"{f}" for f, _ in dirs.values())
        raise SceneFlowError(
            f"no {render_pass}pass stereo pairs for split {split!r} under {root}: looked for "
            f".../left/*.png|webp with .../right/ and disparity .pfm files in {looked}"
        )
    return samples


def discover(
    root: str | os.PathLike,
    split: str = "train",
    render_pass: str = "clean",
    subsets: Sequence[str] = SUBSETS,
    skip_missing: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> list[Sample]:
    """Find every stereo pair of a split, sorted by left-image path.

    Args:
        root: the dataset root in layout (a) or (b).
        split: ``"train"`` (FlyingThings3D TRAIN + Driving + Monkaa) or ``"test"`` (FlyingThings3D TEST).
        render_pass: ``"clean"`` (frames_cleanpass) or ``"final"`` (frames_finalpass).
        subsets: which of ``flyingthings3d``, ``driving``, ``monkaa`` to include (the test split uses
            FlyingThings3D only, whatever is asked).
        skip_missing: drop left images whose right image or disparity is missing (with a warning that
            counts them) instead of raising.
        cache: read/write the discovered list as a text file; ``False`` always walks the tree.
        cache_dir: where cache files go; default ``<root>/.stereo_cache`` if writable, else
            ``~/.cache/stereo``.

    Raises:
        SceneFlowError: the root is missing or empty, no folder of the expected layout is found, the
            split has no pairs, or pairs are incomplete (the first missing files are listed).
    """
    root = Path(root).expanduser()
    dirs = _split_dirs(root, split, render_pass, subsets)
    cache_file = _cache_file(root, split, render_pass, dirs, skip_missing, cache_dir) if cache else None
    if cache_file is not None:
        cached = _read_cache(cache_file, root, dirs)
        if cached is not None:
            return cached
    samples = _complete_pairs(root, dirs, split, render_pass, skip_missing)
    samples.sort(key=lambda s: str(s.left))
    if cache_file is not None:
        _write_cache(cache_file, root, dirs, samples)
    return samples


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _locate(root: Path, wanted: list[str], render_pass: str) -> dict[str, tuple[Path, Path]]:
    """(frames dir, disparity dir) per wanted subset, in layout (a) or (b); raise if none is found."""
    entries = _listdir(root)
    lower = {e.lower(): e for e in entries if (root / e).is_dir()}
    frames_name = f"frames_{render_pass}pass"
    out: dict[str, tuple[Path, Path]] = {}
    for subset in wanted:
        if subset in lower:  # layout (a)
            base = root / lower[subset]
            out[subset] = (base / frames_name, base / "disparity")
            continue
        prefix, disp = _FLAT[subset]
        flat_frames = f"{prefix}_{render_pass}pass"
        if flat_frames in lower or disp in lower:  # layout (b)
            out[subset] = (root / lower.get(flat_frames, flat_frames), root / lower.get(disp, disp))
    absent = [s for s in wanted if s not in out]
    if out and absent:
        log.warning("Scene Flow root %s: subset(s) %s not found; using %s", root, absent, sorted(out))
    if not out:
        expected_a = ", ".join(f"{_SUBSET_DIRS[s]}/" for s in wanted)
        expected_b = ", ".join(f"{_FLAT[s][0]}_{render_pass}pass/ + {_FLAT[s][1]}/" for s in wanted)
        found = ", ".join(entries[:20]) + (" ..." if len(entries) > 20 else "") if entries else "nothing"
        raise SceneFlowError(
            f"{root} is not a Scene Flow root: looked for subset folders ({expected_a}; names "
            f"case-insensitive) or PSMNet's flat folders ({expected_b}); found: {found}. "
            "See datasets/README.md for the expected layouts."
        )
    for subset, (frames, disparity) in out.items():
        for d, what in ((frames, f"{render_pass}pass frames"), (disparity, "disparity")):
            if not d.is_dir():
                raise SceneFlowError(
                    f"{subset}: expected the {what} folder {d}, which does not exist "
                    f"(found in {d.parent}: {', '.join(_listdir(d.parent)) or 'nothing'})"
                )
    return out


def _walk(top: Path) -> Iterable[tuple[str, list[str]]]:
    """(dir relative to top, file names) for every directory under top, via scandir (fast on NFS)."""
    stack = [""]
    while stack:
        rel = stack.pop()
        files = []
        try:
            with os.scandir(top / rel if rel else top) as it:
                for entry in it:
                    if entry.is_dir():
                        stack.append(f"{rel}/{entry.name}" if rel else entry.name)
                    else:
                        files.append(entry.name)
        except OSError:
            continue
        yield rel, files


def _pairs(subset: str, frames: Path, disparity: Path) -> tuple[list[Sample], list[str]]:
    """Pairs whose left image has a right image and a disparity; the rest listed as missing."""
    disp_files: set[str] = set()
    for rel, files in _walk(disparity):
        if rel == "left" or rel.endswith("/left"):
            disp_files.update(f"{rel}/{f}" for f in files if f.endswith(".pfm"))
    images: dict[str, set[str]] = {}
    for rel, files in _walk(frames):
        name = rel.rsplit("/", 1)[-1]
        if name in ("left", "right"):
            images[rel] = {f for f in files if os.path.splitext(f)[1].lower() in DATASET_IMAGE_EXTENSIONS}
    samples, missing = [], []
    for rel in sorted(images):
        if rel.rsplit("/", 1)[-1] != "left":
            continue
        parent = rel[: -len("left")]
        right_files = images.get(parent + "right", set())
        for f in sorted(images[rel]):
            stem = os.path.splitext(f)[0]
            disp_rel = f"{rel}/{stem}.pfm"
            lacks = []
            if f not in right_files:
                lacks.append(str(frames / parent / "right" / f))
            if disp_rel not in disp_files:
                lacks.append(str(disparity / disp_rel))
            if lacks:
                missing.append(f"{frames / rel / f}: missing {' and '.join(lacks)}")
                continue
            samples.append(Sample(frames / rel / f, frames / parent / "right" / f, disparity / disp_rel, subset))
    return samples, missing


# ---- cache -------------------------------------------------------------------------------------------


def _fingerprint(dirs: dict[str, tuple[Path, Path]]) -> list[list]:
    """mtimes of the frames/disparity folders and their children: changes when sequences are added."""
    out: list[list] = []
    for frames, disparity in dirs.values():
        for d in (frames, disparity):
            try:
                children = [d] + [d / c for c in _listdir(d)]
                out.append([str(d), [int(c.stat().st_mtime_ns) for c in children]])
            except OSError:
                out.append([str(d), None])
    return out


def _cache_file(
    root: Path,
    split: str,
    render_pass: str,
    dirs: dict[str, tuple[Path, Path]],
    skip_missing: bool,
    cache_dir: str | os.PathLike | None,
) -> Path | None:
    key = json.dumps([str(root.resolve()), split, render_pass, sorted(dirs), skip_missing])
    name = f"sceneflow_{split}_{render_pass}_{hashlib.sha1(key.encode()).hexdigest()[:12]}.txt"
    candidates = [Path(cache_dir)] if cache_dir else [root / ".stereo_cache", Path.home() / ".cache/stereo"]
    for d in candidates:
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d / name
        except OSError:
            continue
    return None


def _leaf_dirs(samples: list[Sample], root: Path) -> list[str]:
    """The folders holding the samples' files, relative to the root (their mtimes change when a file
    inside is added, removed or renamed)."""
    dirs = {p.parent for s in samples for p in (s.left, s.right, _disparity(s))}
    return sorted(str(d.relative_to(root)) for d in dirs)


def _mtimes(root: Path, rel_dirs: list[str]) -> list[int] | None:
    try:
        return [os.stat(root / d).st_mtime_ns for d in rel_dirs]
    except OSError:
        return None


def _read_cache(path: Path, root: Path, dirs: dict[str, tuple[Path, Path]]) -> list[Sample] | None:
    """The cached samples, or None when the cache is absent, stale or unreadable (then discovery walks)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    lines = text.splitlines()
    try:
        header = json.loads(lines[0][1:])
        if header.get("version") != CACHE_VERSION or header.get("fingerprint") != _fingerprint(dirs):
            return None
        leaves = header["leaves"]
        if _mtimes(root, leaves) != header["leaf_mtimes"]:
            return None  # a file was added or removed inside a sequence folder
        if not text.endswith("\n"):
            raise ValueError("the last line is incomplete: the file is truncated")
        samples = []
        for line in lines[1:]:
            subset, left, right, disp = line.split("\t")
            samples.append(Sample(root / left, root / right, root / disp, subset))
        if len(samples) != header["count"]:
            raise ValueError(f"{len(samples)} entries, header says {header['count']}")
    except (IndexError, KeyError, TypeError, ValueError) as e:  # truncated or foreign: walk again
        log.warning("ignoring the unreadable discovery cache %s (%s); scanning the folders again", path, e)
        return None
    return samples or None


def _write_cache(path: Path, root: Path, dirs: dict[str, tuple[Path, Path]], samples: list[Sample]) -> None:
    leaves = _leaf_dirs(samples, root)
    header = json.dumps(
        {
            "version": CACHE_VERSION,
            "fingerprint": _fingerprint(dirs),
            "count": len(samples),
            "leaves": leaves,
            "leaf_mtimes": _mtimes(root, leaves),
        }
    )
    body = "".join(
        f"{s.subset}\t{s.left.relative_to(root)}\t{s.right.relative_to(root)}\t{_disparity(s).relative_to(root)}\n"
        for s in samples
    )
    try:
        with atomic_write(path) as tmp:
            tmp.write_text(f"#{header}\n{body}")
    except OSError as e:  # a read-only dataset is fine: we just walk again next time
        log.info("could not write the discovery cache %s: %s", path, e)
