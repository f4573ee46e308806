"""Weights that ship with the package, and the export that makes them from a training checkpoint.

``stereo-infer`` and ``stereo-eval`` use :func:`shipped_checkpoint` when no ``checkpoint=`` is given.
A shipped file is a checkpoint without the training state: ``model`` (float32 weights),
``model_config``, ``step`` and ``card`` (training data, recipe, steps, wall time, hardware, metrics).
The card holds the metrics of the weights on a small slice of ``generated-v1``
(:func:`slice_metrics`), so a test can tell a wrong file or a broken loader from the right one.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import torch

from stereo.checkpoint import config_differences, load_checkpoint
from stereo.errors import ConfigError
from stereo.io import refuse_package_path, write_bytes

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = "ea_psmnet_light_gen3n.pt"
log = logging.getLogger(__name__)


def shipped_checkpoint(name: str = DEFAULT_WEIGHTS) -> Path | None:
    """The shipped weights file, or None when this installation has none."""
    path = WEIGHTS_DIR / name
    return path if path.is_file() else None


SHIPPED = "shipped"  # checkpoint=shipped, train.init_from=shipped: the weights that ship with the package


def resolve_checkpoint(checkpoint: str | None) -> str:
    """``checkpoint`` when given, else (None, empty or ``shipped``) the shipped weights; a clear error when
    there are none."""
    if checkpoint and str(checkpoint) != SHIPPED:
        return str(checkpoint)
    shipped = shipped_checkpoint()
    if shipped is None:
        raise ConfigError(
            f"invalid config: checkpoint is required (add checkpoint=...): this installation ships no weights "
            f"({WEIGHTS_DIR / DEFAULT_WEIGHTS} does not exist)"
        )
    log.info("%s: using the weights shipped with the package, %s",
             "checkpoint=shipped" if checkpoint else "no checkpoint= given", shipped)  # fmt: skip
    return str(shipped)


SLICE: dict[str, Any] = {"benchmark": "generated-v1", "part": "272x480", "pairs": 4, "max_disp": 96.0}


def export_weights(checkpoint: str | os.PathLike, out: str | os.PathLike, card: dict[str, Any]) -> int:
    """Write the inference part of a training checkpoint (plus a model card) to ``out``; returns bytes."""
    refuse_package_path(out, "out")
    ckpt = load_checkpoint(checkpoint)
    slim = {
        "model": {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()},
        "model_config": ckpt["model_config"],
        "step": ckpt.get("step"),
        "card": card,
    }
    buf = io.BytesIO()
    torch.save(slim, buf)
    write_bytes(out, buf.getvalue(), fsync=True)
    return buf.getbuffer().nbytes


def average_weights(checkpoints: list[str | os.PathLike], weights: list[float] | None = None) -> dict[str, Any]:
    """A checkpoint whose floating-point tensors are the weighted mean of those of ``checkpoints`` (runs of
    one architecture, e.g. a fine-tuned model and its start: a "model soup", Wortsman et al. 2022). BatchNorm
    running statistics are averaged too; integer tensors (``num_batches_tracked``) come from the last file.
    ``weights`` (default equal) must be positive and are normalised to sum to 1. The result holds ``model``,
    ``model_config``, the last file's ``config`` and ``step``, and ``averaged`` (the sources and weights)."""
    if len(checkpoints) < 2:
        raise ConfigError(f"averaging needs at least two checkpoints, got {len(checkpoints)}")
    weights = [1.0] * len(checkpoints) if weights is None else [float(w) for w in weights]
    if len(weights) != len(checkpoints) or min(weights) <= 0:
        raise ConfigError(f"weights must be {len(checkpoints)} positive numbers, got {weights}")
    total = sum(weights)
    weights = [w / total for w in weights]
    loaded = [load_checkpoint(c) for c in checkpoints]
    first = loaded[0]
    for path, ck in zip(checkpoints[1:], loaded[1:], strict=True):
        diff = config_differences(first["model_config"], ck["model_config"])
        if diff:
            raise ConfigError(f"{path}: another architecture than {checkpoints[0]} ({'; '.join(diff)})")
        if ck["model"].keys() != first["model"].keys():
            extra = sorted(set(ck["model"]) ^ set(first["model"]))
            raise ConfigError(f"{path}: its tensors differ from those of {checkpoints[0]} (first: {extra[0]})")
    model = {}
    for k, last in loaded[-1]["model"].items():
        if last.is_floating_point():
            mean = sum(w * ck["model"][k].double() for w, ck in zip(weights, loaded, strict=True))
            model[k] = mean.to(last.dtype)
        else:
            model[k] = last
    return {
        "model": model,
        "model_config": loaded[-1]["model_config"],
        "config": loaded[-1].get("config"),
        "step": loaded[-1].get("step"),
        "averaged": {"checkpoints": [str(c) for c in checkpoints], "weights": weights},
    }
