"""Non-occluded pixels from a pair's two ground-truth disparity maps (Scene Flow ships both views').

A left pixel (y, x) with disparity d matches x - d in the right view. It is visible there when the
match lies inside the right image and the right view's own disparity at the match agrees with d within
``tolerance`` pixels; otherwise something nearer covers it in the right view (an occlusion) or it left
the frame. The right view's disparity is read at the two pixels around x - d and either may agree, so
a sub-pixel match beside a depth edge still counts as visible.
"""

from __future__ import annotations

import numpy as np

NONOCC_TOLERANCE = 1.0  # pixels: how far the two views' disparities may differ at a visible match


def nonoccluded(left_disp: np.ndarray, right_disp: np.ndarray, tolerance: float = NONOCC_TOLERANCE) -> np.ndarray:
    """(H, W) bool: the left pixels whose match is visible in the right view.

    Args:
        left_disp: (H, W) left-view disparity in pixels (x_right = x_left - d); NaN/inf = unknown.
        right_disp: (H, W) right-view disparity in pixels (x_left = x_right + d), same size.
        tolerance: the largest difference in pixels between the two views' disparities at a visible match.

    Pixels with an unknown or negative disparity, or a match outside the right image, are False.
    """
    if left_disp.shape != right_disp.shape or left_disp.ndim != 2:
        raise ValueError(f"expected two (H, W) maps of one size, got {left_disp.shape} and {right_disp.shape}")
    h, w = left_disp.shape
    d = np.nan_to_num(left_disp.astype(np.float64), nan=-1.0, posinf=-1.0, neginf=-1.0)
    xr = np.arange(w, dtype=np.float64)[None, :] - d
    inside = (d >= 0) & (xr >= 0) & (xr <= w - 1)
    x0 = np.clip(np.floor(xr), 0, w - 1).astype(np.int64)
    x1 = np.clip(x0 + 1, 0, w - 1)
    rows = np.arange(h)[:, None]
    with np.errstate(invalid="ignore"):  # unknown right disparities compare False
        agree = (np.abs(right_disp[rows, x0] - d) <= tolerance) | (np.abs(right_disp[rows, x1] - d) <= tolerance)
    return inside & agree
