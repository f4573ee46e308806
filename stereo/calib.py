"""Stereo calibrations (Middlebury/ETH3D ``calib.txt``, KITTI ``P2``/``P3``), depth and PLY point clouds.

For a rectified pair with focal length ``f`` (pixels), principal point (cx, cy) of the left camera,
``baseline`` (any length unit) and ``doffs`` (x-difference of the two principal points, pixels, as
Middlebury defines it), a left pixel (x, y) with disparity d lies at depth
``Z = baseline * f / (d + doffs)``, ``X = (x - cx) Z / f``, ``Y = (y - cy) Z / f`` in the left camera's
frame, in the baseline's unit.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stereo.errors import ConfigError, DataError, MissingFileError
from stereo.io import atomic_write


@dataclass(frozen=True)
class Calibration:
    f: float  # pixels
    cx: float | None  # pixels; None = the image centre
    cy: float | None
    baseline: float  # the length unit of the depth
    doffs: float = 0.0  # pixels
    ndisp: int | None = None  # Middlebury: a bound on the disparities

    def depth(self, disp: np.ndarray) -> np.ndarray:
        """(H, W) disparity in pixels -> depth in the baseline's unit; inf where d + doffs <= 0."""
        denom = disp.astype(np.float64) + self.doffs
        with np.errstate(divide="ignore"):
            return np.where(denom > 0, self.baseline * self.f / np.maximum(denom, 1e-12), np.inf).astype(np.float32)


def _matrix(text: str, path: Path, key: str) -> np.ndarray:
    nums = [_number(v, path, key) for v in re.split(r"[\s;\[\]]+", text.strip()) if v]
    if len(nums) != 9:
        raise DataError(f"{path}: {key} must be a 3x3 matrix like [f 0 cx; 0 f cy; 0 0 1], got {text!r}")
    return np.array(nums).reshape(3, 3)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise MissingFileError(f"calibration file not found: {path}")
    raw = path.read_bytes()
    try:
        if b"\0" in raw:
            raise UnicodeDecodeError("utf-8", raw, 0, 1, "NUL byte")
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text calibration file (expected Middlebury/ETH3D calib.txt or KITTI)") from None


def _number(text: str, path: Path, key: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}: {key}={text!r} is not a number") from None


def check_calibration(c: Calibration, source: str) -> Calibration:
    """Refuse a calibration whose depths would be meaningless: focal length and baseline must be finite
    and > 0, doffs and the principal point finite. ``source`` names where the values came from."""
    problems = [f"{k}={v!r} must be a finite number > 0" for k, v in (("focal", c.f), ("baseline", c.baseline))
                if not (np.isfinite(v) and v > 0)]  # fmt: skip
    problems += [f"{k}={v!r} must be a finite number" for k, v in (("doffs", c.doffs), ("cx", c.cx), ("cy", c.cy))
                 if v is not None and not np.isfinite(v)]  # fmt: skip
    if problems:
        raise DataError(f"{source}: invalid calibration: {'; '.join(problems)}")
    return c


def read_middlebury_calib(path: str | os.PathLike) -> Calibration:
    """Middlebury 2014/2021 and ETH3D ``calib.txt`` (``cam0=[...]``, ``baseline=``, ``doffs=``, ...)."""
    path = Path(path)
    entries = {}
    for line in _read_text(path).splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            entries[k.strip()] = v.strip()
    missing = [k for k in ("cam0", "baseline") if k not in entries]
    if missing:
        raise DataError(f"{path}: missing {', '.join(missing)} (expected Middlebury keys cam0, cam1, doffs, baseline)")
    cam0 = _matrix(entries["cam0"], path, "cam0")
    doffs = _number(entries["doffs"], path, "doffs") if "doffs" in entries else 0.0
    if "doffs" not in entries and "cam1" in entries:
        doffs = float(_matrix(entries["cam1"], path, "cam1")[0, 2] - cam0[0, 2])
    ndisp = _number(entries["ndisp"], path, "ndisp") if "ndisp" in entries else None
    ndisp = int(ndisp) if ndisp is not None and np.isfinite(ndisp) else None
    return Calibration(float(cam0[0, 0]), float(cam0[0, 2]), float(cam0[1, 2]),
                       _number(entries["baseline"], path, "baseline"), doffs, ndisp)  # fmt: skip


def read_kitti_calib(path: str | os.PathLike) -> Calibration:
    """KITTI 2012 ``calib/NNNNNN.txt`` (``P2:``, ``P3:``) or 2015 ``calib_cam_to_cam`` (``P_rect_02``,
    ``P_rect_03``): the left camera is P2, the right P3; baseline in metres."""
    path = Path(path)
    rows = {}
    for line in _read_text(path).splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            try:
                rows[k.strip()] = np.array([float(x) for x in v.split()])
            except ValueError:
                continue
    pick = [("P2", "P3"), ("P_rect_02", "P_rect_03")]
    for left, right in pick:
        if left in rows and right in rows and rows[left].size == 12 and rows[right].size == 12:
            p2, p3 = rows[left].reshape(3, 4), rows[right].reshape(3, 4)
            f = p2[0, 0]
            baseline = (p2[0, 3] - p3[0, 3]) / f  # P[0, 3] = -f * t_x
            return Calibration(float(f), float(p2[0, 2]), float(p2[1, 2]), float(baseline), float(p3[0, 2] - p2[0, 2]))
    raise DataError(
        f"{path}: expected KITTI projection matrices P2 and P3 (or P_rect_02 and P_rect_03), 12 values each"
    )


