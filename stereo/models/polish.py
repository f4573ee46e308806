"""``polish=zncc``: a classical sub-pixel step after any disparity map, with no training.

For every pixel, the right image is resampled at ``d0 + k * step`` pixels around the current disparity d0
(``|k * step| <= reach``), and each candidate is scored by the zero-mean normalised cross-correlation
(ZNCC) of a square window of the left image with the same window of the resampled right image. A parabola
through the best candidate and its two neighbours gives the sub-step offset. The pixel takes the new
disparity only where that is trustworthy: the best correlation is high, it is not at the end of the
searched range (the optimum may lie beyond it), the window has texture, and every candidate falls inside
the right image. Elsewhere the disparity stays as it was.

ZNCC is invariant to gain and offset between the views; each window is resampled along the disparity map
(one warp of the whole right image per candidate), which follows slanted surfaces better than one shift for
the whole window. Everything runs in fp32 on the device of the images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stereo.models.refinement import warp_right_to_left

LUMA = (0.299, 0.587, 0.114)


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2 radius + 1)^2 window around each pixel of (B, 1, H, W), over the pixels inside."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def zncc_curve(
    left: torch.Tensor, right: torch.Tensor, disp: torch.Tensor, offsets: torch.Tensor, radius: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ZNCC of each pixel's window at each candidate disparity ``disp + offset``.

    Args:
        left, right: (B, 1, H, W) grey images.
        disp: (B, H, W) disparity in pixels.
        offsets: (K,) offsets in pixels.
        radius: window half-width (the window is (2 radius + 1)^2 pixels).

    Returns:
        (B, K, H, W) ZNCC in [-1, 1], the (B, 1, H, W) standard deviation of the left window, and a
        (B, H, W) mask of the pixels whose every candidate lies inside the right image.
    """
    mean_l = _box(left, radius)
    var_l = (_box(left * left, radius) - mean_l * mean_l).clamp(min=0)
    scores, inside_all = [], torch.ones_like(disp, dtype=torch.bool)
    for offset in offsets.tolist():
        warped, inside = warp_right_to_left(right, disp + offset)
        inside_all &= inside[:, 0] > 0
        mean_r = _box(warped, radius)
        var_r = (_box(warped * warped, radius) - mean_r * mean_r).clamp(min=0)
        cov = _box(left * warped, radius) - mean_l * mean_r
        scores.append(cov / torch.sqrt(var_l * var_r + 1e-12))
    return torch.cat(scores, 1), var_l.sqrt(), inside_all


def zncc_polish(
    left: torch.Tensor,
    right: torch.Tensor,
    disp: torch.Tensor,
    radius: int = 3,
    reach: float = 2.0,
    step: float = 0.25,
    min_zncc: float = 0.9,
    min_std: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The polished disparity and where it changed.

    Args:
        left, right: (B, 3, H, W) RGB in [0, 1].
        disp: (B, H, W) disparity of the left view in pixels.
        radius: window half-width in pixels (3: 7 x 7 windows).
        reach, step: candidates at ``disp + k step`` for ``|k step| <= reach`` pixels.
        min_zncc: the best candidate's ZNCC needed to move a pixel.
        min_std: the left window's grey-level standard deviation (images in [0, 1]) needed to move it.

    Returns:
        (B, H, W) disparity in pixels (>= 0) and the (B, H, W) bool mask of the pixels that moved.
    """
    with torch.autocast(disp.device.type, enabled=False):
        luma = torch.tensor(LUMA, device=left.device, dtype=torch.float32).view(1, 3, 1, 1)
        grey_l = (left.float() * luma).sum(1, keepdim=True)
        grey_r = (right.float() * luma).sum(1, keepdim=True)
        d0 = disp.float()
        k = int(round(reach / step))
        offsets = torch.arange(-k, k + 1, device=d0.device, dtype=torch.float32) * step
        curve, std_l, inside = zncc_curve(grey_l, grey_r, d0, offsets, radius)
        best, idx = curve.max(1)  # (B, H, W)
        interior = (idx > 0) & (idx < 2 * k)
        i = idx.clamp(1, 2 * k - 1).unsqueeze(1)
        c_minus, c_0, c_plus = (curve.gather(1, i + j).squeeze(1) for j in (-1, 0, 1))
        denom = c_minus - 2 * c_0 + c_plus  # < 0 at a strict maximum
        sub = torch.where(denom < -1e-9, 0.5 * (c_minus - c_plus) / denom.clamp(max=-1e-9), torch.zeros_like(d0))
        delta = offsets[idx] + sub.clamp(-0.5, 0.5) * step
        moved = interior & inside & (best >= min_zncc) & (std_l[:, 0] >= min_std)
        out = torch.where(moved, (d0 + delta).clamp(min=0), d0)
    return out.to(disp.dtype), moved
