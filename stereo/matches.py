"""What a pair's own sparse matches say before the network runs: is it rectified, are the views the right
way round, and which disparities does it hold.

OpenCV's SIFT features are matched between the views (mutual nearest neighbours, then Lowe's ratio
test). In a rectified pair a point sits on the same row in both views, so the vertical
offset ``dy = y_right - y_left`` of every match is about 0 and the horizontal one is the disparity
``d = x_left - x_right`` (positive, up to the network's range). A robust fit ``dy = a + b x + c y`` over
the matches separates a shift (``a``), a roll (``b``: about ``atan(b)``) and a scale difference (``c``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from stereo.errors import DataError

log = logging.getLogger(__name__)

MIN_MATCHES = 30  # fewer say little about a whole frame
MATCH_SIDE = 800  # views are matched at most this many pixels on their longer side
MAX_OFFSET_PX = 1.0  # vertical misalignment a rectified pair may show anywhere in the frame
RANGE_QUANTILES = (0.02, 0.98)  # the disparity range of a pair: robust to a few wrong matches
SCALE_MARGIN = 0.7  # scale=auto fits the 98th percentile of the matched disparities within this share of the range:
# sparse matches miss the nearest surfaces, which lie beyond it (seen: 150 px matched, 173 px predicted)


@dataclass
class MatchReport:
    """What the matches of a pair measured (pixels of the full-size views; None without enough matches)."""

    matches: int
    vertical_px: float  # the median vertical offset dy, at the frame's centre
    roll_deg: float  # the rotation between the views that the offsets show
    scale: float  # the relative scale of the right view that the offsets show (1 = none)
    worst_px: float  # the largest |dy| the fit gives anywhere in the frame, beyond the matches' noise
    disparity_low: float  # the 2nd percentile of the matched disparities
    disparity_high: float  # the 98th percentile
    negative_share: float  # the share of matches with a negative disparity

    @property
    def rectified(self) -> bool:
        return self.worst_px <= MAX_OFFSET_PX

    @property
    def swapped(self) -> bool:
        """Most disparities negative: the views look swapped (or the rig converges: disparity_offset=auto)."""
        return self.negative_share > 0.5


def _grey(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1] (or uint8) -> uint8 grey for the feature detector."""
    img = image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def match_points(left: np.ndarray, right: np.ndarray, features: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Matched points (N, 2) x, y in the left and in the right view: SIFT (sub-pixel keypoints), mutual
    nearest neighbours passing Lowe's ratio test at 0.75."""
    sift = cv2.SIFT_create(nfeatures=features)  # type: ignore[attr-defined]  # in OpenCV's main module since 4.4
    kl, dl = sift.detectAndCompute(_grey(left), None)
    kr, dr = sift.detectAndCompute(_grey(right), None)
    if dl is None or dr is None or len(kl) < 2 or len(kr) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    forward = matcher.knnMatch(dl, dr, k=2)
    backward = {m.queryIdx: m.trainIdx for m in matcher.match(dr, dl)}
    good = [m for m, n in (p for p in forward if len(p) == 2) if m.distance < 0.75 * n.distance]
    good = [m for m in good if backward.get(m.trainIdx) == m.queryIdx]
    pl = np.array([kl[m.queryIdx].pt for m in good], np.float32).reshape(-1, 2)
    pr = np.array([kr[m.trainIdx].pt for m in good], np.float32).reshape(-1, 2)
    return pl, pr


def _fit_offsets(pl: np.ndarray, dy: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``dy = a + b (x - cx) + c (y - cy)`` fitted to the matches, refitted on those within 2 px of the
    fit (wrong matches fall away); returns (a, b, c), their standard errors and the inliers' mask."""
    h, w = size
    design = np.column_stack([np.ones(len(pl)), pl[:, 0] - (w - 1) / 2, pl[:, 1] - (h - 1) / 2])
    keep = np.abs(dy - np.median(dy)) < max(3.0, 3 * float(np.median(np.abs(dy - np.median(dy)))))
    coef, err = np.zeros(3), np.full(3, np.inf)
    for _ in range(3):
        if keep.sum() < 4:
            break
        coef = np.linalg.lstsq(design[keep], dy[keep], rcond=None)[0]
        residual = dy[keep] - design[keep] @ coef
        variance = float(residual @ residual) / (keep.sum() - 3)
        err = np.sqrt(variance * np.diag(np.linalg.pinv(design[keep].T @ design[keep])))
        keep = np.abs(design @ coef - dy) < 2.0
    return coef, err, keep


def measure_pair(left: np.ndarray, right: np.ndarray, side: int = MATCH_SIDE) -> MatchReport | None:
    """The :class:`MatchReport` of a pair (H, W, 3) x2, in full-size pixels, or None with fewer than
    :data:`MIN_MATCHES` matches. Views larger than ``side`` pixels are matched at that size (a fraction of
    a second at any size); the points are scaled back."""
    h, w = left.shape[:2]
    factor = min(1.0, side / max(h, w))
    if factor < 1:
        left, right = (cv2.resize(v, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) for v in (left, right))
    pl, pr = (p if factor == 1 else (p + 0.5) / factor - 0.5 for p in match_points(left, right))  # full-size px
    if len(pl) < MIN_MATCHES:
        return None
    dy = pr[:, 1] - pl[:, 1]
    coef, err, keep = _fit_offsets(pl, dy, (h, w))
    if keep.sum() < MIN_MATCHES:
        return None
    # What the matches show beyond their own noise: each term less two standard errors (0 when within them),
    # so a few dozen matches of a rectified pair do not add up to a misalignment.
    a, b, c = coef
    sa, sb, sc = np.sign(coef) * np.maximum(np.abs(coef) - 2 * err, 0)
    corners = [abs(sa + sb * sx * (w - 1) / 2 + sc * sy * (h - 1) / 2) for sx in (-1, 1) for sy in (-1, 1)]
    disp = (pl[:, 0] - pr[:, 0])[keep]
    low, high = (float(np.quantile(disp, q)) for q in RANGE_QUANTILES)
    return MatchReport(matches=int(keep.sum()), vertical_px=float(a), roll_deg=math.degrees(math.atan(b)),
                       scale=float(1 + c), worst_px=float(max(corners)), disparity_low=low, disparity_high=high,
                       negative_share=float((disp < 0).mean()))  # fmt: skip


def check_message(report: MatchReport | None, name: str) -> str | None:
    """One line for a pair that does not look rectified or looks swapped, None for one that looks right."""
    if report is None:
        return f"{name}: too few feature matches (< {MIN_MATCHES}) to check the rectification; predicting anyway"
    if not report.rectified:
        return (f"{name}: does not look rectified: rows differ by up to {report.worst_px:.1f} px between the views "
                f"(shift {report.vertical_px:+.1f} px, roll {report.roll_deg:+.2f} deg, scale {report.scale:.3f}; "
                f"{report.matches} matches); rectify it first (calib=<calibration> with rectify=calib), or "
                "rectification_check=off to predict as it is")  # fmt: skip
    if report.swapped:
        return (f"{name}: {report.negative_share:.0%} of the matched disparities are negative: the views look swapped "
                "(left= the left camera's image), or the rig converges: disparity_offset=auto")  # fmt: skip
    return None


def run_check(report: MatchReport | None, name: str, mode: str) -> None:
    """``rectification_check``: ``warn`` logs :func:`check_message`, ``error`` raises it (but never for too
    few matches: then the pair is still predicted), ``off`` does nothing."""
    if mode == "off":
        return
    message = check_message(report, name)
    if message is None:
        return
    if mode == "error" and report is not None:
        raise DataError(message + " (rectification_check=error)")
    log.warning(message)


def offset_for(report: MatchReport | None, margin: float = 4.0) -> int:
    """``disparity_offset=auto``: the shift (pixels, >= 0) that makes the pair's smallest matched disparity
    at least ``margin``: 0 when it is already."""
    if report is None or report.disparity_low >= margin:
        return 0
    return int(math.ceil(margin - report.disparity_low))


def scale_for(report: MatchReport | None, max_disp: float, offset: int = 0) -> float:
    """``scale=auto``: the largest scale in (0, 1] (two decimals, rounded down) at which the pair's largest
    matched disparity (after ``offset``) fits :data:`SCALE_MARGIN` of the network's range."""
    if report is None:
        return 1.0
    high = report.disparity_high + offset
    if high <= SCALE_MARGIN * max_disp:
        return 1.0
    return max(0.05, math.floor(100 * SCALE_MARGIN * max_disp / high) / 100)


def shift_right_view(right: np.ndarray, offset: int) -> np.ndarray:
    """The right view moved ``offset`` pixels to the left (its right edge repeated), so every disparity grows
    by ``offset``: ``x_left - (x_right - offset)``."""
    if offset <= 0:
        return right
    if offset >= right.shape[1]:
        raise DataError(f"disparity_offset={offset} px is not smaller than the image width {right.shape[1]} px")
    return np.concatenate([right[:, offset:], np.repeat(right[:, -1:], offset, axis=1)], axis=1)
