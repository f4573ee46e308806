"""Checkpoints: atomic writes, loading with clear errors, and models rebuilt from their own config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from stereo.models import build_model


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, then an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training checkpoint; a missing, unreadable or foreign file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated or foreign files: say which file
        raise ValueError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise ValueError(f"{path}: not a stereo checkpoint (expected keys 'model' and 'model_config')")
    return ckpt


def load_model(checkpoint: str | os.PathLike, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Model rebuilt from the checkpoint's own config, weights loaded, in eval mode."""
    ckpt = load_checkpoint(checkpoint, "cpu")
    model = build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), ckpt
