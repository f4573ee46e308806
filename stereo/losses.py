"""Self-supervised stereo losses: what a disparity says about the two views, without ground truth.

The left view is reconstructed by sampling the right one at x - d (Godard et al., "Unsupervised monocular
depth estimation with left-right consistency", CVPR 2017, and much work since): the photometric error is
``alpha (1 - SSIM) / 2 + (1 - alpha) |L1|`` on 3 x 3 SSIM windows with alpha = 0.85, counted only where
the left pixel is visible in the right view and its match falls inside the right image. An edge-aware
smoothness term ``|dx d| exp(-|dx I|) + |dy d| exp(-|dy I|)`` on the mean-normalised disparity keeps
flat, textureless regions from taking any disparity the photometric term allows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stereo.models.refinement import warp_right_to_left

SSIM_ALPHA = 0.85  # weight of the SSIM term in the photometric error (Monodepth's)
_C1, _C2 = 0.01**2, 0.03**2  # SSIM's stabilisers for images in [0, 1]


def ssim_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1 - SSIM) / 2 over 3 x 3 windows (reflection padding), per pixel and channel, in [0, 1]: (B, C, H, W)."""
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    var_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    var_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    cov = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
    return ((1 - ssim) / 2).clamp(0, 1)


def occluded_from_disparity(disp: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """(B, H, W) bool: left pixels hidden in the right view, judged from the left disparity alone (pixels).

    Left pixel x lands at x - d(x) in the right view. It is hidden when a pixel further right on the same
    row lands at least ``margin`` pixels further left (that surface is nearer and covers the match)."""
    w = disp.shape[-1]
    target = torch.arange(w, device=disp.device, dtype=disp.dtype) - disp  # where each pixel lands
    # The smallest landing position of the pixels strictly to the right of each pixel.
    flipped = target.flip(-1)
    running = torch.cummin(flipped, dim=-1).values.flip(-1)
    right_of = torch.cat([running[..., 1:], torch.full_like(running[..., :1], float("inf"))], dim=-1)
    return right_of < target - margin


def photometric_error(left: torch.Tensor, right: torch.Tensor, disp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-pixel photometric error (B, H, W) of the left view reconstructed from the right by ``disp``
    ((B, H, W) pixels), and the (B, H, W) mask of pixels whose match lies inside the right image."""
    warped, inside = warp_right_to_left(right, disp)
    left = left.to(warped.dtype)
    error = SSIM_ALPHA * ssim_distance(left, warped) + (1 - SSIM_ALPHA) * (left - warped).abs()
    return error.mean(1), inside[:, 0] > 0


def edge_aware_smoothness(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Mean of ``|dx d'| exp(-|dx I|) + |dy d'| exp(-|dy I|)``, d' the disparity (B, H, W) divided by its
    per-image mean, I the (B, C, H, W) image averaged over channels: disparity edges cost little where the
    image has an edge."""
    d = disp / disp.mean((1, 2), keepdim=True).clamp(min=1e-3)
    grey = image.mean(1).to(d.dtype)
    dx = (d[:, :, 1:] - d[:, :, :-1]).abs() * torch.exp(-(grey[:, :, 1:] - grey[:, :, :-1]).abs())
    dy = (d[:, 1:] - d[:, :-1]).abs() * torch.exp(-(grey[:, 1:] - grey[:, :-1]).abs())
    return dx.mean() + dy.mean()


def photometric_loss(
    left: torch.Tensor,
    right: torch.Tensor,
    disp: torch.Tensor,
    mask: torch.Tensor | None = None,
    smoothness: float = 0.01,
) -> torch.Tensor:
    """The self-supervised loss of a (B, H, W) disparity (pixels) for RGB views (B, 3, H, W) in [0, 1]: the
    mean photometric error over the pixels of ``mask`` (None = all) whose match lies inside the right image,
    plus ``smoothness`` x :func:`edge_aware_smoothness`. Pass a mask of visible pixels
    (``~occluded_from_disparity(d)``) so that occlusions do not pull the disparity."""
    error, inside = photometric_error(left, right, disp)
    keep = inside if mask is None else inside & mask
    photo = (error * keep).sum() / keep.sum().clamp(min=1)
    return photo + smoothness * edge_aware_smoothness(disp, left)
