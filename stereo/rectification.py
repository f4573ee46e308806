"""Raw stereo calibrations and rectification, with OpenCV's calibration code.

A raw calibration describes two cameras as they are: intrinsics ``K1``, ``K2`` (3x3, pixels), distortion
``D1``, ``D2`` (OpenCV's k1 k2 p1 p2 [k3 ...]) and the pose of the right camera in the left one's frame,
``x_right = R x_left + T`` (``T`` in the unit depth should have). Read from:

- OpenCV FileStorage files (YAML, XML or JSON) with ``K1 D1 K2 D2 R T`` (``M1``/``M2`` for ``K1``/``K2``, as
  OpenCV's ``stereo_calib`` sample writes them), and the image size as ``image_width``/``image_height``
  (or ``imageSize``/``image_size``) when it is there;
- a pair of ROS ``camera_info`` YAML files (``calib=left.yaml,right.yaml``), whose rectification ``R`` and
  projection ``P`` are used as ROS's ``stereo_image_proc`` does;
- Kalibr's ``camchain.yaml`` (pinhole cameras with ``radtan`` distortion).

:func:`rectification` turns one into undistort-and-rectify maps (``cv2.stereoRectify``,
``cv2.initUndistortRectifyMap``) whose rectified pair has one focal length, one row per point and zero
disparity at infinity; :meth:`Rectification.calibration` is its :class:`~stereo.calib.Calibration`, so
depth and point clouds are in the rectified left camera's frame, in the unit of ``T``.
:func:`rectify_from_matches` rectifies a pair without a calibration, from its own feature matches
(``cv2.stereoRectifyUncalibrated``): rows align, but depth has no metric scale.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from stereo.calib import Calibration
from stereo.errors import ConfigError, DataError, MissingFileError

RAW_SUFFIXES = (".yaml", ".yml", ".xml", ".json")


@dataclass(frozen=True)
class RawCalibration:
    """Two cameras as calibrated (see the module docstring); ROS files also give the rectification."""

    K1: np.ndarray
    D1: np.ndarray
    K2: np.ndarray
    D2: np.ndarray
    R: np.ndarray
    T: np.ndarray
    size: tuple[int, int] | None  # (width, height) the calibration was made at
    source: str
    rectified_by: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # ROS: R1, R2, P1, P2


@dataclass
class Rectification:
    """Maps that undistort and rectify a pair of one size, and the rectified cameras' projections."""

    size: tuple[int, int]  # (width, height)
    P1: np.ndarray  # 3x4, rectified left camera
    P2: np.ndarray  # 3x4, rectified right camera: P2[0, 3] = -f * baseline
    Q: np.ndarray  # 4x4, disparity-to-depth
    maps: tuple[np.ndarray, ...] = field(repr=False)
    source: str = ""

    def calibration(self) -> Calibration:
        """The rectified pair's calibration: depth = baseline * f / (d + doffs) in the unit of ``T``."""
        f = float(self.P1[0, 0])
        return Calibration(f, float(self.P1[0, 2]), float(self.P1[1, 2]), abs(float(self.P2[0, 3]) / f),
                           float(self.P2[0, 2] - self.P1[0, 2]))  # fmt: skip

    def apply(self, left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rectified views (H, W, C) of a raw pair of this size (bilinear; outside the raw image: edge)."""
        if (left.shape[1], left.shape[0]) != self.size or left.shape != right.shape:
            raise DataError(f"{self.source}: the calibration's rectification is for {self.size[0]}x{self.size[1]} "
                            f"images, the pair is {left.shape[1]}x{left.shape[0]}")  # fmt: skip
        m1x, m1y, m2x, m2y = self.maps
        views = [cv2.remap(v, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                 for v, mx, my in ((left, m1x, m1y), (right, m2x, m2y))]  # fmt: skip
        return views[0], views[1]

    def to_json(self) -> dict[str, Any]:
        return {"size": list(self.size), "P1": self.P1.tolist(), "P2": self.P2.tolist(), "Q": self.Q.tolist(),
                "source": self.source}  # fmt: skip


def is_raw_calibration(spec: str) -> bool:
    """Whether ``calib=`` names raw-camera files (OpenCV, ROS, Kalibr) rather than a rectified calibration."""
    return "," in spec or Path(spec).suffix.lower() in RAW_SUFFIXES


def read_raw_calibration(spec: str) -> RawCalibration:
    """The raw calibration that ``calib=`` names: ``left.yaml,right.yaml`` (ROS) or one file."""
    if "," in spec:
        paths = [Path(p.strip()).expanduser() for p in spec.split(",")]
        if len(paths) != 2:
            raise ConfigError(f"calib={spec}: expected one file, or two ROS camera_info files (left,right)")
        return _ros_pair(*paths)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise MissingFileError(f"calibration file not found: {path}")
    data = _yaml(path) if path.suffix.lower() in (".yaml", ".yml") else None
    if isinstance(data, dict) and "cam0" in data:
        return _kalibr(path, data)
    if isinstance(data, dict) and "camera_matrix" in data:
        raise ConfigError(
            f"calib={spec}: a ROS camera_info file describes one camera; give both: calib=left.yaml,right.yaml"
        )
    return _opencv(path)


def _yaml(path: Path) -> Any:
    """A plain YAML file's data; None for OpenCV's own YAML (``%YAML:1.0``, ``!!opencv-matrix``)."""
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        return None


def _array(value: Any, path: Path, key: str, shape: tuple[int, ...] | None, flat: bool = False) -> np.ndarray:
    """``value`` as a finite float64 array of ``shape`` (flat: any length from 4 to 14), or a one-line error."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {key} is not a matrix of numbers") from None
    if flat:
        arr = arr.reshape(-1)
        if arr.size not in (4, 5, 8, 12, 14):
            raise DataError(f"{path}: {key} has {arr.size} distortion coefficients; expected 4, 5, 8, 12 or 14")
    elif shape is not None and arr.size == int(np.prod(shape)):
        arr = arr.reshape(shape)
    if shape is not None and not flat and arr.shape != shape:
        raise DataError(f"{path}: {key} must be {'x'.join(map(str, shape))}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: {key} holds a non-finite value")
    return arr


