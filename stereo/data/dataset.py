"""The training/evaluation dataset over discovered stereo pairs, with geometry-preserving augmentation.

Images come out as float RGB in [0, 1]; ImageNet normalisation happens inside the model, so it cannot
be applied twice. Every transform keeps rows aligned between the views and leaves the left-view
disparity valid: a crop at the same window in both views, photometric changes, and an eraser patch on
the right view only (it acts like an occluder, the left ground truth stays right).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from stereo.config import AugmentConfig
from stereo.data.disparity import read_disparity
from stereo.data.images import check_same_size, imread_checked, read_rgb, to_tensor
from stereo.data.occlusion import nonoccluded
from stereo.data.registry import Sample
from stereo.errors import ConfigError, DataError
from stereo.metrics import depth_edges, textureless, valid_mask

# The augmentation parameters are the config schema itself (``data.augment.*``).
Augmentation = AugmentConfig


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
    in pixels (0 where not finite); ``valid`` bool (H, W) from :func:`stereo.metrics.valid_mask`
    (``mask``, default ``positive``: finite and 0 < d < ``max_disp``); ``index`` int.

    Args:
        samples: pairs from :func:`stereo.data.sceneflow.discover` (or any objects with ``.left``,
            ``.right``, ``.disparity`` paths).
        max_disp: upper bound (exclusive) of valid disparities, pixels.
        mask: which pixels are valid (:data:`stereo.metrics.MASKS`).
        crop_size: (height, width) random crop for training; ``None`` returns full frames.
        augment: an :class:`Augmentation` (``data.augment``), or ``None`` / ``enabled=False`` for none.
        seed: base seed. Item randomness depends on (seed, epoch, index) only, so results do not
            depend on the number of loader workers; call :meth:`set_epoch` each epoch.
        edge_radius: when given, ``valid`` keeps only the pixels within this many pixels of a depth edge
            of the (full-frame) ground truth (:func:`stereo.metrics.depth_edges`; ``data.region=edges``).
        texture: ``lowtexture`` or ``textured``: ``valid`` keeps only the pixels that the full-frame left
            image makes textureless, or not (:func:`stereo.metrics.textureless`; ``data.region``).
        priors: one ``.npy`` (H, W) disparity in pixels per sample, cropped with it into ``prior``
            (``train.cache_frozen``: the frozen network's answer, :mod:`stereo.frozen_answers`).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        max_disp: float = 192,
        crop_size: Sequence[int] | None = None,
        augment: Augmentation | None = None,
        seed: int = 0,
        mask: str = "positive",
        edge_radius: int | None = None,
        texture: str | None = None,
        priors: Sequence[str | os.PathLike] | None = None,
    ) -> None:
        if len(samples) == 0:
            raise DataError("StereoDataset needs at least one sample")
        self.samples = list(samples)
        self.max_disp = float(max_disp)
        if self.max_disp <= 0:
            raise ConfigError(f"max_disp must be > 0 pixels, got {max_disp}")
        self.mask = str(mask)
        self.edge_radius = None if edge_radius is None else int(edge_radius)
        if texture not in (None, "textured", "lowtexture"):
            raise ConfigError(f"texture must be textured, lowtexture or None, got {texture!r}")
        self.texture = texture
        self.crop_size = tuple(int(c) for c in crop_size) if crop_size else None
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        self.epoch = 0
        self.priors = priors

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw arrays of one pair: left, right (H, W, 3) float32 in [0, 1], disparity (H, W)."""
        s = self.samples[index]
        left, right = read_rgb(s.left), read_rgb(s.right)
        check_same_size(left, right, s.left, s.right)
        if s.disparity is None:  # unlabeled (train.loss=photometric): no pixel has ground truth
            return left, right, np.full(left.shape[:2], np.nan, np.float32)
        disp = read_disparity(s.disparity)
        if disp.shape != left.shape[:2]:
            raise DataError(
                f"disparity {s.disparity} is {disp.shape[1]}x{disp.shape[0]} but its image {s.left} is "
                f"{left.shape[1]}x{left.shape[0]}"
            )
        return left, right, disp

    def __getitem__(self, index: int) -> dict:
        left, right, disp = self.load(index)
        region = self._region(index, disp)
        if self.edge_radius is not None:  # from the full frame, so a crop does not invent or hide edges
            near = depth_edges(torch.from_numpy(np.asarray(disp, np.float32))[None], self.edge_radius)[0].numpy()
            region = near if region is None else region & near
        if self.texture is not None:  # from the full frame before augmentation, as edges
            flat = textureless(to_tensor(left)[None])[0].numpy()
            keep = flat if self.texture == "lowtexture" else ~flat
            region = keep if region is None else region & keep
        prior = self._prior(index, disp.shape)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.crop_size is not None:
            win = self._crop_window(rng, index, disp.shape)
            left, right, disp = left[win], right[win], disp[win]
            region = region[win] if region is not None else None
            prior = prior[win] if prior is not None else None
        raw_left, raw_right = left, right
        if self.augment is not None:
            left, right = self._augment(rng, left, right)
        disp_t = torch.from_numpy(np.ascontiguousarray(disp, dtype=np.float32))
        valid = valid_mask(disp_t, self.mask, self.max_disp)
        if region is not None:
            valid &= torch.from_numpy(np.ascontiguousarray(region))
        item = {
            "left": to_tensor(left),
            "right": to_tensor(right),
            "disparity": torch.nan_to_num(disp_t, nan=0.0, posinf=0.0, neginf=0.0),
            "valid": valid,
            "index": index,
        }
        if self.augment is not None:  # the views before photometric augmentation: display, photometric loss
            item["left_raw"], item["right_raw"] = to_tensor(raw_left), to_tensor(raw_right)
        if prior is not None:
            item["prior"] = torch.from_numpy(np.ascontiguousarray(prior, dtype=np.float32))
        return item

    def _prior(self, index: int, shape: tuple[int, int]) -> np.ndarray | None:
        """The pair's (H, W) disparity from ``priors`` (train.cache_frozen: the frozen network's answer), or None."""
        if self.priors is None:
            return None
        path = self.priors[index]
        prior = np.load(path)
        if prior.shape != tuple(shape):
            raise DataError(f"{path} is {prior.shape[1]}x{prior.shape[0]}, its pair {self.samples[index].left} is "
                            f"{shape[1]}x{shape[0]}; remove the folder to compute it again")  # fmt: skip
        return prior

    def _region(self, index: int, disp: np.ndarray) -> np.ndarray | None:
        """The sample's evaluation region (H, W) bool: the pixels visible in the right view (its mask image:
        255 in 8 bits, > 0 in 16 bits; or where its right-view disparity confirms the left one,
        :func:`stereo.data.occlusion.nonoccluded`), or the others when the sample says ``occluded``; None =
        everywhere."""
        sample, (h, w) = self.samples[index], disp.shape
        path = getattr(sample, "mask", None)
        if path is not None:
            m = imread_checked(path, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH, "mask image")
            if m.shape != (h, w):
                raise DataError(f"mask {path} is {m.shape[1]}x{m.shape[0]}, its disparity is {w}x{h}")
            visible = m > 0 if m.dtype == np.uint16 else m == 255
        else:
            path = getattr(sample, "right_disparity", None)
            if path is None:
                return None
            right = read_disparity(path)
            if right.shape != (h, w):
                raise DataError(
                    f"right-view disparity {path} is {right.shape[1]}x{right.shape[0]}, the left is {w}x{h}"
                )
            visible = nonoccluded(disp, right)
        return ~visible if getattr(sample, "occluded", False) else visible

    def _crop_window(self, rng, index: int, shape: tuple[int, int]) -> tuple[slice, slice]:
        ch, cw = self.crop_size
        h, w = shape
        if ch > h or cw > w:
            raise DataError(
                f"crop {ch}x{cw} is larger than the frame {h}x{w} of {self.samples[index].left} (data.crop_size)"
            )
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        # The same window in both views: no vertical shift, horizontal disparities unchanged.
        return slice(y, y + ch), slice(x, x + cw)

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
