"""OpenCV's semi-global block matching as a baseline method with the interface of a network.

:class:`SGBMStereo` takes the same inputs as the networks ((B, 3, H, W) RGB in [0, 1]) and returns a
full-density disparity (B, H, W) in pixels, so ``stereo-eval method=sgbm`` runs it through the same
dataset, masks, metrics and outputs. Pixels SGBM leaves invalid (occlusions, uniqueness failures,
speckles, the left border) are filled with the nearest valid disparity to their left on the same row
(the background side of an occlusion in the left view); pixels with no valid one to the left take the
nearest valid one to their right; rows with none are 0. The share of valid pixels before filling is
kept in :attr:`SGBMStereo.density`.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from stereo.errors import ConfigError, DataError
from stereo.models.output import StereoOutput


def fill_left(disp: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill invalid pixels of (H, W) ``disp`` from the nearest valid pixel to the left (else right)."""
    h, w = disp.shape
    cols = np.arange(w)[None, :].repeat(h, 0)
    left_idx = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    right_idx = np.minimum.accumulate(np.where(valid, cols, w)[:, ::-1], axis=1)[:, ::-1]
    idx = np.where(left_idx >= 0, left_idx, right_idx)
    rows = np.arange(h)[:, None]
    out = disp[rows, np.clip(idx, 0, w - 1)]
    return np.where(idx < w, out, 0.0).astype(np.float32)


class SGBMStereo(nn.Module):
    """``cv2.StereoSGBM`` (3-way mode by default) behind the network interface; no parameters.

    Args:
        max_disp: search range in pixels, rounded up to a multiple of 16 (OpenCV's requirement).
        block_size: matched block size (odd).
        p1, p2: smoothness penalties; ``None`` = OpenCV's recommended 8 and 32 x channels x block_size^2.
        uniqueness, speckle_window, speckle_range, disp12_max_diff, prefilter_cap: OpenCV's settings.
        mode: ``sgbm``, ``hh``, ``sgbm_3way`` or ``hh4``.
    """

    size_divisor = 1
    MODES = {"sgbm": cv2.STEREO_SGBM_MODE_SGBM, "hh": cv2.STEREO_SGBM_MODE_HH,
             "sgbm_3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY, "hh4": cv2.STEREO_SGBM_MODE_HH4}  # fmt: skip

    def __init__(
        self,
        max_disp: float = 192,
        block_size: int = 5,
        p1: int | None = None,
        p2: int | None = None,
        uniqueness: int = 10,
        speckle_window: int = 100,
        speckle_range: int = 2,
        disp12_max_diff: int = 1,
        prefilter_cap: int = 63,
        mode: str = "sgbm_3way",
    ) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"sgbm.mode must be one of {list(self.MODES)}, got {mode!r}")
        if block_size < 1 or block_size % 2 == 0:
            raise ValueError(f"sgbm.block_size must be odd and positive, got {block_size}")
        self.max_disp = int(np.ceil(max_disp / 16) * 16)
        cn = 3
        self.settings: dict[str, Any] = {
            "minDisparity": 0,
            "numDisparities": self.max_disp,
            "blockSize": block_size,
            "P1": p1 if p1 is not None else 8 * cn * block_size**2,
            "P2": p2 if p2 is not None else 32 * cn * block_size**2,
            "uniquenessRatio": uniqueness,
            "speckleWindowSize": speckle_window,
            "speckleRange": speckle_range,
            "disp12MaxDiff": disp12_max_diff,
            "preFilterCap": prefilter_cap,
            "mode": self.MODES[mode],
        }
        self.matcher = cv2.StereoSGBM_create(**self.settings)
        self.valid_pixels = 0
        self.total_pixels = 0

    @property
    def density(self) -> float:
        """Share of pixels SGBM found valid before filling, over every call so far."""
        return self.valid_pixels / self.total_pixels if self.total_pixels else float("nan")

    def infer(self, left: torch.Tensor, right: torch.Tensor, confidence: bool = False) -> StereoOutput:
        """The :class:`~stereo.models.output.Predictor` interface: SGBM has no confidence and no heads."""
        if confidence:
            raise ConfigError("confidence is not available with method=sgbm")
        return StereoOutput(self.forward(left, right))

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        out = []
        width = left.shape[-1]
        if width <= self.max_disp + self.settings["blockSize"]:
            raise DataError(
                f"SGBM cannot match a {width} px wide image with a search range of {self.max_disp} px (OpenCV needs "
                f"the width above the range plus the block size): set sgbm.num_disparities below "
                f"{max(16, (width - self.settings['blockSize'] - 1) // 16 * 16)} or use wider images"
            )
        for lt, rt in zip(left, right, strict=True):
            l8, r8 = ((t.permute(1, 2, 0).float().cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
                      for t in (lt, rt))  # fmt: skip
            raw = self.matcher.compute(l8, r8).astype(np.float32) / 16.0
            valid = raw >= 0
            self.valid_pixels += int(valid.sum())
            self.total_pixels += valid.size
            out.append(torch.from_numpy(fill_left(raw, valid)))
        return torch.stack(out).to(left.device)
