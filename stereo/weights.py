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

from stereo.checkpoint import load_checkpoint
from stereo.errors import ConfigError
from stereo.io import write_bytes

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = "ea_psmnet_light_gen3.pt"
log = logging.getLogger(__name__)


def shipped_checkpoint(name: str = DEFAULT_WEIGHTS) -> Path | None:
    """The shipped weights file, or None when this installation has none."""
    path = WEIGHTS_DIR / name
    return path if path.is_file() else None


def resolve_checkpoint(checkpoint: str | None) -> str:
    """``checkpoint`` when given, else the shipped weights; a clear error when there are neither."""
    if checkpoint:
        return str(checkpoint)
    shipped = shipped_checkpoint()
    if shipped is None:
        raise ConfigError(
            f"invalid config: checkpoint is required (add checkpoint=...): this installation ships no weights "
            f"({WEIGHTS_DIR / DEFAULT_WEIGHTS} does not exist)"
        )
    log.info("no checkpoint= given: using the weights shipped with the package, %s", shipped)
    return str(shipped)


SLICE = {"benchmark": "generated-v1", "part": "272x480", "pairs": 4, "max_disp": 96.0}


def slice_metrics(checkpoint: str | os.PathLike, work_dir: str | os.PathLike, device: str = "cpu") -> dict[str, Any]:
    """EPE and bad-N of ``checkpoint`` on the first :data:`SLICE` pairs of generated-v1 (both passes, mask
    0 < gt < 96, per-image averaging, through ``stereo-eval``'s code); the slice is generated in ``work_dir``."""
    from stereo.config import load_config
    from stereo.data.benchmarks import build_slice
    from stereo.evaluate import evaluate
    from stereo.metrics import METRIC_KEYS

    root = build_slice(SLICE["benchmark"], SLICE["part"], SLICE["pairs"], Path(work_dir) / "slice")
    result: dict[str, Any] = dict(SLICE)
    for p in ("clean", "final"):
        over = [f"checkpoint={checkpoint}", f"data.root={root}", f"data.render_pass={p}",
                f"max_disp={SLICE['max_disp']}", f"device={device}"]  # fmt: skip
        r = evaluate(load_config("eval", over), Path(work_dir) / f"eval_{p}", show_progress=False, tensorboard=False)
        result[p] = {k: r[k] for k in METRIC_KEYS}
    return result


def export_weights(checkpoint: str | os.PathLike, out: str | os.PathLike, card: dict[str, Any]) -> int:
    """Write the inference part of a training checkpoint (plus a model card) to ``out``; returns bytes."""
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
