"""The Python API: load a model, predict disparities (and a confidence) from images in any common form.

    >>> import stereo
    >>> model = stereo.load_model()                       # the shipped weights, on the best device
    >>> result = model.predict("left.png", "right.png")    # doctest: +SKIP
    >>> result.disparity.shape, result.confidence.shape    # doctest: +SKIP
    ((375, 1242), (375, 1242))

``left``/``right`` may be file paths, numpy arrays (``uint8``/``uint16`` grey, RGB or RGBA, or float in
[0, 1]), PIL images (any mode), or tensors ``(3, H, W)``/``(B, 3, H, W)`` (float in [0, 1] or ``uint8``).
Every kind gets the same checks: finite, in range, at least :data:`MIN_SIDE` px a side. Disparities are in
pixels of the left view (``x_right = x_left - d``). ``stereo-infer`` runs every pair through
:meth:`StereoModel.predict`, so both give the same numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stereo.adapt import ADAPT_STEPS, AdaptReport, check_adaptable
from stereo.calib import Calibration, point_cloud
from stereo.data.images import MAX_PIXELS, read_rgb
from stereo.device import autocast, check_precision, resolve_device
from stereo.errors import ConfigError, DataError
from stereo.models.output import StereoOutput

MIN_SIDE = 16  # pixels after ``scale``: below this the network sees less than one feature at 1/16


@dataclass
class Prediction:
    """What :meth:`StereoModel.predict` returns.

    ``disparity``: pixels, (H, W) float32 numpy for path/array/PIL input, a tensor ((H, W) or (B, H, W),
    on the input's device) for tensor input. ``confidence``: same shape and kind, in [0, 1] (the
    regression's probability mass within 1.5 px of its estimate), or None when not asked for.
    ``image``: the left image as float RGB (H, W, 3) in [0, 1] (non-tensor input), for colouring points.
    ``heads``: per image, the hourglass head that answered (networks with heads; see ``early_exit``).
    ``adaptation``: with ``adapt=True``, what the adaptation did (:class:`~stereo.adapt.AdaptReport`).
    ``rectification``: with ``calibration=``, the :class:`~stereo.rectification.Rectification` applied:
    everything here is in its rectified left frame (``rectification.calibration()`` for depth).
    """

    disparity: np.ndarray | torch.Tensor
    confidence: np.ndarray | torch.Tensor | None = None
    image: np.ndarray | None = None
    heads: list[int] | None = None
    adaptation: AdaptReport | None = None
    rectification: Any = None  # with predict(calibration=...): the Rectification the views went through

    def depth(self, calibration: Calibration) -> np.ndarray:
        """Depth (H, W) in the calibration's baseline unit; inf where disparity + doffs <= 0."""
        return _calibration(calibration).depth(_numpy(self.disparity))

    def point_cloud(
        self, calibration: Calibration, min_confidence: float = 0.0, max_depth: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3) float32 points and (N, 3) uint8 colours of the pixels with a finite depth (see
        :func:`stereo.calib.point_cloud`), without those whose confidence is below ``min_confidence``."""
        calibration = _calibration(calibration)
        min_confidence = _number(min_confidence, "min_confidence", lo=0.0, hi=1.0)
        if max_depth is not None:
            max_depth = _number(max_depth, "max_depth", lo=0.0, open_lo=True)
        disp = _numpy(self.disparity)
        if disp.ndim != 2:
            raise DataError(f"point_cloud needs one image's disparity (H, W), got shape {disp.shape}")
        if min_confidence > 0:
            if self.confidence is None:
                raise ConfigError("min_confidence needs a confidence: predict(..., confidence=True)")
            disp = np.where(_numpy(self.confidence) >= min_confidence, disp, 0.0)  # 0 = no point
        rgb = self.image if self.image is not None else np.full((*disp.shape, 3), 0.5, np.float32)
        return point_cloud(disp, rgb, calibration, max_depth)


def scaled_size(height: int, width: int, scale: float, what: str | None = None) -> tuple[int, int]:
    """(height, width) of an image resized by ``scale`` for the network; an error naming ``what``
    (default: the image's size) when a side falls below :data:`MIN_SIDE` pixels: a :class:`DataError`
    when the image itself is that small (no scale can help), else a :class:`ConfigError` about ``scale``."""
    what = what or f"a {width}x{height} image"
    if min(height, width) < MIN_SIDE:
        raise DataError(f"{what} is too small: the network needs at least {MIN_SIDE} px a side")
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if min(size) < MIN_SIDE:
        least = MIN_SIDE / min(height, width)
        raise ConfigError(f"scale={scale:g} makes {what} {size[1]}x{size[0]} px; the network needs at least "
                          f"{MIN_SIDE} px a side: use scale >= {least:.3g}")  # fmt: skip
    return size


def _number(value: Any, name: str, lo: float | None = None, hi: float | None = None, open_lo: bool = False) -> float:
    """``value`` as a float, or a :class:`ConfigError` naming ``name`` (a string, bool, NaN or out of range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name}={value!r}: expected a number, got {type(value).__name__}")
    v = float(value)
    bad = not np.isfinite(v) or (lo is not None and (v <= lo if open_lo else v < lo)) or (hi is not None and v > hi)
    if bad:
        low, high = "-inf" if lo is None else f"{lo:g}", "inf" if hi is None else f"{hi:g}"
        bounds = f"{'(' if open_lo else '['}{low}, {high}]"
        raise ConfigError(f"{name}={value!r}: must be a finite number in {bounds}")
    return v


def _calibration(calibration: Any) -> Calibration:
    """A :class:`Calibration` made in code gets the checks a file's gets: focal and baseline > 0, finite."""
    if not isinstance(calibration, Calibration):
        raise ConfigError(f"calibration: expected a stereo.calib.Calibration, got {type(calibration).__name__}")
    for key in ("f", "baseline"):
        _number(getattr(calibration, key), f"calibration.{key}", lo=0.0, open_lo=True)
    for key in ("cx", "cy", "doffs"):
        if getattr(calibration, key) is not None:
            _number(getattr(calibration, key), f"calibration.{key}")
    return calibration


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def as_image(x: Any, name: str) -> np.ndarray:
    """A path, PIL image or numpy array as float32 RGB (H, W, 3) in [0, 1]; errors name ``name``."""
    if isinstance(x, (str, os.PathLike)):
        return read_rgb(Path(x))
    if type(x).__module__.startswith("PIL."):
        from PIL import ImageOps

        x = ImageOps.exif_transpose(x)  # what a viewer shows, as for paths
        if x.mode.startswith("I"):  # 16-bit greys (I;16*, or I as PNG decoders give them): as uint16
            mode, x = x.mode, np.asarray(x)
            if x.size and (x.min() < 0 or x.max() > 65535):
                raise DataError(f"{name}: PIL mode {mode} image with values {x.min()}..{x.max()}; expected 0..65535")
            x = x.astype(np.uint16)
        elif x.mode == "F":  # float greys: the float rule below (values in [0, 1])
            x = np.asarray(x, dtype=np.float32)
        else:  # palette (P), 1-bit, L, LA, RGB, RGBA, CMYK, YCbCr, ...: converted by PIL
            x = np.asarray(x.convert("RGBA" if "A" in x.getbands() or "transparency" in x.info else "RGB"))
    if not isinstance(x, np.ndarray):
        raise DataError(f"{name}: expected a file path, numpy array, PIL image or tensor, got {type(x).__name__}")
    if x.size == 0:
        raise DataError(f"{name}: empty image of shape {x.shape}")
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[..., 0]
    if not (x.ndim == 2 or (x.ndim == 3 and x.shape[2] in (3, 4))):
        raise DataError(f"{name}: expected an (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA array, got shape {x.shape}")
    if x.dtype == np.uint8:
        img = x.astype(np.float32) / 255
    elif x.dtype == np.uint16:
        img = x.astype(np.float32) / 65535
    elif x.dtype in (np.float16, np.float32, np.float64):
        img = x.astype(np.float32)
        _check_unit_range(torch.from_numpy(img), name)
    else:
        raise DataError(f"{name}: unsupported dtype {x.dtype} (expected uint8, uint16, or float in [0, 1])")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def _check_unit_range(x: torch.Tensor, name: str) -> None:
    """Float images hold finite values in [0, 1]: a NaN pixel would make the whole map NaN, and 0-255
    values give disparities far beyond the network's range."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise DataError(f"{name}: {bad} pixel value(s) are NaN or infinite; images must hold finite values in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise DataError(f"{name}: float images must hold values in [0, 1], got {lo:g}..{hi:g} "
                        "(divide 0-255 images by 255, or pass uint8)")  # fmt: skip


def _check_same_shape(left: torch.Size | tuple[int, ...], right: torch.Size | tuple[int, ...]) -> None:
    if left != right:
        raise DataError(f"left and right differ in size: left is {left[-1]}x{left[-2]}, right is "
                        f"{right[-1]}x{right[-2]}")  # fmt: skip


def _as_tensor(x: torch.Tensor, name: str) -> torch.Tensor:
    """A (3, H, W)/(B, 3, H, W) tensor as float32 in [0, 1], with the checks arrays get: float (any
    precision) in [0, 1] or uint8 (/255), finite, not empty."""
    if x.dim() not in (3, 4) or x.shape[-3] != 3:
        raise DataError(f"{name}: expected a (3, H, W) or (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise DataError(f"{name}: empty tensor of shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.float() / 255
    if not x.is_floating_point():
        raise DataError(f"{name}: expected a float tensor in [0, 1] or uint8, got {x.dtype}")
    x = x.float()
    _check_unit_range(x, name)
    return x


class StereoModel:
    """A network ready to predict: weights loaded, runtime settings applied, on its device.

    Use :func:`load_model` to make one. ``network`` is the ``torch.nn.Module`` (or an ONNX Runtime
    session wrapper); ``max_disp`` its range in pixels; ``checkpoint`` where its weights came from.
    """

    def __init__(self, network: Any, device: torch.device, precision: str = "fp32", checkpoint: str | None = None):
        precision = check_precision(device, precision)  # before any work; auto becomes what it means here
        self.network, self.device, self.precision, self.checkpoint = network, device, precision, checkpoint
        self.max_disp = float(network.max_disp)

    def __repr__(self) -> str:
        return (f"StereoModel({type(self.network).__name__}, max_disp={self.max_disp:g}, device={self.device}, "
                f"precision={self.precision}, checkpoint={self.checkpoint})")  # fmt: skip

    def __call__(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        """Disparity (B, H, W) for (B, 3, H, W) tensors in [0, 1]: the same as ``predict(...).disparity``."""
        return self.predict(left, right, confidence=False).disparity

    @torch.inference_mode()
    def predict(
        self,
        left: Any,
        right: Any,
        scale: float = 1.0,
        confidence: bool = True,
        adapt: bool = False,
        adapt_steps: int = ADAPT_STEPS,
        calibration: Any = None,
    ) -> Prediction:
        """Disparity (and confidence) of a rectified pair, or of a raw one with its ``calibration``.

        Args:
            left, right: the left and right camera's images, same size: paths, numpy arrays, PIL images
                or float tensors in [0, 1] (see the module docstring).
            scale: run the network on images resized by this factor (0 < scale <= 1) and bring the
                disparity back to full size (times 1/scale): for disparities beyond ``max_disp``.
            confidence: also return the per-pixel confidence (networks of the PSMNet family).
            adapt: first adapt the network's refinement to this pair, without ground truth
                (:mod:`stereo.adapt`: ``adapt_steps`` steps on a copy; the model itself stays unchanged,
                and the unadapted answer stands when the photometric loss does not fall).
            calibration: the raw cameras' calibration (a :class:`~stereo.rectification.RawCalibration`, or
                a file as ``calib=`` takes: OpenCV YAML/XML/JSON, Kalibr, ``left.yaml,right.yaml`` ROS): the
                views are undistorted and rectified first; the result is in the rectified left frame, and
                ``Prediction.rectification`` says how (``.calibration()`` for depth). Not for tensors.

        Returns:
            :class:`Prediction`; numpy arrays for non-tensor input, tensors for tensor input.
        """
        scale = _number(scale, "scale", lo=0.0, hi=1.0, open_lo=True)
        if not isinstance(confidence, bool):
            raise ConfigError(f"confidence={confidence!r}: expected True or False")
        steps = self.adaptation_steps(adapt, adapt_steps)
        tensors = isinstance(left, torch.Tensor)
        if tensors != isinstance(right, torch.Tensor):
            raise DataError("left and right must both be tensors, or both images (paths, arrays, PIL)")
        if tensors and calibration is not None:
            raise ConfigError("calibration= rectifies images (paths, arrays, PIL), not tensors")
        if tensors:
            if left.shape == right.shape and left.dim() in (3, 4) and left.numel():  # before any float copy
                self._check_size(1 if left.dim() == 3 else left.shape[0], *left.shape[-2:], scale)
            lt, rt = _as_tensor(left, "left"), _as_tensor(right, "right")
            _check_same_shape(lt.shape, rt.shape)
            single = lt.dim() == 3
            lt, rt = (lt[None], rt[None]) if single else (lt, rt)
            where = left.device
        else:
            limg, rimg = as_image(left, "left"), as_image(right, "right")
            if calibration is not None:
                from stereo.rectification import rectify

                limg, rimg, rectification = rectify(limg, rimg, calibration)
            lt, rt = (torch.from_numpy(i.transpose(2, 0, 1).copy())[None] for i in (limg, rimg))
            single, image, where = True, limg, None
            _check_same_shape(lt.shape, rt.shape)
            self._check_size(1, *lt.shape[-2:], scale)
        disp, conf, out = self._run(lt.to(self.device), rt.to(self.device), scale, confidence, steps)
        if single:
            disp, conf = disp[0], None if conf is None else conf[0]
        if tensors:
            return Prediction(disp.to(where), None if conf is None else conf.to(where), None, out.heads, out.adaptation)
        return Prediction(_numpy(disp), None if conf is None else _numpy(conf), image, out.heads, out.adaptation,
                          rectification if calibration is not None else None)  # fmt: skip

    def adaptation_steps(self, adapt: Any, steps: Any) -> int:
        """The adaptation steps that ``predict(adapt=..., adapt_steps=...)`` runs (0 = none); a
        :class:`ConfigError` before any work when the values are not usable or this model cannot adapt."""
        if not isinstance(adapt, bool):
            raise ConfigError(f"adapt={adapt!r}: expected True or False")
        if not adapt:
            return 0
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"adapt_steps={steps!r}: expected a whole number >= 1")
        if not isinstance(self.network, torch.nn.Module):
            raise ConfigError("adapt=true runs on the PyTorch backend (backend=torch), not on an exported network")
        check_adaptable(self.network)
        return steps

    def _check_size(self, batch: int, height: int, width: int, scale: float) -> None:
        """Refuse, before any work, images below :data:`MIN_SIDE` px a side after ``scale``, above the pixel
        limit of every input path, or whose estimated peak exceeds the network's ``memory_budget_gb``
        (bands of rows bound the 3-D part, not the full-resolution rest)."""
        h, w = scaled_size(height, width, scale, f"left ({width}x{height})")
        if height * width > MAX_PIXELS:
            raise DataError(f"left: {width}x{height} is larger than {MAX_PIXELS:,} pixels (the limit of every input "
                            "path)")  # fmt: skip
        budget = getattr(getattr(self.network, "runtime", None), "memory_budget_gb", None)
        estimate = getattr(self.network, "peak_bytes", None)
        if budget is None or estimate is None:
            return
        need = estimate(batch, h, w) / 2**30
        if need > budget:
            fits = scale * (budget / need) ** 0.5 * 0.95
            raise ConfigError(
                f"a {batch}x{width}x{height} prediction at scale={scale:g} needs about {need:.1f} GB, above "
                f"memory_budget_gb={budget:g} (rows of the 3-D part run in bands, the full-resolution part "
                f"cannot): use scale={fits:.2g} or less, or raise memory_budget_gb (null = no limit)"
            )

    def _run(self, lt: torch.Tensor, rt: torch.Tensor, scale: float, confidence: bool, adapt_steps: int = 0):
        h, w = lt.shape[-2:]
        if scale != 1:
            size = scaled_size(h, w, scale)
            lt = F.interpolate(lt, size, mode="bilinear", align_corners=False, antialias=True)
            rt = F.interpolate(rt, size, mode="bilinear", align_corners=False, antialias=True)
        with autocast(self.device, self.precision):
            out = self._network(lt, rt, confidence, adapt_steps)
        disp = out.disparity.float()
        conf = None if out.confidence is None else out.confidence.float()
        if scale != 1:
            factor = w / disp.shape[-1]  # disparities grow with the image width
            disp = F.interpolate(disp[:, None], (h, w), mode="bilinear", align_corners=False)[:, 0] * factor
            if conf is not None:
                conf = F.interpolate(conf[:, None], (h, w), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
        return disp, conf, out

    def _network(self, lt: torch.Tensor, rt: torch.Tensor, confidence: bool, adapt_steps: int = 0) -> StereoOutput:
        from stereo.models import run

        return run(self.network, lt, rt, confidence, adapt_steps)


def load_model(
    checkpoint: str | os.PathLike | None = None, device: str = "auto", precision: str = "fp32", **runtime: Any
) -> StereoModel:
    """A :class:`StereoModel` from a checkpoint (``None`` = the weights shipped with the package).

    Args:
        checkpoint: a stereo checkpoint (training ``last.pt``/``best.pt`` or exported weights; ``"shipped"``
            = the weights shipped with the package, as ``None``).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        precision: ``fp32``, ``bf16``, ``fp16`` (CUDA) or ``auto`` (bf16 where the device has it natively,
            else fp32: :func:`stereo.device.resolve_precision`).
        runtime: the runtime settings of ``stereo-infer`` (``memory_budget_gb``, ``fold_batchnorm``,
            ``early_exit``, ``exit_threshold``, ``exit_head``, ``eval_chunk_rows``, ``channels_last_3d``).

    Example:
        >>> model = load_model(device="cpu", memory_budget_gb=4)
        >>> model.max_disp
        128.0
    """
    from stereo.checkpoint import load_network
    from stereo.config import runtime_config
    from stereo.weights import resolve_checkpoint

    settings = runtime_config(None, **runtime)
    dev = resolve_device(device)
    path = resolve_checkpoint(None if checkpoint is None else str(checkpoint))
    network, _ = load_network(path, dev, settings)
    return StereoModel(network, dev, precision, path)


def untrained_model(name: str, device: str = "auto", precision: str = "fp32", **runtime: Any) -> StereoModel:
    """A :class:`StereoModel` of architecture ``conf/model/<name>.yaml`` with fresh weights (for training
    or experiments; its disparities mean nothing until trained)."""
    from stereo.config import load_config, runtime_config
    from stereo.models import build_model

    dev = resolve_device(device)
    network = build_model(load_config(f"model/{name}"), runtime_config(None, **runtime)).to(dev).eval()
    return StereoModel(network, dev, precision, None)
