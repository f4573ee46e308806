"""Collect the runs of a training sweep (one ``summary.json`` each) into a comparison table.

Used by ``scripts/attention_study.py``: runs are grouped by their attention (``kind@position``), seeds
are averaged (mean and sample standard deviation), and a variant's cost at a given size is measured once
per variant from the run's own model config.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from stereo.errors import DatasetError


def collect_runs(sweep_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every run under ``sweep_dir`` with a ``summary.json`` (finished or not): the summary plus
    ``run_dir``, ``model`` and ``train`` (the run's model and optimisation config from its ``config.yaml``)."""
    runs = []
    for summary_path in sorted(Path(sweep_dir).rglob("summary.json")):
        run_dir = summary_path.parent
        s = json.loads(summary_path.read_text())
        cfg = OmegaConf.load(run_dir / "config.yaml")
        runs.append({**s, "run_dir": str(run_dir), "model": OmegaConf.to_container(cfg.model, resolve=True),
                     "train": OmegaConf.to_container(cfg.train, resolve=True)})  # fmt: skip
    if not runs:
        raise DatasetError(f"no run with a summary.json under {sweep_dir}")
    return runs


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def group_runs(runs: list[dict[str, Any]], metrics: tuple[str, ...] = ("epe", "bad2")) -> list[dict[str, Any]]:
    """One row per variant (``hparams.attention``): seeds, params, mean/std of the final validation
    metrics and of the training time per step. Only finished runs with validation metrics count, and
    all of them must have the same number of steps (an equal budget)."""
    done = [r for r in runs if r["status"] == "finished" and r.get("val")]
    steps = {r["step"] for r in done}
    if len(steps) > 1:
        raise ValueError(f"runs have different step counts {sorted(steps)}: not an equal budget")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in done:
        groups.setdefault(r["hparams"]["attention"], []).append(r)
    rows = []
    for variant, members in groups.items():
        row: dict[str, Any] = {
            "variant": variant,
            "seeds": sorted(m["hparams"]["seed"] for m in members),
            "parameters": members[0]["hparams"]["parameters"],
            "steps": members[0]["step"],
            "model": members[0]["model"],
            "run_dirs": [m["run_dir"] for m in members],
        }
        for k in metrics:
            row[k] = mean_std([m["val"][k] for m in members])
        row["seconds_per_step"] = mean_std([m["seconds_per_step"] for m in members])
        rows.append(row)
    return rows


def welch(a: list[float], b: list[float]) -> dict[str, float] | None:
    """Difference of means (b - a), its standard error and Welch's t; None with fewer than 2 per side."""
    if len(a) < 2 or len(b) < 2:
        return None
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    diff = statistics.fmean(b) - statistics.fmean(a)
    return {"diff": diff, "se": se, "t": diff / se if se > 0 else math.inf}


def model_overrides(model: dict[str, Any], base: dict[str, Any], prefix: str = "") -> list[str]:
    """Hydra overrides (relative to a model config) that turn ``base`` into ``model``."""
    out = []
    for k, v in model.items():
        key, b = f"{prefix}{k}", base.get(k) if isinstance(base, dict) else None
        if isinstance(v, dict):
            out += model_overrides(v, b if isinstance(b, dict) else {}, f"{key}.")
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            bl = b if isinstance(b, list) else []
            for i, item in enumerate(v):
                out += model_overrides(item, bl[i] if i < len(bl) else {}, f"{key}.{i}.")
        elif v != b:
            plus = "" if isinstance(base, dict) and k in base else "+"  # a key the base YAML does not spell out
            out.append(f"{plus}{key}={json.dumps(v, separators=(',', ':')) if isinstance(v, list) else v}")
    return out


def format_pm(value: tuple[float, float | None], digits: int = 2) -> str:
    mean, std = value
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
