"""Inference-time fusion: BatchNorm folded into the convolution before it.

In eval mode BatchNorm is a per-channel affine map ``y = (x - mean) / sqrt(var + eps) * gamma + beta``, so
``bn(conv(x))`` equals one convolution with scaled weights and a bias. Folding removes one full pass over
every activation (the 3-D ones are the largest tensors of the network). The folded model is for
inference only: it has no BatchNorm left to train.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

_CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def _fold(conv: nn.Module, bn: nn.Module) -> nn.Module:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = copy.deepcopy(conv)
    # Output channels are dim 0 of a convolution's weight and dim 1 of a transposed convolution's.
    shape = [1] * conv.weight.dim()
    out_dim = 1 if isinstance(conv, (nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
    if conv.groups != 1 and out_dim == 1:
        raise ValueError("folding into a grouped transposed convolution is not supported")
    shape[out_dim] = -1
    fused.weight.copy_(conv.weight * scale.view(shape))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every BatchNorm that directly follows a convolution inside an
    ``nn.Sequential`` folded into it (replaced by ``nn.Identity``); returns the copy and leaves ``model`` as
    it is. Raises when the model is in training mode (batch statistics cannot be folded)."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (running statistics)")
    folded = copy.deepcopy(model)
    count = 0
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, _CONVS) and isinstance(bn, _NORMS) and bn.track_running_stats and bn.affine:
                seq._modules[a] = _fold(conv, bn)
                seq._modules[b] = nn.Identity()
                count += 1
    folded.folded_batchnorms = count
    return folded.eval()
