"""Stereo networks: :func:`build_model` from a config, :func:`predict` for images of any size."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stereo.models.psmnet import PSMNet, count_parameters

__all__ = ["PSMNet", "build_model", "count_parameters", "predict"]

_FEATURE_KEYS = ("base_channels", "blocks", "pool_sizes", "out_channels", "attention")
_MODEL_KEYS = (
    "max_disp",
    "volume",
    "gwc_groups",
    "volume_channels",
    "hourglasses",
    "eval_chunk_rows",
    "channels_last_3d",
)


def _plain(value: Any) -> Any:
    """OmegaConf nodes -> plain Python containers (without importing omegaconf here)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value


def build_model(cfg: Mapping[str, Any]) -> nn.Module:
    """Build a network from a model config (an OmegaConf node from ``conf/model/<name>.yaml`` or a dict).

    Keys: ``name`` (``psmnet`` family), ``max_disp``, ``volume``, ``gwc_groups``, ``volume_channels``,
    ``hourglasses``, ``eval_chunk_rows`` and ``feature: {base_channels, blocks, pool_sizes,
    out_channels, attention: [{position, kind, normalization, key_channels, value_channels, heads}]}``.
    Unknown keys are an error, so a typo cannot silently fall back to a default.
    """
    cfg = _plain(cfg)
    cfg.pop("loss_weights", None)  # a training setting that travels with the model's head count
    name = cfg.pop("name", "psmnet")
    if name not in ("psmnet", "ea_psmnet", "ea_psmnet_light"):
        raise ValueError(f"unknown model name {name!r}")
    feature = cfg.pop("feature", {}) or {}
    unknown = set(cfg) - set(_MODEL_KEYS)
    unknown |= {f"feature.{k}" for k in set(feature) - set(_FEATURE_KEYS)}
    if unknown:
        raise ValueError(
            f"unknown model config keys {sorted(unknown)}; known: {_MODEL_KEYS} and feature.{_FEATURE_KEYS}"
        )
    return PSMNet(**cfg, feature=feature)


@torch.inference_mode()
def predict(model: nn.Module, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Disparity (B, H, W) in pixels for RGB images (B, 3, H, W) in [0, 1] of any size.

    Pads bottom and right by edge replication to the model's ``size_divisor``, runs the model in eval
    mode (restoring its previous mode afterwards) and crops the padding off.
    """
    if left.dim() == 3:
        return predict(model, left[None], right[None])[0]
    if left.shape != right.shape:
        raise ValueError(f"left and right differ in shape: {tuple(left.shape)} vs {tuple(right.shape)}")
    h, w = left.shape[-2:]
    k = getattr(model, "size_divisor", 16)
    ph, pw = -h % k, -w % k
    if ph or pw:
        left = F.pad(left, (0, pw, 0, ph), mode="replicate")
        right = F.pad(right, (0, pw, 0, ph), mode="replicate")
    was_training = model.training
    model.eval()
    try:
        disp = model(left, right)
    finally:
        model.train(was_training)
    return disp[:, :h, :w]
