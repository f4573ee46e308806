"""The stereo methods the tools can run, by name: a trained network, OpenCV SGBM, an ONNX Runtime session.

Each builder takes the app's config and the device and returns a :class:`~stereo.models.output.Predictor`
(run it with :func:`stereo.models.run`) and what is known of where it came from (``checkpoint``: the
file, ``step``: its training step). ``stereo-eval method=`` and ``stereo-infer backend=`` pick from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch

from stereo.config import EvalAppConfig, InferAppConfig
from stereo.errors import ConfigError
from stereo.models.output import Predictor


def _network(cfg: EvalAppConfig | InferAppConfig, device: torch.device) -> tuple[Predictor, dict[str, Any]]:
    """``cfg.checkpoint`` (None: the shipped weights) rebuilt from its own config, ``cfg``'s runtime settings."""
    from stereo.checkpoint import load_network
    from stereo.weights import resolve_checkpoint

    checkpoint = resolve_checkpoint(cfg.checkpoint)
    model, ckpt = load_network(checkpoint, device, cfg)
    return cast(Predictor, model), {"checkpoint": checkpoint, "step": ckpt.get("step")}


def _sgbm(cfg: EvalAppConfig, device: torch.device) -> tuple[Predictor, dict[str, Any]]:
    """OpenCV's StereoSGBM with ``cfg.sgbm``; its search range defaults to ``cfg.max_disp`` or 192 px."""
    from stereo.sgbm import SGBMStereo

    s = cfg.sgbm
    search = s.num_disparities or cfg.max_disp or 192
    model = SGBMStereo(search, s.block_size, s.p1, s.p2, s.uniqueness, s.speckle_window, s.speckle_range,
                       s.disp12_max_diff, s.prefilter_cap, s.mode)  # fmt: skip
    return cast(Predictor, model), {"checkpoint": None, "step": None}


def _onnxruntime(cfg: InferAppConfig, device: torch.device) -> tuple[Predictor, dict[str, Any]]:
    """An ``.onnx`` file from ``stereo-export`` (``cfg.onnx``) in an ONNX Runtime session on the CPU."""
    from stereo.export import OnnxStereo

    if not cfg.onnx:
        raise ConfigError("backend=onnxruntime needs onnx=<file.onnx> (made by stereo-export)")
    return cast(Predictor, OnnxStereo(cfg.onnx)), {"checkpoint": str(cfg.onnx), "step": None}


METHODS: dict[str, Callable[[Any, torch.device], tuple[Predictor, dict[str, Any]]]] = {
    "checkpoint": _network,
    "sgbm": _sgbm,
    "onnxruntime": _onnxruntime,
}


def build_method(name: str, cfg: Any, device: torch.device) -> tuple[Predictor, dict[str, Any]]:
    """The method ``name`` (a key of :data:`METHODS`) built from ``cfg``; an unknown name lists the known."""
    if str(name) not in METHODS:
        raise ConfigError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")
    return METHODS[str(name)](cfg, device)
