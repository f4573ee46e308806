"""Evaluation on Scene Flow's test split: EPE, bad-N and D1 with a documented mask and averaging."""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from stereo.checkpoint import load_model
from stereo.data.dataset import StereoDataset
from stereo.data.sceneflow import discover
from stereo.device import autocast, resolve_device
from stereo.metrics import METRIC_KEYS, disparity_metrics
from stereo.models import predict
from stereo.progress import Progress
from stereo.visualize import colorize_disparity, colorize_error

log = logging.getLogger(__name__)

# Valid-pixel masks in use by published evaluations (reference section 4).
MASKS = {
    "positive": "0 < gt < max_disp",  # GwcNet, OpenStereo
    "absolute": "|gt| < max_disp",  # RAFT-Stereo, IGEV
    "below": "gt < max_disp",  # PSMNet
}
AVERAGING = ("image", "pixel")


def valid_mask(gt: np.ndarray, mask: str, max_disp: float) -> np.ndarray:
    """Boolean (H, W) mask of evaluated pixels; non-finite ground truth is never valid."""
    finite = np.isfinite(gt)
    g = np.where(finite, gt, 0)
    if mask == "positive":
        return finite & (g > 0) & (g < max_disp)
    if mask == "absolute":
        return finite & (np.abs(g) < max_disp)
    if mask == "below":
        return finite & (g < max_disp)
    raise ValueError(f"mask must be one of {list(MASKS)}, got {mask!r}")


def evaluate(
    checkpoint: str | os.PathLike,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    render_pass: str = "final",
    limit: int | None = None,
    mask: str = "positive",
    max_disp: float | None = None,
    averaging: str = "image",
    device: str = "auto",
    precision: str = "fp32",
    per_image_csv: bool = False,
    worst_k: int = 0,
    tensorboard: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a checkpoint on FlyingThings3D TEST; writes ``<out_dir>/metrics.json`` and returns it.

    Full frames are padded to the model's multiple and cropped back (:func:`stereo.models.predict`).
    ``mask`` picks the valid pixels (:data:`MASKS`; ``max_disp`` defaults to the model's), ``averaging``
    is ``image`` (metrics per image, then the mean over images) or ``pixel`` (all valid pixels pooled).
    """
    if averaging not in AVERAGING:
        raise ValueError(f"averaging must be one of {AVERAGING}, got {averaging!r}")
    if mask not in MASKS:
        raise ValueError(f"mask must be one of {list(MASKS)}, got {mask!r}")
    samples = discover(root, "test", render_pass)
    if limit:
        samples = samples[:limit]
    dev = resolve_device(device)
    autocast(dev, precision)  # validates the precision for this device
    model, ckpt = load_model(checkpoint, dev)
    max_disp = float(max_disp if max_disp is not None else model.max_disp)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = StereoDataset(samples, max_disp=max_disp)

    rows: list[dict[str, Any]] = []
    bar = Progress(total=len(ds), desc="evaluate", unit="pair", enabled=progress)
    t0 = time.perf_counter()
    epe_sum, epe_n = 0.0, 0  # running per-image mean for the progress bar
    for i in range(len(ds)):
        left, right, gt = ds.load(i)
        valid = valid_mask(gt, mask, max_disp)
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(dev)  # noqa: E731
        with autocast(dev, precision):
            pred = predict(model, to_t(left), to_t(right))[0].float().cpu().numpy()
        gt_t = torch.from_numpy(np.where(np.isfinite(gt), gt, 0))
        m = disparity_metrics(torch.from_numpy(pred), gt_t, torch.from_numpy(valid))
        rows.append({"index": i, "left": str(samples[i].left), **m, "_pred": pred if worst_k else None})
        if worst_k and len(rows) > worst_k:  # keep predictions only for the current worst K
            keep = sorted((r for r in rows if r["_pred"] is not None), key=_epe_key, reverse=True)[:worst_k]
            for r in rows:
                if r["_pred"] is not None and r not in keep:
                    r["_pred"] = None
        if m["pixels"]:
            epe_sum, epe_n = epe_sum + m["epe"], epe_n + 1
        bar.set_postfix(f"EPE {epe_sum / epe_n:.3f}" if epe_n else "EPE n/a")
        bar.update()
    bar.close()
    elapsed = time.perf_counter() - t0

    scored = [r for r in rows if r["pixels"]]
    if averaging == "image":
        summary = {k: float(np.mean([r[k] for r in scored])) if scored else float("nan") for k in METRIC_KEYS}
    else:  # every metric is a mean over valid pixels: pool images by weighting with their pixel counts
        n = sum(r["pixels"] for r in scored)
        summary = {k: sum(r[k] * r["pixels"] for r in scored) / n if n else float("nan") for k in METRIC_KEYS}
    result = {
        **summary,
        "pairs": len(rows),
        "pairs_with_valid_pixels": len(scored),
        "checkpoint": str(checkpoint),
        "checkpoint_step": ckpt.get("step"),
        "root": str(root),
        "render_pass": render_pass,
        "mask": f"{mask}: {MASKS[mask].replace('max_disp', f'{max_disp:g}')}",
        "averaging": "per image, then mean over images" if averaging == "image" else "over all valid pixels",
        "d1_definition": "error > 3 px and > 5% of gt (KITTI)",
        "seconds": elapsed,
        "pairs_per_s": len(rows) / max(elapsed, 1e-9),
    }
    tmp = out_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, out_dir / "metrics.json")
    if per_image_csv:
        with open(out_dir / "per_image.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["index", "left", *METRIC_KEYS, "pixels"])
            w.writeheader()
            for r in rows:
                w.writerow({k: r[k] for k in w.fieldnames})
    if worst_k:
        _save_worst(out_dir / "worst", [r for r in rows if r["_pred"] is not None], ds, max_disp, mask)
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        with SummaryWriter(str(out_dir / "tensorboard")) as writer:
            for k in METRIC_KEYS:
                writer.add_scalar(f"eval/{k}", result[k], result["checkpoint_step"] or 0)
    return result


def _epe_key(r: dict) -> float:
    return r["epe"] if r["pixels"] else -1.0


def _save_worst(folder: Path, rows: list[dict], ds: StereoDataset, max_disp: float, mask: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for rank, r in enumerate(sorted(rows, key=_epe_key, reverse=True), 1):
        left, _, gt = ds.load(r["index"])
        valid = valid_mask(gt, mask, max_disp)
        vmax = float(gt[valid].max()) if valid.any() else max_disp
        panel = np.vstack(
            [
                (left * 255).astype(np.uint8),
                colorize_disparity(r["_pred"], 0, vmax),
                colorize_disparity(np.where(valid, gt, np.nan), 0, vmax),
                colorize_error(np.abs(r["_pred"] - gt), valid),
            ]
        )
        name = folder / f"{rank:02d}_epe{r['epe']:.2f}_{Path(r['left']).stem}.png"
        cv2.imwrite(str(name), cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
