"""The training/evaluation dataset over discovered stereo pairs, with geometry-preserving augmentation.

Images come out as float RGB in [0, 1]; ImageNet normalisation happens inside the model, so it cannot
be applied twice. Every transform keeps rows aligned between the views and leaves the left-view
disparity valid: a crop at the same window in both views, photometric changes, and an eraser patch on
the right view only (it acts like an occluder, the left ground truth stays right).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from stereo.data.images import read_rgb
from stereo.data.pfm import read_pfm
from stereo.data.sceneflow import Sample


@dataclass
class Augmentation:
    """Photometric and occlusion augmentation parameters (all applied after cropping).

    Brightness, contrast and saturation factors are drawn from ``[1 - x, 1 + x]``, gamma from
    ``gamma``. With probability ``asymmetric_prob`` the right view gets its own draw.
    """

    photometric_prob: float = 1.0
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    gamma: tuple[float, float] = (0.8, 1.2)
    asymmetric_prob: float = 0.2
    eraser_prob: float = 0.5
    eraser_max_patches: int = 2
    eraser_size: tuple[float, float] = (0.1, 0.2)  # patch side as a fraction of the crop's width


def _photometric(img: np.ndarray, params: tuple[float, float, float, float]) -> np.ndarray:
    brightness, contrast, saturation, gamma = params
    img = img * brightness
    gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img = (img - gray.mean()) * contrast + gray.mean()
    gray = img @ np.array([0.299, 0.587, 0.114], np.float32)
    img = gray[..., None] + (img - gray[..., None]) * saturation
    return np.clip(img, 0.0, 1.0) ** gamma


class StereoDataset(Dataset):
    """Stereo pairs with left-view disparity as tensors.

    Each item is a dict: ``left``, ``right`` float32 (3, H, W) in [0, 1]; ``disparity`` float32 (H, W)
    in pixels (0 where not finite); ``valid`` bool (H, W) = finite and 0 < d < ``max_disp``;
    ``index`` int.

    Args:
        samples: pairs from :func:`stereo.data.sceneflow.discover` (or any objects with ``.left``,
            ``.right``, ``.disparity`` paths).
        max_disp: upper bound (exclusive) of valid disparities, pixels.
        crop_size: (height, width) random crop for training; ``None`` returns full frames.
        augment: an :class:`Augmentation`, or ``None`` for no photometric/eraser augmentation.
        seed: base seed. Item randomness depends on (seed, epoch, index) only, so results do not
            depend on the number of loader workers; call :meth:`set_epoch` each epoch.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        max_disp: float = 192,
        crop_size: Sequence[int] | None = None,
        augment: Augmentation | None = None,
        seed: int = 0,
    ) -> None:
        if len(samples) == 0:
            raise ValueError("StereoDataset needs at least one sample")
        self.samples = list(samples)
        self.max_disp = float(max_disp)
        self.crop_size = tuple(int(c) for c in crop_size) if crop_size else None
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw arrays of one pair: left, right (H, W, 3) float32 in [0, 1], disparity (H, W)."""
        s = self.samples[index]
        left, right = read_rgb(s.left), read_rgb(s.right)
        disp = read_pfm(s.disparity)
        if disp.ndim == 3:
            disp = disp[..., 0]
        if left.shape != right.shape:
            raise ValueError(
                f"left and right images differ in size: {s.left} is {left.shape[1]}x{left.shape[0]}, "
                f"{s.right} is {right.shape[1]}x{right.shape[0]}"
            )
        if disp.shape != left.shape[:2]:
            raise ValueError(
                f"disparity {s.disparity} is {disp.shape[1]}x{disp.shape[0]} but its image {s.left} is "
                f"{left.shape[1]}x{left.shape[0]}"
            )
        return left, right, disp

    def __getitem__(self, index: int) -> dict:
        left, right, disp = self.load(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.crop_size is not None:
            left, right, disp = self._crop(rng, index, left, right, disp)
        if self.augment is not None:
            left, right = self._augment(rng, left, right)
        finite = np.isfinite(disp)
        disp = np.where(finite, disp, 0.0).astype(np.float32)
        valid = finite & (disp > 0) & (disp < self.max_disp)
        return {
            "left": torch.from_numpy(np.ascontiguousarray(left.transpose(2, 0, 1))),
            "right": torch.from_numpy(np.ascontiguousarray(right.transpose(2, 0, 1))),
            "disparity": torch.from_numpy(disp),
            "valid": torch.from_numpy(valid),
            "index": index,
        }

    def _crop(self, rng, index, left, right, disp):
        ch, cw = self.crop_size
        h, w = disp.shape
        if ch > h or cw > w:
            raise ValueError(f"crop {ch}x{cw} is larger than the frame {h}x{w} of {self.samples[index].left}")
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        # The same window in both views: no vertical shift, horizontal disparities unchanged.
        win = (slice(y, y + ch), slice(x, x + cw))
        return left[win], right[win], disp[win]

    def _augment(self, rng, left, right):
        a = self.augment

        def draw():
            return (
                rng.uniform(1 - a.brightness, 1 + a.brightness),
                rng.uniform(1 - a.contrast, 1 + a.contrast),
                rng.uniform(1 - a.saturation, 1 + a.saturation),
                rng.uniform(*a.gamma),
            )

        if rng.random() < a.photometric_prob:
            p_left = draw()
            p_right = draw() if rng.random() < a.asymmetric_prob else p_left
            left = _photometric(left, p_left).astype(np.float32)
            right = _photometric(right, p_right).astype(np.float32)
        if rng.random() < a.eraser_prob:
            right = right.copy()
            h, w = right.shape[:2]
            mean = right.reshape(-1, 3).mean(0)
            for _ in range(int(rng.integers(1, a.eraser_max_patches + 1))):
                ph = max(1, int(rng.uniform(*a.eraser_size) * w))
                pw = max(1, int(rng.uniform(*a.eraser_size) * w))
                y, x = int(rng.integers(0, max(h - ph, 0) + 1)), int(rng.integers(0, max(w - pw, 0) + 1))
                right[y : y + ph, x : x + pw] = mean
        return left, right
