"""How well a confidence ranks pixels by error: sparsification curves and their area.

Remove pixels in order of increasing confidence and follow the mean error of those kept: a useful
confidence makes it fall as pixels go. The oracle removes by decreasing error (the best any ranking
can do), random removal keeps the mean flat. The area under each curve (over the kept fraction, from
100% down) summarises it; lower is better.
"""

from __future__ import annotations

import numpy as np

FRACTIONS = tuple(np.round(np.linspace(1.0, 0.1, 10), 2))  # shares of pixels kept


def sparsification(error: np.ndarray, confidence: np.ndarray, fractions=FRACTIONS) -> dict[str, list[float] | float]:
    """Mean ``error`` of the most confident ``f`` of the pixels for each ``f`` in ``fractions`` (1-D
    arrays of equal length: one value per valid pixel), beside the oracle and random orders, with the
    area under each curve (trapezoids over the kept fraction; lower = better) and the ratio of the
    confidence's area above the oracle to random's (0 = as good as the oracle, 1 = no better than chance)."""
    error, confidence = np.asarray(error, np.float64).ravel(), np.asarray(confidence, np.float64).ravel()
    if error.shape != confidence.shape or error.size == 0:
        raise ValueError(f"error and confidence must be non-empty and of one size: {error.shape}, {confidence.shape}")
    n = error.size
    by_conf = error[np.argsort(-confidence, kind="stable")]
    by_oracle = np.sort(error)
    counts = [max(1, int(round(f * n))) for f in fractions]
    curve = [float(by_conf[:k].mean()) for k in counts]
    oracle = [float(by_oracle[:k].mean()) for k in counts]
    flat = [float(error.mean())] * len(counts)
    xs = np.asarray(fractions, np.float64)
    area = lambda ys: float(abs(np.sum((xs[1:] - xs[:-1]) * (np.add(ys[1:], ys[:-1]) / 2))))  # noqa: E731
    auc, auc_oracle, auc_random = area(curve), area(oracle), area(flat)
    return {
        "fractions": [float(f) for f in fractions],
        "confidence": curve,
        "oracle": oracle,
        "random": flat,
        "auc": auc,
        "auc_oracle": auc_oracle,
        "auc_random": auc_random,
        "relative": (auc - auc_oracle) / max(auc_random - auc_oracle, 1e-12),
    }


def measure(checkpoint: str | None, root: str, render_pass: str = "clean", limit: int = -1, max_disp: float = 96.0,
            device: str = "cpu", progress: bool = True) -> dict:  # fmt: skip
    """Sparsification of ``checkpoint``'s confidence (None = the shipped weights) on the Scene Flow test
    split of ``root``, over the pixels with 0 < ground truth < ``max_disp``, pooled over the pairs."""
    from stereo.api import load_model
    from stereo.evaluate import predictions_on_test_split

    model = load_model(checkpoint, device=device)
    errors, confs = [], []
    for p, gt in predictions_on_test_split(model, root, render_pass, limit, True, "sparsification", progress):
        keep = (gt > 0) & (gt < max_disp)
        errors.append(np.abs(p.disparity - gt)[keep])
        confs.append(p.confidence[keep])
    out = sparsification(np.concatenate(errors), np.concatenate(confs))
    return {"checkpoint": model.checkpoint, "root": str(root), "render_pass": render_pass, "pairs": len(errors),
            "mask": f"0 < gt < {max_disp:g}", **out}  # fmt: skip
