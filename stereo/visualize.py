"""Colour maps and the one panel renderer for disparity results (TensorBoard, worst-K files, inference)."""

from __future__ import annotations

import cv2
import numpy as np


def colorize_disparity(disp: np.ndarray, vmin: float = 0.0, vmax: float | None = None) -> np.ndarray:
    """(H, W) disparity in pixels -> (H, W, 3) uint8 RGB (magma: near = bright). Non-finite -> black."""
    d = np.nan_to_num(np.asarray(disp, np.float32), nan=vmin, posinf=vmin, neginf=vmin)
    vmax = float(d.max()) if vmax is None else float(vmax)
    t = np.clip((d - vmin) / max(vmax - vmin, 1e-6), 0, 1)
    rgb = cv2.cvtColor(cv2.applyColorMap((t * 255).astype(np.uint8), cv2.COLORMAP_MAGMA), cv2.COLOR_BGR2RGB)
    rgb[~np.isfinite(np.asarray(disp))] = 0
    return rgb


ERROR_MAX_PX = 4.0


def colorize_error(err: np.ndarray, valid: np.ndarray, max_err: float = ERROR_MAX_PX) -> np.ndarray:
    """(H, W) absolute error in pixels -> (H, W, 3) uint8 RGB on the perceptually uniform viridis map
    (0 px dark blue ... >= max_err yellow); pixels without ground truth black."""
    t = np.clip(np.asarray(err, np.float32) / max_err, 0, 1)
    rgb = cv2.cvtColor(cv2.applyColorMap((t * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    rgb[~np.asarray(valid, bool)] = 0
    return rgb


def result_panels(
    left: np.ndarray, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, max_disp: float
) -> dict[str, np.ndarray]:
    """The four views of one result as (H, W, 3) uint8 RGB: ``left`` (input, (H, W, 3) floats in [0, 1]),
    ``pred`` and ``gt`` on one colour scale (0 .. the largest valid ground truth, else ``max_disp``),
    and ``error`` (|pred - gt| in pixels, invalid pixels black)."""
    valid = np.asarray(valid, bool)
    vmax = float(gt[valid].max()) if valid.any() else float(max_disp)
    return {
        "left": (np.clip(left, 0, 1) * 255).astype(np.uint8),
        "pred": colorize_disparity(pred, 0, vmax),
        "gt": colorize_disparity(np.where(valid, gt, np.nan), 0, vmax),
        "error": colorize_error(np.abs(pred - gt), valid),
    }


def stack_panels(panels: dict[str, np.ndarray]) -> np.ndarray:
    """The panels of :func:`result_panels` stacked top to bottom (left, pred, gt, error)."""
    return np.vstack([panels[k] for k in ("left", "pred", "gt", "error")])


def colour_legend(vmin: float, vmax: float, width: int, height: int = 44) -> np.ndarray:
    """(height, width, 3) uint8 RGB legend of :func:`colorize_disparity`'s scale: a magma bar from
    ``vmin`` (left) to ``vmax`` (right) pixels with labelled ends and middle, and "bright = near"."""
    width = max(int(width), 160)
    bar_h = height // 2
    t = np.linspace(0, 1, width, dtype=np.float32)[None, :].repeat(bar_h, 0)
    bar = colorize_disparity(vmin + t * (vmax - vmin), vmin, vmax)
    panel = np.full((height, width, 3), 255, np.uint8)
    panel[:bar_h] = bar
    font, scale, y = cv2.FONT_HERSHEY_SIMPLEX, 0.4, height - 6
    labels = [(f"{vmin:.1f} px", 2), (f"{(vmin + vmax) / 2:.1f}", None), (f"{vmax:.1f} px (near)", -2)]
    for text, x in labels:
        (tw, _), _ = cv2.getTextSize(text, font, scale, 1)
        x = (width - tw) // 2 if x is None else (x if x >= 0 else width - tw + x)
        cv2.putText(panel, text, (x, y), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return panel
