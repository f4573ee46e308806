"""Disparity metrics shared by training, evaluation and tests."""

from __future__ import annotations

import torch

METRIC_KEYS = ("epe", "bad1", "bad2", "bad3", "d1")


def disparity_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """Metrics over the valid pixels of (..., H, W) predictions and ground truth, in pixels.

    Returns ``epe`` (mean absolute error, px), ``bad1``/``bad2``/``bad3`` (% of pixels with error > 1, 2,
    3 px), ``d1`` (KITTI: % with error > 3 px and > 5% of the ground truth) and ``pixels`` (valid count).
    With no valid pixel the metrics are NaN (and ``pixels`` 0), never a misleading zero.
    """
    valid = valid.bool() & torch.isfinite(gt)
    err = (pred.float() - gt.float()).abs()[valid]
    n = int(err.numel())
    if n == 0:
        return {**{k: float("nan") for k in METRIC_KEYS}, "pixels": 0}
    g = gt.float()[valid]
    return {
        "epe": err.mean().item(),
        "bad1": (err > 1).float().mean().item() * 100,
        "bad2": (err > 2).float().mean().item() * 100,
        "bad3": (err > 3).float().mean().item() * 100,
        "d1": ((err > 3) & (err > 0.05 * g.abs())).float().mean().item() * 100,
        "pixels": n,
    }