def _size(width: Any, height: Any, path: Path, key: str) -> tuple[int, int]:
    try:
        w, h = int(width), int(height)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {key} must be a width and a height in pixels") from None
    if w <= 0 or h <= 0:
        raise DataError(f"{path}: {key} must be positive, got {w}x{h}")
    return w, h


def _opencv(path: Path) -> RawCalibration:
    """An OpenCV FileStorage file (YAML, XML, JSON) with K1/M1, D1, K2/M2, D2, R, T and maybe the size."""
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except cv2.error as e:
        raise DataError(f"{path}: not an OpenCV calibration file (YAML, XML or JSON): {str(e).strip()[:200]}") from None
    if not fs.isOpened():
        raise DataError(f"{path}: OpenCV cannot read it as a calibration file (YAML, XML or JSON)")

    def node(*names: str) -> tuple[str, Any]:
        for name in names:
            n = fs.getNode(name)
            if not n.empty():
                return name, _fs_value(n)
        raise DataError(f"{path}: no {' or '.join(names)} (expected K1, D1, K2, D2, R, T as cv2.stereoCalibrate gives)")

    names = {"K1": ("K1", "M1"), "D1": ("D1",), "K2": ("K2", "M2"), "D2": ("D2",), "R": ("R",), "T": ("T",)}
    shapes = {"K1": (3, 3), "K2": (3, 3), "R": (3, 3), "T": (3,)}
    arrays = {}
    for key, aliases in names.items():
        name, value = node(*aliases)
        arrays[key] = _array(value, path, name, shapes.get(key), flat=key.startswith("D"))
    size = None
    w, h = fs.getNode("image_width"), fs.getNode("image_height")
    if not w.empty() and not h.empty():
        size = _size(w.real(), h.real(), path, "image_width/image_height")
    for key in ("imageSize", "image_size"):
        n = fs.getNode(key)
        if not n.empty():
            s = np.asarray(_fs_value(n), dtype=np.float64).reshape(-1)
            if s.size != 2:
                raise DataError(f"{path}: {key} must be [width, height]")
            size = _size(s[0], s[1], path, key)
    fs.release()
    return RawCalibration(arrays["K1"], arrays["D1"], arrays["K2"], arrays["D2"], arrays["R"], arrays["T"], size,
                          str(path))  # fmt: skip


