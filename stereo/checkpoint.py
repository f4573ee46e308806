"""Checkpoints: atomic writes, loading with clear errors, and models rebuilt from their own config."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stereo.config import to_plain
from stereo.errors import CheckpointError, MissingFileError
from stereo.io import write_bytes
from stereo.models import build_model, model_config, runtime_value
from stereo.models.fuse import fold_batchnorm


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Serialise in memory, then write atomically and fsync: a crash at any moment (``kill -9``, a full
    disk) leaves the previous file intact, and errors name the file instead of PyTorch's internals."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(path, buf.getvalue(), fsync=True)


CONVERT_HINT = "python scripts/convert_checkpoint.py checkpoint={path} out=NEW.pt"


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` restricted to tensors and plain containers (``weights_only=True``): a checkpoint is
    data, and a pickle that would import or call anything is refused before it can run code."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # not a forbidden import or call: a damaged or foreign file
            raise CheckpointError(f"{path}: cannot read checkpoint ({_first_line(e)})") from None
        first = _first_line(e)
        raise CheckpointError(
            f"{path}: refused: the file holds more than tensors and plain values and could run code when "
            f"loaded ({first}); if it is an older stereo checkpoint that you made or trust, convert it once with "
            f"`{CONVERT_HINT.format(path=path)}`"
        ) from None
    except Exception as e:  # truncated or foreign files: say which file
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from e


def _first_line(e: Exception) -> str:
    return str(e).split("WeightsUnpickler error:")[-1].strip().splitlines()[0][:160]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a stereo checkpoint (tensors and plain values only, see :func:`read_checkpoint`); a missing,
    unreadable, unsafe or foreign file raises an error naming it."""
    ckpt = read_checkpoint(path, map_location)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise CheckpointError(f"{path}: not a stereo checkpoint (expected keys 'model' and 'model_config')")
    return ckpt


def convert_legacy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> dict[str, Any]:
    """Rewrite a checkpoint written before checkpoints were plain data (NumPy's random state as a pickled
    array) so that :func:`load_checkpoint` accepts it. This unpickles ``src`` fully, which can run code:
    only for files you made or trust. Returns the converted checkpoint; ``dst`` is checked by loading it
    back the safe way."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise MissingFileError(f"checkpoint not found: {src}")
    if src.resolve() == dst.resolve():
        raise CheckpointError(f"{dst}: choose an output other than the input (the original stays as it is)")
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{src}: cannot read checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise CheckpointError(f"{src}: not a stereo checkpoint (expected keys 'model' and 'model_config')")
    rng = ckpt.get("rng")
    if isinstance(rng, dict) and isinstance(rng.get("numpy"), tuple):
        name, keys, pos, has_gauss, cached = rng["numpy"]
        rng["numpy"] = {"name": str(name), "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
                        "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}  # fmt: skip
    save_checkpoint(dst, _plain(ckpt))
    return load_checkpoint(dst)


def _plain(x: Any) -> Any:
    """NumPy scalars and arrays as Python numbers and tensors, recursively (what ``weights_only`` accepts)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x.copy())
    if isinstance(x, np.generic):
        return x.item()
    return x


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_differences(saved: Any, wanted: Any) -> list[str]:
    """Architecture fields that differ between two model configs, as ``key: saved -> wanted``."""
    a = _flatten(to_plain(model_config(saved)))
    b = _flatten(to_plain(model_config(wanted)))
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k != "name"
    ]


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """``load_state_dict`` whose failure is one message naming the file and the first mismatches."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        for what, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                parts.append(f"{len(items)} {what} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})")
        raise CheckpointError(f"{path}: weights do not fit the model built from its config: {'; '.join(parts)}")
    model.load_state_dict(state)


def init_weights(model: torch.nn.Module, checkpoint: str | os.PathLike, wanted: Any) -> list[str]:
    """Load ``checkpoint``'s weights into ``model`` (built from ``wanted``) to fine-tune from them. The
    architectures must agree, except that the model may add the sub-pixel refinement the checkpoint's
    model lacks (``model.refine``): those layers keep their initialisation, under which the refinement
    returns its input. Returns the names of the weights left at their initialisation."""
    ckpt = load_checkpoint(checkpoint)
    diff = config_differences(ckpt["model_config"], wanted)
    added_refinement = [d for d in diff if d.startswith("refine: 'none' ->")]
    other = [d for d in diff if d not in added_refinement]
    if other:
        raise CheckpointError(
            f"{checkpoint}: train.init_from needs the same architecture; the checkpoint's model config differs "
            f"from the run's ({'; '.join(other)})"
        )
    state = dict(ckpt["model"])
    kept = []
    if added_refinement:
        kept = [k for k in model.state_dict() if k.startswith("refinement.")]
        state.update({k: v for k, v in model.state_dict().items() if k in kept})
    load_weights(model, state, checkpoint)
    return kept


def load_model(
    checkpoint: str | os.PathLike, device: torch.device, runtime: Any = None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Model rebuilt from the checkpoint's own config, weights loaded, runtime settings applied, eval mode
    (with the runtime's ``fold_batchnorm``, BatchNorm folded into the convolutions: inference only)."""
    ckpt = load_checkpoint(checkpoint, "cpu")
    try:
        model = build_model(ckpt["model_config"], runtime)
    except ValueError as e:
        raise CheckpointError(f"{checkpoint}: its model config cannot be built: {e}") from e
    load_weights(model, ckpt["model"], checkpoint)
    model = model.to(device).eval()
    if runtime_value(runtime, "fold_batchnorm", False):
        model = fold_batchnorm(model)
    return model, ckpt
