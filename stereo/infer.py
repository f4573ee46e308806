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
import torch.nn.functional as F
from omegaconf import DictConfig

from stereo.calib import Calibration, calibration_from, point_cloud, write_ply
from stereo.checkpoint import load_model
from stereo.config import InferAppConfig, check_config
from stereo.data.images import IMAGE_EXTENSIONS, check_same_size, read_rgb, to_tensor
from stereo.data.pfm import write_pfm
from stereo.device import autocast, resolve_device
from stereo.errors import ConfigError, MissingFileError, OutputError
from stereo.io import atomic_paths, encode_image
from stereo.models import predict
from stereo.visualize import colorize_disparity, colour_legend
from stereo.weights import resolve_checkpoint

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
    raise MissingFileError(f"{spec}: no such file or directory (and not a glob pattern)")


def find_pairs(left: str, right: str) -> list[Pair]:
    """Match left and right images: single files, or folders/globs matched by relative path.

    Outputs are named by the relative path (without extension), so equal file names in different
    folders never overwrite each other.
    """
    lbase, lfiles = _expand(left)
    rbase, rfiles = _expand(right)
    if not lfiles:
        raise MissingFileError(f"left={left!r} matches no image ({', '.join(IMAGE_EXTENSIONS)})")
    if not rfiles:
        raise MissingFileError(f"right={right!r} matches no image ({', '.join(IMAGE_EXTENSIONS)})")
    if len(lfiles) == 1 and len(rfiles) == 1 and Path(left).expanduser().is_file():
        return [Pair(lfiles[0], rfiles[0], lfiles[0].stem)]
    rights = {f.relative_to(rbase).with_suffix("").as_posix(): f for f in rfiles}
    pairs, missing, seen = [], [], {}
    for f in lfiles:
        key = f.relative_to(lbase).with_suffix("").as_posix()
        seen.setdefault(key, []).append(f)
        if key in rights:
            pairs.append(Pair(f, rights[key], key))
        else:
            missing.append(str(f))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise MissingFileError(
            f"{len(missing)} left image(s) have no right image at the same relative path under {rbase}: {shown}"
        )
    collisions = [" and ".join(str(f) for f in fs) for fs in seen.values() if len(fs) > 1]
    if collisions:
        raise ConfigError(
            f"{len(collisions)} output name(s) would be shared by several left images (names differ only in "
            f"their extension): {'; '.join(collisions[:5])}. Rename them or run each kind separately."
        )
    return pairs


OUTPUT_SUFFIXES = (".pfm", ".png", "_color.png", "_legend.png")
DEPTH_SUFFIX = "_depth.pfm"
CLOUD_SUFFIX = ".ply"


