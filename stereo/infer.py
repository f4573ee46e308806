"""Inference on the user's own image pairs: disparity as PFM, 16-bit PNG and colour PNG, optional depth."""

from __future__ import annotations

import glob
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from stereo.checkpoint import load_model
from stereo.data.images import IMAGE_EXTENSIONS, read_rgb
from stereo.data.pfm import write_pfm
from stereo.device import autocast, resolve_device
from stereo.models import predict
from stereo.visualize import colorize_disparity

log = logging.getLogger(__name__)
SATURATION = 0.95  # predicted disparity above this fraction of max_disp suggests the range is exceeded


@dataclass(frozen=True)
class Pair:
    left: Path
    right: Path
    name: str  # output path stem relative to the output folder, e.g. "scene1/0001"


def _expand(spec: str) -> tuple[Path, list[Path]]:
    """(base folder, image files) for a file, a directory (recursive) or a glob pattern."""
    p = Path(spec).expanduser()
    if p.is_file():
        return p.parent, [p]
    if p.is_dir():
        files = [f for f in sorted(p.rglob("*")) if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
        return p, files
    if glob.has_magic(spec):
        files = [Path(f) for f in sorted(glob.glob(os.path.expanduser(spec), recursive=True)) if Path(f).is_file()]
        # The pattern's non-magic prefix is the base that relative names are taken from.
        parts = Path(spec).expanduser().parts
        base = Path(*[q for q in parts[: next(i for i, q in enumerate(parts) if glob.has_magic(q))]] or ["."])
        return base, files
    raise FileNotFoundError(f"{spec}: no such file or directory (and not a glob pattern)")


def find_pairs(left: str, right: str) -> list[Pair]:
    """Match left and right images: single files, or folders/globs matched by relative path.

    Outputs are named by the relative path (without extension), so equal file names in different
    folders never overwrite each other.
    """
    lbase, lfiles = _expand(left)
    rbase, rfiles = _expand(right)
    if not lfiles:
        raise FileNotFoundError(f"left={left!r} matches no image ({', '.join(IMAGE_EXTENSIONS)})")
    if not rfiles:
        raise FileNotFoundError(f"right={right!r} matches no image ({', '.join(IMAGE_EXTENSIONS)})")
    if len(lfiles) == 1 and len(rfiles) == 1 and Path(left).expanduser().is_file():
        return [Pair(lfiles[0], rfiles[0], lfiles[0].stem)]
    rights = {f.relative_to(rbase).with_suffix("").as_posix(): f for f in rfiles}
    pairs, missing = [], []
    for f in lfiles:
        key = f.relative_to(lbase).with_suffix("").as_posix()
        if key in rights:
            pairs.append(Pair(f, rights[key], key))
        else:
            missing.append(str(f))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(
            f"{len(missing)} left image(s) have no right image at the same relative path under {rbase}: {shown}"
        )
    return pairs


def write_outputs(
    out_dir: Path,
    name: str,
    disp: np.ndarray,
    color_max: float | None,
    focal_px: float | None = None,
    baseline: float | None = None,
) -> list[Path]:
    """Write ``<name>.pfm``, ``<name>.png`` (uint16 = disparity x 256), ``<name>_color.png`` and, with
    focal length (pixels) and baseline, ``<name>_depth.pfm`` (depth = focal * baseline / disparity,
    in the baseline's units; inf where disparity <= 0)."""
    stem = out_dir / name
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_name(stem.name + s) for s in (".pfm", ".png", "_color.png")]
    write_pfm(paths[0], disp)
    png16 = np.clip(np.round(np.maximum(disp, 0) * 256.0), 0, 65535).astype(np.uint16)
    _imwrite(paths[1], png16)
    _imwrite(paths[2], cv2.cvtColor(colorize_disparity(disp, 0, color_max), cv2.COLOR_RGB2BGR))
    if focal_px is not None and baseline is not None:
        with np.errstate(divide="ignore"):
            depth = np.where(disp > 0, focal_px * baseline / np.maximum(disp, 1e-12), np.inf).astype(np.float32)
        paths.append(stem.with_name(stem.name + "_depth.pfm"))
        write_pfm(paths[-1], depth)
    return paths


