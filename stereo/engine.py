"""The one evaluation loop: predict -> valid mask -> metrics over a dataset, split over DDP ranks.

Training's validation and ``stereo-eval`` both call :func:`evaluate_model`, so the same checkpoint on
the same pairs gives the same numbers in TensorBoard and in ``metrics.json``.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from stereo.data.dataset import StereoDataset
from stereo.device import autocast
from stereo.metrics import METRIC_KEYS, Metrics, disparity_metrics
from stereo.models import run
from stereo.models.output import Predictor
from stereo.progress import progress


@dataclass
class EvalResult:
    """``summary``: the averaged :class:`~stereo.metrics.Metrics` over every rank; ``rows``: this rank's
    per-image metrics; ``worst``: up to K (row, prediction) with the
    highest EPE, worst first; ``seconds``: wall time of the loop."""

    summary: Metrics
    rows: list[dict[str, Any]] = field(default_factory=list)
    worst: list[tuple[dict[str, Any], np.ndarray]] = field(default_factory=list)
    seconds: float = 0.0


def all_reduce_sum(values: list[float], device: torch.device, world: int) -> list[float]:
    """Element-wise sum over DDP ranks (identity in a single process)."""
    if world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def summarize(rows: list[dict[str, Any]], averaging: str, device: torch.device, world: int = 1) -> Metrics:
    """Average per-image metrics over all ranks: ``image`` = mean over images with valid pixels,
    ``pixel`` = every metric pooled over all valid pixels (each is a mean over pixels, so images are
    weighted by their valid-pixel counts). Metrics are NaN when no pixel is valid anywhere."""
    scored = [r for r in rows if r["pixels"]]
    sums = [sum(r[k] for r in scored) for k in METRIC_KEYS] + [float(len(scored))]
    sums += [sum(r[k] * r["pixels"] for r in scored) for k in METRIC_KEYS] + [float(sum(r["pixels"] for r in scored))]
    sums += [float(len(rows)), float(sum(r.get("head", 0) for r in rows)), float(sum(r["seconds"] for r in rows))]
    sums = all_reduce_sum(sums, device, world)
    k = len(METRIC_KEYS)
    images, pixels = sums[k], sums[2 * k + 1]
    if averaging == "image":
        metrics = {m: sums[i] / images if images else float("nan") for i, m in enumerate(METRIC_KEYS)}
    elif averaging == "pixel":
        metrics = {m: sums[k + 1 + i] / pixels if pixels else float("nan") for i, m in enumerate(METRIC_KEYS)}
    else:
        raise ValueError(f"averaging must be 'image' or 'pixel', got {averaging!r}")
    pairs = int(sums[-3])
    return Metrics(
        **metrics,
        images=int(images),
        pixels=int(pixels),
        pairs=pairs,
        mean_head=sums[-2] / pairs if pairs and sums[-2] else float("nan"),  # networks with heads only
        seconds_per_pair=sums[-1] / pairs if pairs else float("nan"),
    )


def evaluate_model(
    model: Predictor,
    dataset: StereoDataset,
    device: torch.device,
    precision: str = "fp32",
    averaging: str = "image",
    rank: int = 0,
    world: int = 1,
    keep_worst: int = 0,
    show_progress: bool = False,
    desc: str = "evaluate",
    adapt_steps: int = 0,
) -> EvalResult:
    """Evaluate ``model`` on full frames of ``dataset`` (its ``mask`` and ``max_disp`` pick the valid
    pixels); rank r of ``world`` takes pairs r, r + world, ...; the summary is reduced over ranks.
    ``adapt_steps`` > 0: the network's refinement adapts to each pair first (:func:`stereo.models.run`)."""
    rows: list[dict[str, Any]] = []
    heap: list[tuple[float, int, np.ndarray]] = []  # the current worst K: (epe, index, prediction)
    indices = range(rank, len(dataset), world)
    bar = progress(total=len(indices), desc=desc, unit="pair", enabled=show_progress and rank == 0)
    t0 = time.perf_counter()
    epe_sum, epe_n = 0.0, 0
    for i in indices:
        t_pair = time.perf_counter()
        item = dataset[i]
        with autocast(device, precision):
            out = run(model, item["left"][None].to(device), item["right"][None].to(device), adapt_steps=adapt_steps)
        pred = out.disparity[0].float().cpu()
        m = disparity_metrics(pred, item["disparity"], item["valid"])
        row = {"index": i, "left": str(dataset.samples[i].left), **m, "seconds": time.perf_counter() - t_pair}
        if out.heads:
            row["head"] = out.heads[0]
        rows.append(row)
        if keep_worst and m["pixels"]:
            entry = (m["epe"], i, pred.numpy())
            heapq.heappush(heap, entry) if len(heap) < keep_worst else heapq.heappushpop(heap, entry)
        if m["pixels"]:
            epe_sum, epe_n = epe_sum + m["epe"], epe_n + 1
        bar.set_postfix_str(f"EPE {epe_sum / epe_n:.3f}" if epe_n else "EPE n/a", refresh=False)
        bar.update()
    bar.close()
    seconds = time.perf_counter() - t0
    by_index = {r["index"]: r for r in rows}
    worst = [(by_index[i], p) for _, i, p in sorted(heap, key=lambda e: -e[0])]
    return EvalResult(summarize(rows, averaging, device, world), rows, worst, seconds)
