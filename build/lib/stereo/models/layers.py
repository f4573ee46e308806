"""Convolution + BatchNorm building blocks shared by the 2-D and 3-D parts (PSMNet's submodules)."""

from __future__ import annotations

from torch import nn


def convbn(cin: int, cout: int, kernel: int, stride: int, pad: int, dilation: int) -> nn.Sequential:
    """2-D conv (no bias) + BatchNorm; dilated convs pad by their dilation to keep the size."""
    padding = dilation if dilation > 1 else pad
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, bias=False), nn.BatchNorm2d(cout)
    )


def convbn_3d(cin: int, cout: int, kernel: int, stride: int, pad: int) -> nn.Sequential:
    """3-D conv (no bias) + BatchNorm."""
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride, pad, bias=False), nn.BatchNorm3d(cout))