def read_calib(path: str | os.PathLike) -> Calibration:
    """A Middlebury/ETH3D ``calib.txt`` or a KITTI calibration file, told apart by their keys."""
    path = Path(path)
    if re.search(r"^\s*(P2|P_rect_02)\s*:", _read_text(path), re.M):
        return read_kitti_calib(path)
    return read_middlebury_calib(path)


def calibration_from(calib: str | None, focal_px, baseline, cx, cy, doffs) -> Calibration | None:
    """The calibration of ``stereo-infer``: a file (``calib=``), or explicit values; None for neither."""
    if calib:
        c = read_calib(calib)
        merged = Calibration(focal_px or c.f, c.cx if cx is None else cx, c.cy if cy is None else cy,
                             baseline or c.baseline, c.doffs if doffs is None else doffs, c.ndisp)  # fmt: skip
        return check_calibration(merged, f"calib={calib} (with the explicit values)")
    if focal_px is None and baseline is None:
        return None
    if focal_px is None or baseline is None:
        raise ConfigError("depth needs both focal_px and baseline (both > 0), or calib=<calibration file>")
    c = Calibration(float(focal_px), cx, cy, float(baseline), float(doffs or 0.0))  # cx/cy None: image centre
    return check_calibration(c, "focal_px/baseline/cx/cy/doffs")


def point_cloud(disp: np.ndarray, rgb: np.ndarray, calib: Calibration, max_depth: float | None = None):
    """(N, 3) float32 points (X, Y, Z in the baseline's unit, left camera frame) and (N, 3) uint8 colours
    of the pixels with disparity > 0 and a finite depth within ``max_depth``."""
    h, w = disp.shape
    cx = (w - 1) / 2 if calib.cx is None else calib.cx
    cy = (h - 1) / 2 if calib.cy is None else calib.cy
    z = calib.depth(disp)
    keep = (disp > 0) & np.isfinite(z) & (z > 0)
    if max_depth is not None:
        keep &= z <= max_depth
    ys, xs = np.nonzero(keep)
    zk = z[keep].astype(np.float64)
    pts = np.stack([(xs - cx) * zk / calib.f, (ys - cy) * zk / calib.f, zk], 1).astype(np.float32)
    colours = (np.clip(rgb[keep], 0, 1) * 255 + 0.5).astype(np.uint8)
    return pts, colours


def write_ply(path: str | os.PathLike, points: np.ndarray, colours: np.ndarray) -> None:
    """Binary little-endian PLY with float x, y, z and uchar red, green, blue per vertex (atomic)."""
    n = len(points)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment written by stereo\n"
        f"element vertex {n}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    ).encode()
    rec = np.empty(n, dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
    rec["xyz"], rec["rgb"] = points, colours
    with atomic_write(path) as tmp:
        tmp.write_bytes(header + rec.tobytes())


def write_glb(path: str | os.PathLike, points: np.ndarray, colours: np.ndarray) -> None:
    """A point cloud as binary glTF 2.0 (atomic): one mesh primitive of mode POINTS, float32 positions and
    uint8 RGBA colours, which web viewers (Gradio's ``Model3D``, three.js) and Blender show as they are.

    ``points``: (N, 3) in the left camera frame (x right, y down, z forward, as :func:`point_cloud` gives);
    glTF's frame is y up with the viewer on +z, so y and z change sign. ``colours``: (N, 3) uint8."""
    pos = (np.asarray(points, np.float32) * np.float32([1, -1, -1])).astype("<f4")
    n = len(pos)
    rgba = np.concatenate([np.asarray(colours, np.uint8).reshape(n, 3), np.full((n, 1), 255, np.uint8)], 1)
    blob = pos.tobytes() + rgba.tobytes()  # 12 and 4 bytes per vertex: both views stay 4-byte aligned
    lo, hi = (pos.min(0), pos.max(0)) if n else (np.zeros(3), np.zeros(3))
    gltf = {
        "asset": {"version": "2.0", "generator": "stereo"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "COLOR_0": 1}, "mode": 0}]}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 12 * n, "target": 34962},
            {"buffer": 0, "byteOffset": 12 * n, "byteLength": 4 * n, "target": 34962},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": n, "type": "VEC3",
             "min": [float(v) for v in lo], "max": [float(v) for v in hi]},
            {"bufferView": 1, "componentType": 5121, "normalized": True, "count": n, "type": "VEC4"},
        ],
    }  # fmt: skip
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    blob += b"\0" * (-len(blob) % 4)
    chunks = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(blob), b"BIN\0") + blob
    with atomic_write(path) as tmp:
        tmp.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks)


def read_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read back what :func:`write_ply` writes: (N, 3) float32 points, (N, 3) uint8 colours."""
    raw = Path(path).read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    n = int(re.search(rb"element vertex (\d+)", raw[:end]).group(1))
    rec = np.frombuffer(raw[end:], dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)], count=n)
    return rec["xyz"].copy(), rec["rgb"].copy()
