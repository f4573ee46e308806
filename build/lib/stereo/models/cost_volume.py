"""Cost volumes at 1/4 resolution: concatenation (PSMNet) and group-wise correlation (GwcNet)."""

from __future__ import annotations

import torch


def _zeros(left: torch.Tensor, shape: tuple, memory_format: torch.memory_format) -> torch.Tensor:
    return torch.empty(shape, dtype=left.dtype, device=left.device, memory_format=memory_format).zero_()


def concat_volume(
    left: torch.Tensor, right: torch.Tensor, max_disp: int, memory_format=torch.contiguous_format
) -> torch.Tensor:
    """(B, C, H, W) x2 -> (B, 2C, max_disp, H, W): left features beside right features shifted by d.

    Entries where the shift leaves the image are zero, as in PSMNet. ``memory_format`` may be
    ``torch.channels_last_3d`` (faster 3-D convolutions on CPU).
    """
    b, c, h, w = left.shape
    volume = _zeros(left, (b, 2 * c, max_disp, h, w), memory_format)
    for d in range(max_disp):
        if d >= w:
            break
        volume[:, :c, d, :, d:] = left[:, :, :, d:]
        volume[:, c:, d, :, d:] = right[:, :, :, : w - d]
    return volume


def gwc_volume(
    left: torch.Tensor, right: torch.Tensor, max_disp: int, groups: int, memory_format=torch.contiguous_format
) -> torch.Tensor:
    """(B, C, H, W) x2 -> (B, groups, max_disp, H, W): mean correlation within each channel group."""
    b, c, h, w = left.shape
    if c % groups:
        raise ValueError(f"group-wise correlation: groups={groups} must divide the feature channels {c}")
    volume = _zeros(left, (b, groups, max_disp, h, w), memory_format)
    for d in range(min(max_disp, w)):
        prod = left[:, :, :, d:] * right[:, :, :, : w - d]
        volume[:, :, d, :, d:] = prod.reshape(b, groups, c // groups, h, w - d).mean(2)
    return volume