def _fs_value(n: Any) -> Any:
    """A FileStorage node's value: a matrix (``!!opencv-matrix``), a list of numbers or a number."""
    if n.isSeq():
        return [n.at(i).real() for i in range(n.size())]
    return n.mat() if n.isMap() else n.real()


def _ros_camera(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    if not path.is_file():
        raise MissingFileError(f"calibration file not found: {path}")
    data = _yaml(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a ROS camera_info YAML file")

    def get(key: str, shape: tuple[int, ...] | None, flat: bool = False) -> np.ndarray:
        node = data.get(key)
        if not isinstance(node, dict) or "data" not in node:
            raise DataError(f"{path}: no {key} (a ROS camera_info file has camera_matrix, distortion_coefficients, "
                            "rectification_matrix and projection_matrix, each with data)")  # fmt: skip
        return _array(node["data"], path, key, shape, flat)

    if "image_width" not in data or "image_height" not in data:
        raise DataError(f"{path}: no image_width/image_height")
    size = _size(data["image_width"], data["image_height"], path, "image_width/image_height")
    return (get("camera_matrix", (3, 3)), get("distortion_coefficients", None, flat=True),
            get("rectification_matrix", (3, 3)), get("projection_matrix", (3, 4)), size)  # fmt: skip


def _ros_pair(left: Path, right: Path) -> RawCalibration:
    K1, D1, R1, P1, s1 = _ros_camera(left)
    K2, D2, R2, P2, s2 = _ros_camera(right)
    if s1 != s2:
        raise DataError(f"{left} is {s1[0]}x{s1[1]} but {right} is {s2[0]}x{s2[1]}: the two cameras must match")
    if P2[0, 3] == 0:
        raise DataError(f"{right}: projection_matrix P[0][3] = -f * baseline is 0: is this the right camera's file?")
    # The pose in OpenCV's convention, from the rectified frames: x_r = R2^T R1 x_l + R2^T t, t = (-B, 0, 0).
    baseline = -P2[0, 3] / P2[0, 0]
    R = R2.T @ R1
    T = R2.T @ np.array([-baseline, 0.0, 0.0])
    return RawCalibration(K1, D1, K2, D2, R, T, s1, f"{left},{right}", (R1, R2, P1, P2))


def _kalibr(path: Path, data: dict) -> RawCalibration:
    cams = []
    for name in ("cam0", "cam1"):
        cam = data.get(name)
        if not isinstance(cam, dict):
            raise DataError(f"{path}: no {name} (a Kalibr camchain.yaml has cam0 and cam1)")
        if cam.get("camera_model", "pinhole") != "pinhole" or cam.get("distortion_model", "radtan") != "radtan":
            raise DataError(f"{path}: {name} is {cam.get('camera_model')}/{cam.get('distortion_model')}; only pinhole "
                            "cameras with radtan distortion are read (fisheye/equidistant: not yet)")  # fmt: skip
        fu, fv, pu, pv = _array(cam.get("intrinsics"), path, f"{name}.intrinsics", (4,))
        K = np.array([[fu, 0, pu], [0, fv, pv], [0, 0, 1]])
        D = _array(cam.get("distortion_coeffs"), path, f"{name}.distortion_coeffs", None, flat=True)
        res = cam.get("resolution")
        if not isinstance(res, list) or len(res) != 2:
            raise DataError(f"{path}: {name}.resolution must be [width, height]")
        cams.append((K, D, _size(res[0], res[1], path, f"{name}.resolution")))
    if cams[0][2] != cams[1][2]:
        raise DataError(f"{path}: cam0 and cam1 have different resolutions")
    pose = _array(data["cam1"].get("T_cn_cnm1"), path, "cam1.T_cn_cnm1", (4, 4))
    return RawCalibration(cams[0][0], cams[0][1], cams[1][0], cams[1][1], pose[:3, :3], pose[:3, 3], cams[0][2],
                          str(path))  # fmt: skip


def rectification(raw: RawCalibration, size: tuple[int, int]) -> Rectification:
    """Rectification maps of ``raw`` for images of ``size`` (width, height), which must be the calibration's
    when it records one."""
    if raw.size is not None and tuple(size) != tuple(raw.size):
        raise DataError(f"{raw.source}: calibrated at {raw.size[0]}x{raw.size[1]}, the images are {size[0]}x{size[1]}; "
                        "calibrate at this size (or resize the images to it)")  # fmt: skip
    if raw.rectified_by is not None:  # ROS: the rectification is part of the calibration
        R1, R2, P1, P2 = raw.rectified_by
        f, cx1, cx2, cy = P1[0, 0], P1[0, 2], P2[0, 2], P1[1, 2]
        Tx = P2[0, 3] / P2[0, 0]
        Q = np.array([[1, 0, 0, -cx1], [0, 1, 0, -cy], [0, 0, 0, f], [0, 0, -1 / Tx, (cx1 - cx2) / Tx]])
    else:
        R1, R2, P1, P2, Q, _, _ = cv2.stereoRectify(raw.K1, raw.D1, raw.K2, raw.D2, size, raw.R, raw.T.reshape(3, 1),
                                                    flags=cv2.CALIB_ZERO_DISPARITY, alpha=0)  # fmt: skip
    m1 = cv2.initUndistortRectifyMap(raw.K1, raw.D1, R1, P1[:, :3], size, cv2.CV_32FC1)
    m2 = cv2.initUndistortRectifyMap(raw.K2, raw.D2, R2, P2[:, :3], size, cv2.CV_32FC1)
    return Rectification(tuple(size), np.asarray(P1), np.asarray(P2), np.asarray(Q), (*m1, *m2), raw.source)  # type: ignore[arg-type]


def rectify(left: np.ndarray, right: np.ndarray, calib: RawCalibration | str | os.PathLike
            ) -> tuple[np.ndarray, np.ndarray, Rectification]:  # fmt: skip
    """The rectified views of a raw pair (H, W, C) x2 and the :class:`Rectification` used: ``calib`` is a
    :class:`RawCalibration` or what ``calib=`` takes (a file, or ``left.yaml,right.yaml``)."""
    raw = calib if isinstance(calib, RawCalibration) else read_raw_calibration(str(calib))
    rect = rectification(raw, (left.shape[1], left.shape[0]))
    return (*rect.apply(left, right), rect)


def rectify_from_matches(left: np.ndarray, right: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """A pair rectified from its own feature matches (fundamental matrix by RANSAC, then
    ``cv2.stereoRectifyUncalibrated``): rows align, the scale of depth is unknown. Returns the views and the
    homographies applied (``H1``, ``H2``)."""
    from stereo.matches import MIN_MATCHES, match_points

    pl, pr = match_points(left, right)
    if len(pl) < MIN_MATCHES:
        raise DataError(f"{name}: rectify=matches found {len(pl)} feature matches (< {MIN_MATCHES}): too few to "
                        "rectify; give a calibration (calib=..., rectify=calib)")  # fmt: skip
    F, inliers = cv2.findFundamentalMat(pl, pr, cv2.FM_RANSAC, 1.0, 0.999)
    if F is None or F.shape != (3, 3):
        raise DataError(f"{name}: rectify=matches could not estimate the views' geometry from {len(pl)} matches")
    keep = inliers.ravel().astype(bool)
    h, w = left.shape[:2]
    ok, H1, H2 = cv2.stereoRectifyUncalibrated(pl[keep], pr[keep], F, (w, h))
    if not ok:
        raise DataError(f"{name}: rectify=matches: OpenCV could not rectify from {int(keep.sum())} inlier matches")
    views = [cv2.warpPerspective(v, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
             for v, H in ((left, H1), (right, H2))]  # fmt: skip
    return (
        views[0],
        views[1],
        {"H1": np.asarray(H1).tolist(), "H2": np.asarray(H2).tolist(), "inliers": int(keep.sum())},
    )
