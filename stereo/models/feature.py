"""The 2-D feature extractor: PSMNet's residual stages and spatial pyramid pooling, with attention.

Input (B, 3, H, W) normalised images; output (B, out_channels, H/4, W/4). Attention modules can be
placed after any stage (see :data:`POSITIONS`); the paper's EA-PSMNet puts one after ``layer4``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stereo.errors import ConfigError
from stereo.models.attention import build_attention
from stereo.models.layers import convbn

# Stage after which attention may sit, with its resolution (fraction of the image) for the docs.
POSITIONS = {"firstconv": "1/2", "layer1": "1/2", "layer2": "1/4", "layer3": "1/4", "layer4": "1/4"}


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN with a residual connection (no ReLU after the sum, as in PSMNet)."""

    def __init__(self, cin: int, cout: int, stride: int, downsample: nn.Module | None, pad: int, dilation: int):
        super().__init__()
        self.conv1 = nn.Sequential(convbn(cin, cout, 3, stride, pad, dilation), nn.ReLU(inplace=True))
        self.conv2 = convbn(cout, cout, 3, 1, pad, dilation)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return out + (x if self.downsample is None else self.downsample(x))


def _stage(cin: int, cout: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    downsample = None
    if stride != 1 or cin != cout:
        downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
    layers = [BasicBlock(cin, cout, stride, downsample, 1, dilation)]
    layers += [BasicBlock(cout, cout, 1, None, 1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class FeatureExtractor(nn.Module):
    """PSMNet's ``feature_extraction`` with configurable widths and optional attention.

    Args:
        base_channels: width of firstconv/layer1 (PSMNet: 32); layer2 is 2x, layer3/layer4 4x.
        blocks: BasicBlocks in layer1..layer4 (PSMNet: 3, 16, 3, 3).
        pool_sizes: SPP average-pool sizes at 1/4 resolution (PSMNet: 64, 32, 16, 8); a pool larger
            than the feature map pools over the whole map, so small inputs work.
        out_channels: channels of the output features (PSMNet: 32).
        attention: list of dicts ``{position, kind, normalization, key_channels, value_channels, heads}``.
        downsample: 4 (PSMNet: output at 1/4) or 8 (firstconv's second convolution has stride 2 too: every
            later stage at half PSMNet's resolution, the output at 1/8; the same weights' shapes).

    Submodule names follow PSMNet's code (``firstconv``, ``layer1``..``layer4``, ``branch1``..,
    ``lastconv``); attention modules are ``attention_<position>``.
    """

    def __init__(
        self,
        base_channels: int = 32,
        blocks: Sequence[int] = (3, 16, 3, 3),
        pool_sizes: Sequence[int] = (64, 32, 16, 8),
        out_channels: int = 32,
        attention: Sequence[dict] = (),
        downsample: int = 4,
    ) -> None:
        super().__init__()
        if downsample not in (4, 8):
            raise ConfigError(f"downsample must be 4 or 8, got {downsample}")
        c = base_channels
        widths = {"firstconv": c, "layer1": c, "layer2": 2 * c, "layer3": 4 * c, "layer4": 4 * c}
        self.firstconv = nn.Sequential(
            convbn(3, c, 3, 2, 1, 1),
            nn.ReLU(inplace=True),
            convbn(c, c, 3, downsample // 4, 1, 1),  # 8: a second stride 2, so every stage runs at half the size
            nn.ReLU(inplace=True),
            convbn(c, c, 3, 1, 1, 1),
            nn.ReLU(inplace=True),
        )
        self.layer1 = _stage(c, c, blocks[0], 1, 1)
        self.layer2 = _stage(c, 2 * c, blocks[1], 2, 1)
        self.layer3 = _stage(2 * c, 4 * c, blocks[2], 1, 1)
        self.layer4 = _stage(4 * c, 4 * c, blocks[3], 1, 2)
        self.pool_sizes = tuple(int(p) for p in pool_sizes)
        branch = max(c, 1)  # PSMNet: 32 channels per pyramid level
        for i, _ in enumerate(self.pool_sizes):
            setattr(
                self,
                f"branch{i + 1}",
                nn.Sequential(convbn(4 * c, branch, 1, 1, 0, 1), nn.ReLU(inplace=True)),
            )
        concat = 2 * c + 4 * c + branch * len(self.pool_sizes)
        self.lastconv = nn.Sequential(
            convbn(concat, 4 * c, 3, 1, 1, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(4 * c, out_channels, 1, bias=False),
        )
        self.out_channels = out_channels
        self.attention_positions: list[str] = []
        for spec in attention:
            spec = dict(spec)
            pos = spec.pop("position")
            if pos not in POSITIONS:
                raise ConfigError(f"attention position must be one of {list(POSITIONS)}, got {pos!r}")
            if pos in self.attention_positions:
                raise ConfigError(f"two attention modules at position {pos!r}")
            kind = spec.pop("kind", "efficient")
            if kind == "none":
                continue
            module = build_attention(kind, widths[pos], ignore_unused=True, **spec)
            self.add_module(f"attention_{pos}", module)
            self.attention_positions.append(pos)

    def min_pooled_values(self, h4: int, w4: int) -> int:
        """Values per channel and image of the coarsest pyramid level for an (h4, w4) feature map."""
        return min((h4 // min(s, h4)) * (w4 // min(s, w4)) for s in self.pool_sizes)

    def _attend(self, x: torch.Tensor, position: str) -> torch.Tensor:
        if position in self.attention_positions:
            return getattr(self, f"attention_{position}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, out_channels, H/4, W/4)."""
        x = self._attend(self.firstconv(x), "firstconv")
        x = self._attend(self.layer1(x), "layer1")
        raw = self._attend(self.layer2(x), "layer2")
        x = self._attend(self.layer3(raw), "layer3")
        skip = self._attend(self.layer4(x), "layer4")
        h, w = skip.shape[-2:]
        pyramid = []
        for i, size in enumerate(self.pool_sizes):
            pooled = F.avg_pool2d(skip, (min(size, h), min(size, w)))
            pooled = getattr(self, f"branch{i + 1}")(pooled)
            pyramid.append(F.interpolate(pooled, (h, w), mode="bilinear", align_corners=False))
        # PSMNet's order: layer2, layer4, then the pyramid from the finest to the coarsest pool.
        return self.lastconv(torch.cat([raw, skip, *reversed(pyramid)], 1))
