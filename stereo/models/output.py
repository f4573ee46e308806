"""What a stereo method returns: at inference (the networks, OpenCV SGBM and ONNX Runtime alike), and what a
network's training forward returns when the auxiliary losses need more than the heads."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol

import torch


@dataclass
class StereoOutput:
    """A batch's result in eval mode.

    ``disparity``: (B, H, W) pixels of the left view. ``confidence``: (B, H, W) in [0, 1] when asked for
    (networks of the PSMNet family), else None. ``heads``: per image, the hourglass head that answered
    (networks with heads; early exit makes it vary), else None. ``bands``: bands of rows the 3-D part
    ran in (``memory_budget_gb``; 1 = the whole frame), None for methods without one.
    """

    disparity: torch.Tensor
    confidence: torch.Tensor | None = None
    heads: list[int] | None = None
    bands: int | None = None

    def crop(self, height: int, width: int) -> StereoOutput:
        """The top-left (height, width) of every map (undoing bottom/right padding)."""
        conf = None if self.confidence is None else self.confidence[:, :height, :width]
        return replace(self, disparity=self.disparity[:, :height, :width], confidence=conf)


class TrainingOutput(NamedTuple):
    """Training forward with extras (:meth:`stereo.models.psmnet.PSMNet.forward`), one (B, H, W) map per head
    in each list. ``heads``: the disparities (pixels), as without extras. ``local``: each head's windowed
    soft-argmin (pixels; empty unless asked for). ``divergence``: each head's per-pixel divergence (nats) from
    the target distribution (empty unless asked for)."""

    heads: list[torch.Tensor]
    local: list[torch.Tensor]
    divergence: list[torch.Tensor]


class Predictor(Protocol):
    """What :func:`stereo.models.run` calls: ``infer`` on (B, 3, H, W) RGB in [0, 1], H and W multiples
    of ``size_divisor``."""

    size_divisor: int
    max_disp: float

    def infer(self, left: torch.Tensor, right: torch.Tensor, confidence: bool = False) -> StereoOutput: ...
