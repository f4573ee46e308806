"""The 4-pixel pattern of PSMNet-family disparities, measured: the spectral power at a period of 4 pixels
against that of the neighbouring frequencies.

Networks that regress from a cost volume at 1/4 resolution, trilinearly upsampled, print a faint grid
with a 4-pixel period into smooth regions: the soft-argmin of interpolated costs is not linear between
the 1/4 grid points. :func:`periodic_power` measures it on any disparity maps; :func:`measure` runs a
checkpoint on a generated benchmark and reports the ratio for its predictions beside the ground truth's
(the control: a scene has no reason to prefer that period).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERIOD = 4  # pixels: the cost volume's stride
NEIGHBOURS = (3, 4, 5, 6)  # bins on each side; a Hann window leaks into +-2 bins, so those are skipped


def periodic_power(maps: Sequence[np.ndarray], axis: int = -1, period: float = PERIOD) -> float:
    """Power at ``period`` pixels along ``axis`` (-1: along rows, 0: along columns) divided by the mean
    power at the neighbouring frequencies (:data:`NEIGHBOURS` bins on each side), pooled over every
    line of every (H, W) map. Each line is Hann-windowed after removing its mean; non-finite values
    count as the line's mean. About 1 without a pattern at that period, above 1 with one."""
    total, n = None, 0
    for m in maps:
        x = np.asarray(m, np.float64)
        if x.ndim != 2:
            raise ValueError(f"disparity maps must be (H, W), got shape {x.shape}")
        x = np.moveaxis(x, axis, -1)
        finite = np.isfinite(x)
        mean = np.where(finite, x, 0).sum(-1, keepdims=True) / np.maximum(finite.sum(-1, keepdims=True), 1)
        x = np.where(finite, x, mean) - mean
        power = (np.abs(np.fft.rfft(x * np.hanning(x.shape[-1]), axis=-1)) ** 2).sum(0)
        if total is not None and power.shape != total.shape:
            raise ValueError(f"every map must have the same size, got {m.shape} after {len(total)} bins")
        total, n = (power if total is None else total + power), x.shape[-1]
    if total is None:
        raise ValueError("no disparity map to measure")
    k = round(n / period)  # the bin of that period in lines of n pixels
    bins = [k + s * d for d in NEIGHBOURS for s in (-1, 1)]
    if min(bins) < 1 or max(bins) >= len(total):
        raise ValueError(f"lines of {n} px are too short to measure a {period:g}-px period")
    return float(total[k] / total[bins].mean())


def measure(checkpoint: str | None, root: str, render_pass: str = "clean", limit: int = -1, device: str = "cpu",
            regression: str = "soft_argmin", progress: bool = True) -> dict:  # fmt: skip
    """:func:`periodic_power` along rows and columns for ``checkpoint``'s predictions (None = the shipped
    weights, with ``regression``) on the Scene Flow test split of ``root``, and for its ground truth."""
    from stereo.api import load_model
    from stereo.evaluate import predictions_on_test_split

    model = load_model(checkpoint, device=device, regression=regression)
    preds, gts = [], []
    for p, gt in predictions_on_test_split(model, root, render_pass, limit, False, "grid pattern", progress):
        preds.append(p.disparity)
        gts.append(gt)
    return {
        "checkpoint": model.checkpoint,
        "root": str(root),
        "render_pass": render_pass,
        "regression": regression,
        "pairs": len(preds),
        "period_px": PERIOD,
        "prediction": {"rows": periodic_power(preds, -1), "columns": periodic_power(preds, 0)},
        "ground_truth": {"rows": periodic_power(gts, -1), "columns": periodic_power(gts, 0)},
    }
