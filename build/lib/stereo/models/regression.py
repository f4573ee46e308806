"""Soft-argmin disparity regression, and a memory-frugal path for inference at full resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_argmin(cost: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) matching cost (higher = better) -> (B, H, W) disparity ``sum_d d * softmax(cost)_d``."""
    prob = F.softmax(cost, dim=1)
    disp = torch.arange(cost.shape[1], device=cost.device, dtype=prob.dtype).view(1, -1, 1, 1)
    return (prob * disp).sum(1)


def _linear_weights(n_in: int, n_out: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights of linear resizing with ``align_corners=False`` (as F.interpolate)."""
    src = ((torch.arange(n_out, device=device, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0, i1, (src - i0).float()


def _resize_axis(x: torch.Tensor, dim: int, i0, i1, w) -> torch.Tensor:
    shape = [1] * x.dim()
    shape[dim] = -1
    w = w.to(x.dtype).view(shape)
    return x.index_select(dim, i0) * (1 - w) + x.index_select(dim, i1) * w


def upsample_regress(cost: torch.Tensor, size: tuple[int, int, int], chunk_rows: int | None = None) -> torch.Tensor:
    """Trilinearly upsample a (B, 1, D', H', W') cost to ``size`` = (D, H, W) and soft-argmin it.

    Equal to ``soft_argmin(F.interpolate(cost, size, mode="trilinear").squeeze(1))``, but with
    ``chunk_rows`` the full (B, D, H, W) volume is never held. Trilinear resizing is separable, so
    each chunk of output rows is resized along H by hand (the rows it needs, with the exact
    source weights), then along D and W by ``F.interpolate`` (H left at scale 1, which is exact).
    """
    d_out, h_out, w_out = size
    if chunk_rows is None:
        up = F.interpolate(cost, size, mode="trilinear", align_corners=False)
        return soft_argmin(up.squeeze(1))
    hi0, hi1, hw = _linear_weights(cost.shape[3], h_out, cost.device)
    out = []
    for r in range(0, h_out, chunk_rows):
        sl = slice(r, r + chunk_rows)
        rows = _resize_axis(cost, 3, hi0[sl], hi1[sl], hw[sl])  # (B, 1, D', rows, W')
        up = F.interpolate(rows, (d_out, rows.shape[3], w_out), mode="trilinear", align_corners=False)
        out.append(soft_argmin(up.squeeze(1)))
    return torch.cat(out, 1)
