"""What a stereo method returns: at inference (the networks, OpenCV SGBM and ONNX Runtime alike), and what a
network's training forward returns."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch


@dataclass
class StereoOutput:
    """A batch's result in eval mode.

    ``disparity``: (B, H, W) pixels of the left view. ``confidence``: (B, H, W) in [0, 1] when asked for
    (networks of the PSMNet family), else None. ``heads``: per image, the hourglass head that answered
    (networks with heads; early exit makes it vary), else None. ``bands``: bands of rows the 3-D part
    ran in (``memory_budget_gb``; 1 = the whole frame), None for methods without one. ``adaptation``: with
    test-time adaptation, its :class:`~stereo.adapt.AdaptReport`, else None.
    """

    disparity: torch.Tensor
    confidence: torch.Tensor | None = None
    heads: list[int] | None = None
    bands: int | None = None
    adaptation: Any = None

    def crop(self, height: int, width: int) -> StereoOutput:
        """The top-left (height, width) of every map (undoing bottom/right padding)."""
        conf = None if self.confidence is None else self.confidence[:, :height, :width]
        return replace(self, disparity=self.disparity[:, :height, :width], confidence=conf)


@dataclass
class TrainingOutput:
    """A batch's result of a network's training forward (``forward_train``). ``heads``: one (B, H, W)
    disparity in pixels per output head, coarsest first; the loss weighs each (``train.loss_weights``)."""

    heads: list[torch.Tensor]


class Predictor(Protocol):
    """What :func:`stereo.models.run` calls: ``infer`` on (B, 3, H, W) RGB in [0, 1], H and W multiples
    of ``size_divisor``."""

    size_divisor: int
    max_disp: float

    def infer(self, left: torch.Tensor, right: torch.Tensor, confidence: bool = False) -> StereoOutput: ...
