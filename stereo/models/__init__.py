"""Stereo networks: :func:`build_model` from a config, :func:`run` for images of any size."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from stereo.config import ModelConfig, RuntimeConfig, check_config, runtime_config, to_plain
from stereo.errors import ConfigError
from stereo.models.output import Predictor, StereoOutput
from stereo.models.psmnet import PSMNet, count_parameters

__all__ = [
    "ARCHITECTURES",
    "PSMNet",
    "Predictor",
    "StereoOutput",
    "build_model",
    "count_parameters",
    "model_config",
    "run",
]

# The registry behind ``model.arch``: a class built from a ModelConfig.
ARCHITECTURES: dict[str, type[nn.Module]] = {"psmnet": PSMNet}

# Keys that older checkpoints stored in their model config; they are runtime or training settings now.
_LEGACY_KEYS = ("eval_chunk_rows", "channels_last_3d", "loss_weights")
# Refinement kinds that no shipped weights used, and the last commit that has them: checkpoints with them
# load with stereo at that commit (MODEL_CARD.md, History, has what each measured).
_REMOVED_REFINE, _LAST_WITH_THEM = ("residual", "warp"), "41829a3"


def model_config(cfg: Mapping[str, Any] | ModelConfig) -> ModelConfig:
    """A typed :class:`~stereo.config.ModelConfig` from a config node, a dict (e.g. a checkpoint's
    ``model_config``) or a ModelConfig. Unknown keys, wrong types and values out of the command line's
    ranges raise :class:`ConfigError`."""
    if isinstance(cfg, ModelConfig):
        return cfg
    plain = dict(to_plain(cfg))
    for k in _LEGACY_KEYS:
        plain.pop(k, None)
    if str(plain.get("refine")) in _REMOVED_REFINE:
        raise ConfigError(
            f"model.refine={plain['refine']} was removed (no shipped weights used it; MODEL_CARD.md History has its "
            f"results). Weights with it load with stereo at commit {_LAST_WITH_THEM} (git checkout {_LAST_WITH_THEM})"
        )
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), plain)
    except OmegaConfBaseException as e:
        known = [f.name for f in ModelConfig.__dataclass_fields__.values()]
        raise ConfigError(
            f"unknown model config keys or bad value: {str(e).splitlines()[0]} (known: {known})"
        ) from None
    check_config(merged, ModelConfig)  # the same ranges as on the command line: a file's config is input too
    return OmegaConf.to_object(merged)


def build_model(cfg: Mapping[str, Any] | ModelConfig, runtime: RuntimeConfig | Mapping | None = None) -> nn.Module:
    """Build a network from a model config (``conf/model/<name>.yaml``, a checkpoint's ``model_config``
    or a :class:`ModelConfig`), with the runtime settings of ``runtime`` (see :func:`configure_runtime`;
    None = the defaults)."""
    mc = model_config(cfg)
    if mc.arch not in ARCHITECTURES:
        raise ConfigError(f"model.arch={mc.arch}: unknown; expected one of {', '.join(sorted(ARCHITECTURES))}")
    model = ARCHITECTURES[mc.arch](mc)
    if runtime is not None:
        configure_runtime(model, runtime)
    return model


def configure_runtime(model: nn.Module, runtime: RuntimeConfig | Mapping | None) -> nn.Module:
    """Apply runtime settings that do not change the weights (memory layout, chunking, early exit): a
    :class:`RuntimeConfig` or anything :func:`~stereo.config.runtime_config` reads; unset keys take their
    schema defaults."""
    if hasattr(model, "set_runtime"):
        model.set_runtime(runtime_config(runtime))
    return model


@torch.inference_mode()
def run(
    model: Any, left: torch.Tensor, right: torch.Tensor, confidence: bool = False, adapt_steps: int = 0
) -> StereoOutput:
    """A method's :class:`~stereo.models.output.StereoOutput` for RGB images (B, 3, H, W) in [0, 1] of
    any size: a network, SGBM or ONNX Runtime (``infer``, :class:`~stereo.models.output.Predictor`), or
    any module returning a (B, H, W) disparity. Pads bottom and right by edge replication to the method's
    ``size_divisor``, runs it in eval mode (restoring the mode afterwards) and crops the padding off.
    ``adapt_steps`` > 0: a network's refinement first adapts to the pair (:func:`stereo.adapt.adapt_infer`;
    its loss leaves the padding out)."""
    h, w = left.shape[-2:]
    k = getattr(model, "size_divisor", 16)
    ph, pw = -h % k, -w % k
    if ph or pw:
        left = F.pad(left, (0, pw, 0, ph), mode="replicate")
        right = F.pad(right, (0, pw, 0, ph), mode="replicate")
    module = isinstance(model, nn.Module)
    was_training = module and model.training
    if module:
        model.eval()
    try:
        if adapt_steps:
            from stereo.adapt import adapt_infer

            valid = torch.zeros(left.shape[0], *left.shape[-2:], dtype=torch.bool, device=left.device)
            valid[:, :h, :w] = True
            out = adapt_infer(model, left, right, confidence, steps=adapt_steps, valid=valid)
        elif hasattr(model, "infer"):
            out = model.infer(left, right, confidence)
        elif confidence:
            raise ValueError(f"{type(model).__name__} gives no confidence")
        else:
            out = StereoOutput(model(left, right))
    finally:
        if module:
            model.train(was_training)
    return out.crop(h, w)