def _imwrite(path: Path, img: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    if not cv2.imwrite(str(tmp), img):
        raise OSError(f"could not write {path}")
    os.replace(tmp, path)


def infer(
    checkpoint: str | os.PathLike,
    left: str,
    right: str,
    output_dir: str | os.PathLike,
    device: str = "auto",
    precision: str = "fp32",
    scale: float = 1.0,
    color_range: str = "image",
    color_max: float | None = None,
    focal_px: float | None = None,
    baseline: float | None = None,
) -> list[dict[str, Any]]:
    """Predict disparity for every pair and write the outputs; returns one summary dict per pair.

    ``scale`` < 1 downsamples the images, predicts, and upsamples the disparity (multiplied by
    1/scale): use it when disparities exceed the model's range. ``color_range``: ``image`` (each
    colour PNG spans its own 0..max) or ``fixed`` (0..``color_max``, default the model's max_disp).
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    if color_range not in ("image", "fixed"):
        raise ValueError(f"color_range must be 'image' or 'fixed', got {color_range!r}")
    if (focal_px is None) != (baseline is None):
        raise ValueError("depth needs both focal_px and baseline")
    pairs = find_pairs(left, right)
    dev = resolve_device(device)
    autocast(dev, precision)  # validates the precision for this device
    model, _ = load_model(checkpoint, dev)
    out_dir = Path(output_dir)
    summaries = []
    for pair in pairs:
        limg, rimg = read_rgb(pair.left), read_rgb(pair.right)
        if limg.shape != rimg.shape:
            raise ValueError(
                f"left and right differ in size: {pair.left} is {limg.shape[1]}x{limg.shape[0]}, "
                f"{pair.right} is {rimg.shape[1]}x{rimg.shape[0]}"
            )
        h, w = limg.shape[:2]
        t0 = time.perf_counter()
        lt = torch.from_numpy(limg.transpose(2, 0, 1).copy())[None].to(dev)
        rt = torch.from_numpy(rimg.transpose(2, 0, 1).copy())[None].to(dev)
        if scale != 1:
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            lt = F.interpolate(lt, size, mode="bilinear", align_corners=False, antialias=True)
            rt = F.interpolate(rt, size, mode="bilinear", align_corners=False, antialias=True)
        with autocast(dev, precision):
            disp = predict(model, lt, rt).float()
        if scale != 1:
            factor = w / disp.shape[-1]  # disparities grow with the image width
            disp = F.interpolate(disp[None], (h, w), mode="bilinear", align_corners=False)[0] * factor
        disp = disp[0].cpu().numpy()
        seconds = time.perf_counter() - t0
        cmax = (color_max or float(model.max_disp)) if color_range == "fixed" else None
        paths = write_outputs(out_dir, pair.name, disp, cmax, focal_px, baseline)
        saturated = float(disp.max()) >= SATURATION * model.max_disp * (1 / scale)
        s = {
            "name": pair.name,
            "left": str(pair.left),
            "right": str(pair.right),
            "size": [h, w],
            "seconds": seconds,
            "disparity_min": float(disp.min()),
            "disparity_max": float(disp.max()),
            "saturated": saturated,
            "outputs": [str(p) for p in paths],
        }
        msg = f"{pair.name}: {w}x{h}, {seconds:.2f} s, disparity {s['disparity_min']:.1f}..{s['disparity_max']:.1f} px"
        if saturated:
            msg += (
                f"  WARNING: reaches {SATURATION:.0%} of the model's range ({model.max_disp / scale:g} px); "
                "larger disparities may be clipped: try scale=0.5"
            )
        print(msg, flush=True)
        summaries.append(s)
    return summaries
