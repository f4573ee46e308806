"""Checkpoints: atomic writes, loading with clear errors, and models rebuilt from their own config."""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stereo.config import flatten, runtime_config, to_plain
from stereo.errors import CheckpointError, ConfigError, MissingFileError
from stereo.io import refuse_package_path, write_bytes
from stereo.models import build_model, configure_runtime, model_config
from stereo.models.fuse import fold_batchnorm

log = logging.getLogger(__name__)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Serialise in memory, then write atomically and fsync: a crash at any moment (``kill -9``, a full
    disk) leaves the previous file intact, and errors name the file instead of PyTorch's internals."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_bytes(path, buf.getvalue(), fsync=True)


CONVERT_HINT = (
    "python scripts/convert_checkpoint.py checkpoint={path} out=NEW.pt trust_code=true (full unpickling runs "
    "whatever code the file holds, with your rights: only for a file you made or trust)"
)


class UnsafeCheckpointError(CheckpointError):
    """The file's pickle would import or call something beyond plain data: refused before it ran."""


def _numpy_globals() -> list[Any]:
    """What pickled NumPy scalars and arrays need (an older checkpoint's random state and metrics), under
    the names NumPy 1 and 2 write. Nothing here imports or calls anything else: an array's items and a
    scalar's dtype go through the same restricted unpickler."""
    core = getattr(np, "_core", None) or np.core
    reconstruct, scalar = core.multiarray._reconstruct, core.multiarray.scalar
    safe: list[Any] = [np.ndarray, np.dtype, reconstruct, scalar]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        safe += [(reconstruct, f"{mod}._reconstruct"), (scalar, f"{mod}.scalar")]
    safe += [type(np.dtype(t)) for t in "?bBhHiIlLqQefdgFDGUSO"]  # numpy.dtypes.*DType (NumPy >= 1.25)
    return safe


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` restricted to tensors, plain containers and NumPy scalars and arrays
    (``weights_only=True`` with those allowed): a checkpoint is data, and a pickle that would import or call
    anything else is refused before it can run code."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "global" not in str(e).lower():  # not a forbidden import or call: a damaged or foreign file
            raise CheckpointError(f"{path}: cannot read checkpoint ({_first_line(e)})") from None
        first = _first_line(e)
        raise UnsafeCheckpointError(
            f"{path}: refused: the file holds more than tensors and plain values and could run code when "
            f"loaded ({first}); nothing in it was run. If it is a checkpoint that you made or trust, convert it "
            f"once with `{CONVERT_HINT.format(path=path)}`"
        ) from None
    except Exception as e:  # truncated or foreign files: say which file
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from e
    return _as_data(ckpt, path)


def _as_data(ckpt: Any, path: Path) -> Any:
    """An unpickled checkpoint as plain data: stored interpolations refused, NumPy's random state (files
    written before checkpoints were data) and other NumPy values as tensors and Python numbers."""
    _refuse_interpolations(ckpt, path)
    rng = ckpt.get("rng") if isinstance(ckpt, dict) else None
    if isinstance(rng, dict) and isinstance(rng.get("numpy"), tuple):
        rng["numpy"] = numpy_rng_as_data(rng["numpy"])
    return _plain(ckpt)


def _refuse_interpolations(x: Any, path: Path, key: str = "") -> None:
    """Configs inside a file are data: an OmegaConf interpolation (``${oc.env:NAME}``, ``${now:...}``) in
    any stored value is refused, never resolved (it could read the environment into an export's metadata
    or build another network). Saved configs are resolved before they are written, so real files hold none."""
    if isinstance(x, dict):
        for k, v in x.items():
            _refuse_interpolations(v, path, f"{key}.{k}" if key else str(k))
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            _refuse_interpolations(v, path, f"{key}.{i}")
    elif isinstance(x, str) and "${" in x:
        raise CheckpointError(
            f"{path}: refused: {key}={x!r} is an interpolation; configs stored in a checkpoint are data and "
            "are never resolved"
        )


def _first_line(e: Exception) -> str:
    return str(e).split("WeightsUnpickler error:")[-1].strip().splitlines()[0][:160]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a stereo checkpoint (tensors and plain values only, see :func:`read_checkpoint`); a missing,
    unreadable, unsafe or foreign file raises an error naming it. A checkpoint of the original PSMNet code
    (``JiaRenChang/PSMNet``, ``stackhourglass``) is recognised by its keys and returned as a stereo
    checkpoint of ``model=psmnet`` (:func:`from_original_psmnet`)."""
    ckpt = read_checkpoint(path, map_location)
    if isinstance(ckpt, dict) and is_original_psmnet(ckpt):
        log.info("%s: an original PSMNet checkpoint (stackhourglass, max_disp 192): loaded as model=psmnet", path)
        return from_original_psmnet(ckpt, path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_config" not in ckpt:
        raise CheckpointError(f"{path}: not a stereo checkpoint (expected keys 'model' and 'model_config')")
    return ckpt


# ---- the original PSMNet's checkpoints ----
# torch.save({'epoch', 'state_dict', 'train_loss'}) of nn.DataParallel(stackhourglass(192)): every key starts
# with 'module.'; our psmnet keeps the original's module names, its 3-D part under 'aggregation.'.
_ORIGINAL_3D = ("dres0.", "dres1.", "dres2.", "dres3.", "dres4.", "classif1.", "classif2.", "classif3.")
_ORIGINAL_MARKERS = ("module.feature_extraction.firstconv.0.0.weight", "module.dres0.0.0.weight")


def is_original_psmnet(ckpt: dict[str, Any]) -> bool:
    """Whether ``ckpt`` looks like a checkpoint of the original PSMNet code (any of its models)."""
    state = ckpt.get("state_dict")
    return isinstance(state, dict) and all(k in state for k in _ORIGINAL_MARKERS)


# The original's pyramid branches are Sequential(AvgPool2d, convbn, ReLU): its convbn is item 1, ours item 0.
_ORIGINAL_BRANCH = re.compile(r"^(feature_extraction\.branch[1-4]\.)(\d+)\.")


def original_to_ours(name: str) -> str:
    """An original PSMNet parameter name (``module.dres2.conv1.0.0.weight``) as ours."""
    name = name.removeprefix("module.")
    name = _ORIGINAL_BRANCH.sub(lambda m: f"{m.group(1)}{int(m.group(2)) - 1}.", name)
    return f"aggregation.{name}" if name.startswith(_ORIGINAL_3D) else name


def ours_to_original(name: str) -> str:
    """One of our ``psmnet`` parameter names as the original code's (inverse of :func:`original_to_ours`)."""
    name = _ORIGINAL_BRANCH.sub(lambda m: f"{m.group(1)}{int(m.group(2)) + 1}.", name)
    return "module." + name.removeprefix("aggregation.")


def from_original_psmnet(ckpt: dict[str, Any], path: str | os.PathLike = "checkpoint") -> dict[str, Any]:
    """A stereo checkpoint of ``model=psmnet`` from an original PSMNet one: names mapped, BatchNorm
    ``num_batches_tracked`` buffers added where the file predates them (PyTorch < 0.4.1)."""
    from stereo.config import load_config

    state = {original_to_ours(k): v for k, v in ckpt["state_dict"].items()}
    for k in [k for k in state if k.endswith(".running_mean")]:
        state.setdefault(k.replace(".running_mean", ".num_batches_tracked"), torch.tensor(0))
    return {
        "model": state,
        "model_config": to_plain(load_config("model/psmnet")),
        "step": None,
        "original": {"path": str(path), "epoch": ckpt.get("epoch"), "train_loss": ckpt.get("train_loss")},
    }


def convert_checkpoint(
    src: str | os.PathLike, dst: str | os.PathLike, trust_code: bool = False
) -> tuple[dict[str, Any], str]:
    """Write ``src`` as a stereo checkpoint at ``dst`` that every tool loads: an original PSMNet checkpoint
    becomes a ``model=psmnet`` one; an older stereo checkpoint (NumPy values inside) is rewritten as plain
    data. Both are read the safe way. A file that holds anything more is refused unless ``trust_code``:
    then it is unpickled fully, which runs whatever code it holds (only for files you made or trust).
    Returns the written checkpoint (loaded back the safe way) and what was done."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise MissingFileError(f"checkpoint not found: {src}")
    if src.resolve() == dst.resolve():
        raise CheckpointError(f"{dst}: choose an output other than the input (the original stays as it is)")
    refuse_package_path(dst, "out")
    try:
        ckpt = load_checkpoint(src)
        kind = "original PSMNet checkpoint converted to model=psmnet" if "original" in ckpt else "rewritten as data"
    except UnsafeCheckpointError:
        if not trust_code:
            raise CheckpointError(
                f"{src}: refused: the file holds more than tensors, NumPy values and plain containers, and "
                "unpickling it could run code; nothing in it was run. Convert it only if you made it or trust "
                "its source: add trust_code=true (full unpickling runs whatever code the file holds, with your "
                "rights)"
            ) from None
        ckpt, kind = _unpickle_trusted(src), "converted with full unpickling (trust_code=true)"
    save_checkpoint(dst, ckpt)
    return load_checkpoint(dst), kind


def _unpickle_trusted(src: Path) -> dict[str, Any]:
    """Full unpickling of a file its user trusts (``trust_code=true``), as plain data."""
    try:
        ckpt = torch.load(src, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(f"{src}: cannot read checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{src}: not a checkpoint (expected a dict, got {type(ckpt).__name__})")
    if is_original_psmnet(ckpt):
        ckpt = from_original_psmnet(ckpt, src)
    if "model" not in ckpt or "model_config" not in ckpt:
        raise CheckpointError(f"{src}: not a stereo checkpoint (expected keys 'model' and 'model_config')")
    return _as_data(ckpt, src)


def numpy_rng_as_data(state: tuple) -> dict[str, Any]:
    """``np.random.get_state()`` as a tensor and plain values (what ``weights_only`` loading accepts)."""
    name, keys, pos, has_gauss, cached = state
    return {"name": str(name), "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}  # fmt: skip


def numpy_rng_from_data(state: dict[str, Any] | tuple) -> tuple:
    """The inverse of :func:`numpy_rng_as_data`, for ``np.random.set_state`` (a tuple passes as it is)."""
    if not isinstance(state, dict):
        return state
    keys = state["keys"].cpu().numpy().astype(np.uint32)
    return state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]


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


def config_differences(saved: Any, wanted: Any, ignore: tuple[str, ...] = ()) -> list[str]:
    """Architecture fields (dotted keys, but ``name`` and ``ignore``) that differ between two model
    configs, as ``key: saved -> wanted``."""
    a = flatten(to_plain(model_config(saved)))
    b = flatten(to_plain(model_config(wanted)))
    skip = {"name", *ignore}
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in skip
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
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:  # every output would be NaN: stop here, not after writing NaN files
        raise CheckpointError(f"{path}: {len(broken)} weight tensor(s) hold NaN or inf (first: {broken[0]}); the file "
                              "is damaged or its training diverged")  # fmt: skip
    model.load_state_dict(state)


# Architecture keys that hold no weights: a network may fine-tune from weights made at another setting of them.
WEIGHTLESS_KEYS = ("downsample", "feature.pool_sizes", "subpixel_steps", "subpixel_rounds")


def init_conflicts(saved: Any, wanted: Any) -> list[str]:
    """What keeps weights of model config ``saved`` from initialising a model of ``wanted``: every
    architecture difference (``key: saved -> wanted``) except the keys without weights
    (:data:`WEIGHTLESS_KEYS`: the resolution, the pyramid's pool sizes), a refinement that ``wanted`` adds
    to a network without one (those layers start as the identity), and any refinement when ``wanted``
    changes the resolution (a new network, whose regression the old refinement was not made for: its
    weights are dropped, and a refinement ``wanted`` has starts as the identity); a sub-pixel stage
    (``model.subpixel``) and its learned choice (``model.subpixel_select``) likewise: added, each starts as the
    identity; at another resolution they are dropped."""
    ignore = WEIGHTLESS_KEYS + tuple(key for key in ("subpixel", "subpixel_select") if _restarts(saved, wanted, key))
    if _restarts(saved, wanted, "refine"):
        ignore += ("refine", "refine_channels")
    return config_differences(saved, wanted, ignore=ignore)


# model config key -> the state-dict prefix of the light stage it adds after the network
STAGES = {"refine": "refinement.", "subpixel": "subpixel.", "subpixel_select": "subpixel.selector."}


def _restarts(saved: Any, wanted: Any, key: str) -> bool:
    """Whether fine-tuning ``saved``'s weights into ``wanted`` (model configs) leaves out the saved weights
    of the light stage ``key`` (:data:`STAGES`): ``wanted`` adds one, or changes the resolution (a new
    network, whose answers the old stage was not made for). One left out at the same resolution is a
    conflict: its weights belong to the model."""
    s, w = model_config(saved), model_config(wanted)
    return (str(getattr(s, key)) == "none" and str(getattr(w, key)) != "none") or s.downsample != w.downsample


def init_weights(model: torch.nn.Module, checkpoint: str | os.PathLike, wanted: Any) -> list[str]:
    """Load ``checkpoint``'s weights into ``model`` (built from ``wanted``) to fine-tune from them. The
    architectures must agree but for :func:`init_conflicts`' exceptions: an added sub-pixel refinement
    (``model.refine``) or stage (``model.subpixel``) keeps its initialisation, under which it returns its
    input; a refinement or stage made for another resolution is not loaded (said in the log). Returns the
    names of the weights left at their initialisation."""
    ckpt = load_checkpoint(checkpoint)
    other = init_conflicts(ckpt["model_config"], wanted)
    if other:
        s, w = model_config(ckpt["model_config"]), model_config(wanted)
        hint = "".join(
            f"; its {what} is part of the weights: add model.{key}={getattr(s, key)}"
            for key, what in (("refine", "refinement"), ("subpixel", "sub-pixel stage"), ("subpixel_select", "choice"))
            if str(getattr(s, key)) != "none" and str(getattr(w, key)) == "none"
        )
        raise CheckpointError(
            f"{checkpoint}: train.init_from needs the same architecture; the checkpoint's model config differs "
            f"from the run's ({'; '.join(other)}){hint}"
        )
    state = dict(ckpt["model"])
    fresh = tuple(prefix for key, prefix in STAGES.items() if _restarts(ckpt["model_config"], wanted, key))
    kept = [k for k in model.state_dict() if k.startswith(fresh)] if fresh else []
    if fresh:
        dropped = sorted({k.split(".")[0] for k in state if k.startswith(fresh)} - {k.split(".")[0] for k in kept})
        if dropped:
            log.info("%s: its %s left out (the run's model has none)", checkpoint, " and ".join(dropped))
        state = {k: v for k, v in state.items() if not k.startswith(fresh)}
        state.update({k: v for k, v in model.state_dict().items() if k in kept})
    load_weights(model, state, checkpoint)
    return kept


def load_network(
    checkpoint: str | os.PathLike, device: torch.device, runtime: Any = None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Model rebuilt from the checkpoint's own config, weights loaded, ``runtime`` settings applied (see
    :func:`~stereo.config.runtime_config`; None = the defaults), eval mode; with ``fold_batchnorm`` (the
    default) BatchNorm is folded into the convolutions: inference only."""
    runtime = runtime_config(runtime)
    ckpt = load_checkpoint(checkpoint, "cpu")
    try:
        model = build_model(ckpt["model_config"])
    except ValueError as e:
        raise CheckpointError(f"{checkpoint}: its model config cannot be built: {e}") from e
    try:  # a runtime setting this model refuses is the run's choice, not a fault of the file
        configure_runtime(model, runtime)
    except ConfigError as e:
        raise ConfigError(f"{checkpoint}: {e}") from None
    load_weights(model, ckpt["model"], checkpoint)
    model = model.to(device).eval()
    if runtime.fold_batchnorm:
        model = fold_batchnorm(model)
    return model, ckpt
