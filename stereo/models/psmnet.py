"""PSMNet (Chang & Chen, CVPR 2018) with optional attention in the feature extractor (EA-PSMNet)."""

from __future__ import annotations

import torch
from torch import nn

from stereo.models.aggregation import StackedHourglass
from stereo.models.cost_volume import concat_volume, gwc_volume
from stereo.models.feature import FeatureExtractor
from stereo.models.regression import upsample_regress

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PSMNet(nn.Module):
    """Cost-volume stereo network: features at 1/4, cost volume, stacked hourglasses, soft-argmin.

    ``forward(left, right)`` takes RGB in [0, 1], (B, 3, H, W) with H and W multiples of
    :attr:`size_divisor` (use :func:`stereo.models.predict` for any size), and normalises them itself.
    Training mode returns the list of head disparities, each (B, H, W) in pixels; eval mode returns the
    final (B, H, W) disparity, computed with only what it needs.

    Args:
        max_disp: disparity range D in pixels (a multiple of 16: the volume is D/4 deep and the
            hourglasses halve it twice).
        volume: ``"concat"`` (PSMNet) or ``"gwc"`` (group-wise correlation, ``gwc_groups`` groups).
        volume_channels: channels of the 3-D network (PSMNet: 32).
        hourglasses: number of stacked hourglasses = number of output heads (PSMNet: 3).
        feature: keyword arguments of :class:`~stereo.models.feature.FeatureExtractor`.
        eval_chunk_rows: rows per chunk of the final upsampling in eval mode (bounds peak memory);
            ``0`` upsamples the whole volume at once.
        channels_last_3d: keep the cost volume and 3-D weights channels-last (measured ~30% faster
            eval and ~14% faster training on CPU with oneDNN; same numbers up to rounding).
    """

    size_divisor = 16

    def __init__(
        self,
        max_disp: int = 192,
        volume: str = "concat",
        gwc_groups: int = 32,
        volume_channels: int = 32,
        hourglasses: int = 3,
        feature: dict | None = None,
        eval_chunk_rows: int = 64,
        channels_last_3d: bool = True,
    ) -> None:
        super().__init__()
        if max_disp <= 0 or max_disp % 16:
            raise ValueError(
                f"max_disp must be a positive multiple of 16 (the cost volume is max_disp/4 deep and the "
                f"hourglasses halve it twice), got {max_disp}; try {max(16, round(max_disp / 16) * 16)}"
            )
        if volume not in ("concat", "gwc"):
            raise ValueError(f"volume must be 'concat' or 'gwc', got {volume!r}")
        self.max_disp = max_disp
        self.volume = volume
        self.gwc_groups = gwc_groups
        self.eval_chunk_rows = eval_chunk_rows
        self.feature_extraction = FeatureExtractor(**(feature or {}))
        fc = self.feature_extraction.out_channels
        in_channels = 2 * fc if volume == "concat" else gwc_groups
        self.aggregation = StackedHourglass(in_channels, volume_channels, hourglasses)
        self.memory_format = torch.channels_last_3d if channels_last_3d else torch.contiguous_format
        if channels_last_3d:
            self.aggregation.to(memory_format=torch.channels_last_3d)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        if left.shape != right.shape or left.dim() != 4 or left.shape[1] != 3:
            raise ValueError(
                f"expected left and right of the same shape (B, 3, H, W), got {tuple(left.shape)} and "
                f"{tuple(right.shape)}"
            )
        h, w = left.shape[-2:]
        if h % self.size_divisor or w % self.size_divisor:
            raise ValueError(
                f"H and W must be multiples of {self.size_divisor}, got {h}x{w}; "
                "use stereo.models.predict() to pad any size"
            )
        # Two calls, as PSMNet: in training each view's batch gets its own BatchNorm statistics.
        fl = self.feature_extraction((left - self.mean) / self.std)
        fr = self.feature_extraction((right - self.mean) / self.std)
        d4 = self.max_disp // 4
        if self.volume == "concat":
            vol = concat_volume(fl, fr, d4, self.memory_format)
        else:
            vol = gwc_volume(fl, fr, d4, self.gwc_groups, self.memory_format)
        del fl, fr
        size = (self.max_disp, h, w)
        if self.training:
            costs = self.aggregation(vol)
            return [upsample_regress(c, size) for c in costs]
        (cost,) = self.aggregation(vol, last_only=True)
        del vol
        return upsample_regress(cost, size, chunk_rows=self.eval_chunk_rows or None)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
