"""The valid-pixel masks and disparity metrics shared by the dataset, training, evaluation and tests."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

METRIC_KEYS = ("epe", "bad05", "bad1", "bad2", "bad3", "d1")
# bad-N: the share of pixels with an error above N pixels. Every evaluation also reports the error bands
# between these bounds: sub-pixel work moves the 0.5-3 px bands, gross errors sit beyond 3 px. Each band
# is a difference of two bad-N shares (:func:`error_bands`).
BAD_THRESHOLDS = {"bad05": 0.5, "bad1": 1.0, "bad2": 2.0, "bad3": 3.0}
BAND_LABELS = ("<=0.5", "0.5-1", "1-2", "2-3", ">3")

# Valid-pixel masks in use by published evaluations: GwcNet (github.com/xy-guo/GwcNet), RAFT-Stereo
# (github.com/princeton-vl/RAFT-Stereo), PSMNet (github.com/JiaRenChang/PSMNet) evaluation code.
MASKS = {
    "positive": "0 < gt < max_disp",  # GwcNet, OpenStereo
    "absolute": "|gt| < max_disp",  # RAFT-Stereo, IGEV
    "below": "gt < max_disp",  # PSMNet
}


def valid_mask(gt: torch.Tensor, mask: str = "positive", max_disp: float = 192) -> torch.Tensor:
    """Boolean mask (same shape as ``gt``, pixels) of evaluated pixels; non-finite ground truth is never valid."""
    finite = torch.isfinite(gt)
    g = torch.where(finite, gt, torch.zeros_like(gt))
    if mask == "positive":
        return finite & (g > 0) & (g < max_disp)
    if mask == "absolute":
        return finite & (g.abs() < max_disp)
    if mask == "below":
        return finite & (g < max_disp)
    raise ValueError(f"mask must be one of {list(MASKS)}, got {mask!r}")


def depth_edges(gt: torch.Tensor, radius: int, jump: float = 1.0) -> torch.Tensor:
    """Boolean mask of the pixels within ``radius`` pixels (a square window) of a depth edge in the
    (B, H, W) ground truth ``gt`` (pixels): a pair of 4-neighbours whose finite disparities differ by more
    than ``jump`` pixels marks both of its pixels. Non-finite ground truth makes no edge. The radius of
    ``data.region=edges`` is :data:`stereo.config.EDGE_RADIUS` unless configured."""
    if gt.dim() != 3:
        raise ValueError(f"gt must be (B, H, W), got {tuple(gt.shape)}")
    g = gt.float()
    edge = torch.zeros_like(g, dtype=torch.bool)
    # A NaN or inf difference compares False, so unknown ground truth never marks an edge.
    dx = (g[:, :, 1:] - g[:, :, :-1]).abs() > jump
    dy = (g[:, 1:, :] - g[:, :-1, :]).abs() > jump
    edge[:, :, 1:] |= dx
    edge[:, :, :-1] |= dx
    edge[:, 1:, :] |= dy
    edge[:, :-1, :] |= dy
    if radius > 0:
        k = 2 * radius + 1
        edge = torch.nn.functional.max_pool2d(edge[:, None].float(), k, stride=1, padding=radius)[:, 0] > 0
    return edge


TEXTURELESS_GRADIENT2 = 4.0  # grey levels^2: Scharstein and Szeliski's (IJCV 2002) textureless threshold


def textureless(image: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: the textureless pixels of (B, 3, H, W) RGB images in [0, 1], by Scharstein and
    Szeliski's definition (the Middlebury taxonomy's evaluation, IJCV 2002): the squared horizontal
    intensity gradient (central differences of the grey image in 0-255 levels), averaged over a 3x3
    window, is below :data:`TEXTURELESS_GRADIENT2`."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"image must be (B, 3, H, W), got {tuple(image.shape)}")
    grey = image.float().mean(1, keepdim=True) * 255
    gx = F.pad(grey, (1, 1, 0, 0), mode="replicate")
    gx = (gx[..., 2:] - gx[..., :-2]) / 2
    energy = F.avg_pool2d(F.pad(gx * gx, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return energy[:, 0] < TEXTURELESS_GRADIENT2


def describe_mask(mask: str, max_disp: float) -> str:
    return f"{mask}: {MASKS[str(mask)].replace('max_disp', f'{max_disp:g}')}"


def disparity_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """Metrics over the valid pixels of (..., H, W) predictions and ground truth, in pixels.

    Returns ``epe`` (mean absolute error, px), ``bad05``/``bad1``/``bad2``/``bad3`` (% of pixels with error
    > 0.5, 1, 2, 3 px), ``d1`` (KITTI: % with error > 3 px and > 5% of the ground truth) and ``pixels`` (valid count).
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
        **{k: (err > t).float().mean().item() * 100 for k, t in BAD_THRESHOLDS.items()},
        "d1": ((err > 3) & (err > 0.05 * g.abs())).float().mean().item() * 100,
        "pixels": n,
    }


def error_bands(metrics: dict[str, float]) -> dict[str, float]:
    """The share (%) of valid pixels in each error band of :data:`BAND_LABELS` (<= 0.5, 0.5-1, 1-2, 2-3,
    > 3 px), from the bad-N shares of :func:`disparity_metrics` (or their means: bands are differences of
    them, so averaging per image or per pixel carries over). They sum to 100."""
    bad = [metrics[k] for k in BAD_THRESHOLDS]
    shares = [100 - bad[0], *(a - b for a, b in zip(bad[:-1], bad[1:], strict=True)), bad[-1]]
    return dict(zip(BAND_LABELS, shares, strict=True))


@dataclass
class Metrics:
    """The metrics of a set of pairs, averaged as the evaluation says (per image, or pooled over pixels):
    ``epe`` (px), ``bad05``/``bad1``/``bad2``/``bad3`` and ``d1`` (%, :func:`disparity_metrics`); ``pairs``
    evaluated, ``images`` among them with a valid pixel, valid ``pixels``; the ``mean_head`` that answered
    (networks with heads, else NaN) and ``seconds_per_pair``. Metrics are NaN when no pixel was valid."""

    epe: float
    bad05: float
    bad1: float
    bad2: float
    bad3: float
    d1: float
    images: int
    pixels: int
    pairs: int
    mean_head: float = math.nan
    seconds_per_pair: float = math.nan

    def values(self) -> dict[str, float]:
        """The metrics by name (:data:`METRIC_KEYS`)."""
        return {k: getattr(self, k) for k in METRIC_KEYS}

    @property
    def bands(self) -> dict[str, float]:
        """The share (%) of pixels in each error band (:func:`error_bands`)."""
        return error_bands(self.values())
