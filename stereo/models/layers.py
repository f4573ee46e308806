"""Convolution + BatchNorm building blocks shared by the 2-D and 3-D parts (PSMNet's submodules)."""

from __future__ import annotations

import torch
from torch import nn


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs oneDNN's kernel for float32 on the CPU at every size. PyTorch sends a float32
    3-D convolution whose N x C x D x H is at most 20480 (a 1/8-resolution cost volume: 1 x 16 x 16 x 68) to
    its reference kernel, 7.7x slower there on 2 cores (189 against 25 ms, 2026-12-06); the result is the same
    up to rounding, gradients included. Elsewhere (CUDA, bf16 autocast, ONNX tracing) the usual path."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dtype == weight.dtype == torch.float32
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
            and torch.backends.mkldnn.is_available()
            and torch.backends.mkldnn.enabled
            and not torch.is_autocast_enabled("cpu")
            and not torch.jit.is_tracing()
        ):
            return torch.mkldnn_convolution(x, weight, bias, self.padding, self.stride, self.dilation, self.groups)
        return super()._conv_forward(x, weight, bias)


def convbn(cin: int, cout: int, kernel: int, stride: int, pad: int, dilation: int) -> nn.Sequential:
    """2-D conv (no bias) + BatchNorm; dilated convs pad by their dilation to keep the size."""
    padding = dilation if dilation > 1 else pad
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, bias=False), nn.BatchNorm2d(cout)
    )


def convbn_3d(cin: int, cout: int, kernel: int, stride: int, pad: int) -> nn.Sequential:
    """3-D conv (no bias) + BatchNorm."""
    return nn.Sequential(Conv3d(cin, cout, kernel, stride, pad, bias=False), nn.BatchNorm3d(cout))