def plan_outputs(pairs: list[Pair], out_dir: Path, depth: bool, cloud: bool = False) -> dict[str, list[Path]]:
    """Every output path of every pair, checked before any model runs: the output folder must be a
    writable folder, no output may be an input image, and no two outputs may share a path."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output_dir={out_dir} exists and is not a folder")
    suffixes = OUTPUT_SUFFIXES + ((DEPTH_SUFFIX,) if depth else ()) + ((CLOUD_SUFFIX,) if cloud else ())
    plan = {p.name: [out_dir / f"{p.name}{s}" for s in suffixes] for p in pairs}
    inputs = {f.resolve(): f for p in pairs for f in (p.left, p.right)}
    clashes = [f"{out} would overwrite the input {inputs[out.resolve()]}" for outs in plan.values() for out in outs
               if out.resolve() in inputs]  # fmt: skip
    if clashes:
        raise OutputError(
            f"refusing to write over input images ({len(clashes)}): {'; '.join(clashes[:3])}. "
            "Choose an output_dir that does not hold the inputs."
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"output_dir={out_dir}: cannot create the folder ({e.strerror or e})") from e
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutputError(f"output_dir={out_dir}: the folder is not writable")
    return plan


def write_outputs(
    paths: list[Path],
    disp: np.ndarray,
    color_max: float | None,
    calib: Calibration | None = None,
    rgb: np.ndarray | None = None,
    max_depth: float | None = None,
) -> None:
    """Write one pair's outputs all or nothing: ``<name>.pfm`` (float32 pixels), ``<name>.png`` (uint16 =
    disparity x 256), ``<name>_color.png`` with its scale in ``<name>_legend.png`` and, with a
    calibration, ``<name>_depth.pfm`` (depth = baseline * f / (disparity + doffs), in the baseline's unit;
    inf where that is not positive) and, when planned, ``<name>.ply`` (the left image's colours at their
    3-D points)."""
    png16 = np.clip(np.round(np.maximum(disp, 0) * 256.0), 0, 65535).astype(np.uint16)
    with atomic_paths(paths) as tmp:
        write_pfm(tmp[0], disp)
        encode_image(tmp[1], png16, paths[1])
        vmax = float(color_max if color_max is not None else max(float(disp.max()), 1e-6))
        encode_image(tmp[2], cv2.cvtColor(colorize_disparity(disp, 0, vmax), cv2.COLOR_RGB2BGR), paths[2])
        encode_image(tmp[3], cv2.cvtColor(colour_legend(0.0, vmax, disp.shape[1]), cv2.COLOR_RGB2BGR), paths[3])
        for t, p in zip(tmp[4:], paths[4:], strict=True):
            if p.name.endswith(DEPTH_SUFFIX):
                write_pfm(t, calib.depth(disp))
            else:
                write_ply(t, *point_cloud(disp, rgb, calib, max_depth))


def infer(cfg: DictConfig, output_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Predict disparity for every pair of ``cfg.left``/``cfg.right`` (``conf/infer.yaml``) and write the
    outputs to ``output_dir`` (default ``cfg.output_dir``); returns one summary dict per pair.

    ``scale`` < 1 downsamples the images, predicts, and upsamples the disparity (multiplied by
    1/scale): use it when disparities exceed the model's range. ``color_range``: ``image`` (each
    colour PNG spans its own 0..max) or ``fixed`` (0..``color_max``, default the model's max_disp).
    Nothing is written over an input; a failure part-way leaves only complete pairs.
    """
    check_config(cfg, InferAppConfig)
    calib = calibration_from(cfg.calib, cfg.focal_px, cfg.baseline, cfg.cx, cfg.cy, cfg.doffs)
    if cfg.point_cloud and calib is None:
        raise ConfigError("point_cloud=true needs a calibration: calib=<calib file> or focal_px and baseline")
    out_dir = Path(output_dir if output_dir is not None else cfg.output_dir or ".")
    pairs = find_pairs(str(cfg.left), str(cfg.right))
    dev = resolve_device(cfg.device)
    autocast(dev, cfg.precision)  # validates the precision for this device
    if cfg.backend == "onnxruntime":
        from stereo.export import OnnxStereo

        if not cfg.onnx:
            raise ConfigError("backend=onnxruntime needs onnx=<file.onnx> (made by stereo-export)")
        model = OnnxStereo(cfg.onnx)
        run = model.predict
    else:
        model, _ = load_model(resolve_checkpoint(cfg.checkpoint), dev, cfg)
        run = lambda lt, rt: predict(model, lt, rt)  # noqa: E731
    # Every input and the model are known to be usable before the output folder is touched.
    plan = plan_outputs(pairs, out_dir, depth=calib is not None, cloud=bool(cfg.point_cloud))
    scale = float(cfg.scale)
    summaries = []
    for pair in pairs:
        limg, rimg = read_rgb(pair.left), read_rgb(pair.right)
        check_same_size(limg, rimg, pair.left, pair.right)
        h, w = limg.shape[:2]
        t0 = time.perf_counter()
        lt, rt = to_tensor(limg)[None].to(dev), to_tensor(rimg)[None].to(dev)
        if scale != 1:
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            lt = F.interpolate(lt, size, mode="bilinear", align_corners=False, antialias=True)
            rt = F.interpolate(rt, size, mode="bilinear", align_corners=False, antialias=True)
        with autocast(dev, cfg.precision):
            disp = run(lt, rt).float()
        if scale != 1:
            factor = w / disp.shape[-1]  # disparities grow with the image width
            disp = F.interpolate(disp[None], (h, w), mode="bilinear", align_corners=False)[0] * factor
        disp = disp[0].cpu().numpy()
        seconds = time.perf_counter() - t0
        cmax = (cfg.color_max or float(model.max_disp)) if cfg.color_range == "fixed" else None
        paths = plan[pair.name]
        write_outputs(paths, disp, cmax, calib, limg, cfg.max_depth)
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
            "color_range_px": [0.0, float(cmax if cmax is not None else max(float(disp.max()), 1e-6))],
            "head": model.heads_used[0] if getattr(model, "heads_used", None) else None,
            "outputs": [str(p) for p in paths],
        }
        msg = f"{pair.name}: {w}x{h}, {seconds:.2f} s, disparity {s['disparity_min']:.1f}..{s['disparity_max']:.1f} px"
        if cfg.early_exit != "off" and cfg.backend == "torch":
            msg += f", answered by head {s['head']} of {model.hourglasses}"
        if saturated:
            msg += (
                f"  WARNING: reaches {SATURATION:.0%} of the model's range ({model.max_disp / scale:g} px); "
                "larger disparities may be clipped: try scale=0.5"
            )
        print(msg, flush=True)
        summaries.append(s)
    return summaries
