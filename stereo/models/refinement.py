"""Sub-pixel refinement: a light full-resolution residual on the regressed disparity, guided by the
left image (the idea of StereoNet's and iResNet's refinement; our own layers).

The regression of PSMNet-family networks works on a 1/4-resolution cost volume, upsampled: edges come
out soft and sub-pixel precision is limited. :class:`ResidualRefinement` looks at the left image and the
disparity at full resolution through a stack of dilated 3x3 convolutions (receptive field 63 px) and
adds a residual. Its last convolution starts at zero, so an untrained refinement returns its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REFINE_KINDS = ("none", "residual")


class ResidualRefinement(nn.Module):
    """``forward(disp, image)``: disparity (B, H, W) in pixels and the normalised left image
    (B, 3, H, W) -> refined disparity (B, H, W), never negative.

    Args:
        channels: width of the convolutions (16: about 16 GFLOP per 544x960 frame).
        dilations: one dilated 3x3 convolution with a residual connection per entry.
        scale: disparities are divided by this before entering the network, so the layers see values of
            order 1 for any range; the residual comes out in pixels.
    """

    def __init__(self, channels: int = 16, dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1), scale: float = 64.0):
        super().__init__()
        self.scale = float(scale)
        self.stem = nn.Conv2d(4, channels, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in dilations)
        self.head = nn.Conv2d(channels, 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = torch.cat([image.to(disp.dtype), disp.unsqueeze(1) / self.scale], dim=1)
        x = F.leaky_relu(self.stem(x), 0.2)
        for block in self.blocks:
            x = x + F.leaky_relu(block(x), 0.2)
        return F.relu(disp + self.head(x).squeeze(1))
