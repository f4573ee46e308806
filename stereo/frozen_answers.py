"""``train.cache_frozen``: the frozen network's answers, computed once per training pair.

When every module but ``model.subpixel`` is frozen (BatchNorm statistics included), the network's answer before
the stage does not change during a run. On 2 CPU cores that network is most of a step's cost (about 6 of 7 s
at batch 4 of 192x384 in fp32), so it runs once per pair here, on the full frame as at inference, and the
stage trains on crops of its answer. The answers live in the run folder (``frozen_answers/``, one ``.npy`` per
pair, written atomically) with a key of the frozen weights, the precision, the runtime settings and the pairs'
files: a resumed run reuses them, a changed one computes them again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stereo.config import to_plain
from stereo.data.images import check_same_size, read_rgb, to_tensor
from stereo.device import autocast
from stereo.errors import ConfigError
from stereo.io import atomic_write, write_json
from stereo.progress import progress

log = logging.getLogger(__name__)

STAGE = "subpixel"  # the one module that trains on cached answers
MANIFEST = "manifest.json"


def check_only_stage_trains(model: torch.nn.Module) -> None:
    """Raise :class:`ConfigError` unless ``model.subpixel`` exists and holds every trainable weight."""
    if getattr(model, STAGE, None) is None:
        raise ConfigError("train.cache_frozen=true trains model.subpixel alone; this model has none")
    trainable = sorted({n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad})
    if trainable != [STAGE]:
        others = sorted({n.split(".")[0] for n, _ in model.named_parameters()} - {STAGE})
        raise ConfigError(
            f"train.cache_frozen=true needs every module but {STAGE} frozen; these still train: "
            f"{', '.join(t for t in trainable if t != STAGE)} (train.freeze={others})"
        )


def answers_key(model: torch.nn.Module, precision: str, samples: Sequence[Any]) -> str:
    """A digest of what the cached answers depend on: the weights outside the stage, the precision, the
    runtime settings and each pair's files (path, size, modification time)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        if not name.startswith(STAGE + "."):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    files = []
    for s in samples:
        for p in (Path(s.left), Path(s.right)):
            st = p.stat()
            files.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
    runtime = to_plain(getattr(model, "runtime", None))
    h.update(json.dumps({"precision": precision, "runtime": runtime, "files": files}, sort_keys=True).encode())
    return h.hexdigest()


def frozen_answers(
    model: Any,
    samples: Sequence[Any],
    folder: str | os.PathLike,
    device: torch.device,
    precision: str,
    show_progress: bool = True,
) -> list[Path]:
    """The (H, W) float32 disparity in pixels of the network without its stage for every pair of
    ``samples``, one ``.npy`` per pair in ``folder`` (in order); computes what is missing or out of date."""
    check_only_stage_trains(model)
    folder = Path(folder)
    paths = [folder / f"{i:06d}.npy" for i in range(len(samples))]
    key = answers_key(model, precision, samples)
    manifest = folder / MANIFEST
    old = json.loads(manifest.read_text()).get("key") if manifest.is_file() else None
    if old != key:
        for stale in folder.glob("*.npy"):  # another network, precision or set of pairs
            stale.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        write_json(manifest, {"key": key, "pairs": len(samples), "precision": precision})
    todo = [i for i, p in enumerate(paths) if not p.is_file()]
    if not todo:
        log.info("train.cache_frozen: reusing the frozen network's answers for %d pairs in %s", len(paths), folder)
        return paths
    from stereo.models import run

    stage = getattr(model, STAGE)
    setattr(model, STAGE, None)  # the answer before the stage, exactly as inference computes it
    try:
        bar = progress(todo, desc="frozen network's answers", unit="pair", enabled=show_progress)
        with torch.no_grad(), autocast(device, precision):
            for i in bar:
                s = samples[i]
                left, right = read_rgb(s.left), read_rgb(s.right)
                check_same_size(left, right, s.left, s.right)
                views = [to_tensor(v)[None].to(device) for v in (left, right)]
                disp = run(model, *views).disparity[0].float().cpu().numpy()
                with atomic_write(paths[i]) as tmp, open(tmp, "wb") as f:
                    np.save(f, disp)
    finally:
        setattr(model, STAGE, stage)  # run() already restored the train/eval mode
    log.info("train.cache_frozen: the frozen network's answers for %d pairs in %s", len(todo), folder)
    return paths
