"""Reading ground-truth disparity maps: PFM (Scene Flow, Middlebury, ETH3D) and KITTI's 16-bit PNG.

Unknown disparities come back as NaN or inf, so :func:`stereo.metrics.valid_mask` never counts them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stereo.data.images import imread_checked
from stereo.data.pfm import read_pfm
from stereo.errors import DataError, MissingFileError

# Unknown disparities are stored as inf (Middlebury, ETH3D) or NaN; finite values that are tiny but non-zero
# or astronomically large come from reading bytes in the wrong order or from a corrupt file.
_TINY, _HUGE, _MAX_IMPLAUSIBLE = 1e-6, 1e5, 0.5


def _implausible_share(d: np.ndarray) -> float:
    a = np.abs(d)
    bad = ((a > 0) & (a < _TINY)) | (np.isfinite(a) & (a > _HUGE))
    return float(bad.mean())


def read_png_disparity(path: str | os.PathLike) -> np.ndarray:
    """KITTI's ground truth: a 16-bit PNG holding disparity x 256, 0 = no ground truth (-> NaN)."""
    path = Path(path)
    raw = imread_checked(path, what="disparity file")
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise DataError(
            f"{path}: expected a single-channel 16-bit PNG (disparity x 256, KITTI's format), "
            f"found {raw.dtype} with {1 if raw.ndim == 2 else raw.shape[2]} channel(s)"
        )
    disp = raw.astype(np.float32) / 256.0
    disp[raw == 0] = np.nan
    return disp


def _read_npy(path: Path) -> np.ndarray:
    """A 2-D float ``.npy`` array of disparities (pixels; NaN, inf or 0 = none), read without pickles."""
    if not path.is_file():
        raise MissingFileError(f"disparity file not found: {path}")
    try:
        disp = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: cannot read as a .npy array ({e})") from None
    if disp.ndim != 2 or not np.issubdtype(disp.dtype, np.floating):
        raise DataError(f"{path}: expected a 2-D float array of disparities, found {disp.dtype} {disp.shape}")
    return disp.astype(np.float32)


def read_disparity(path: str | os.PathLike) -> np.ndarray:
    """Read a disparity map (PFM, KITTI's 16-bit PNG, or a 2-D float ``.npy``) as (H, W) float32 pixels,
    rejecting values that cannot be disparities.

    More than half tiny (0 < |d| < 1e-6) or huge (finite, > 1e5) values raise :class:`DataError` naming the
    file; when the other byte order reads sensibly the message says the header's scale sign is wrong.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return read_png_disparity(path)
    if suffix == ".npy":
        disp = _read_npy(Path(path))
    else:
        disp = read_pfm(path)
    if disp.ndim == 3:
        disp = disp[..., 0]
    share = _implausible_share(disp)
    if share > _MAX_IMPLAUSIBLE:
        swapped = disp.byteswap()
        hint = ""
        if _implausible_share(swapped) < share / 2:
            hint = " ; the other byte order reads sensibly: the header's scale sign does not match the data"
        raise DataError(
            f"{path}: {share:.0%} of the values cannot be disparities (0 < |d| < {_TINY:g} or > {_HUGE:g}){hint}"
        )
    return disp
