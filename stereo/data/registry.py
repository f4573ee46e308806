"""Datasets by name: ``data.name`` in a config selects a function that lists a split's stereo pairs.

A new dataset is a YAML in ``conf/data/`` plus a function registered here with :func:`register_dataset`;
training and evaluation code stays as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from stereo.errors import ConfigError, DatasetError

T = TypeVar("T")


@dataclass(frozen=True)
class Sample:
    """One stereo pair: image paths, the left-view disparity (PFM), and the subset it comes from."""

    left: Path
    right: Path
    disparity: Path
    subset: str
    mask: Path | None = None  # evaluate only where this image is 255 (e.g. Middlebury's mask0nocc.png)


# name -> function(data config, split ("train" | "test"), render pass) -> samples
DATASETS: dict[str, Callable[[Any, str, str], list[Sample]]] = {}


def register_dataset(name: str) -> Callable:
    def wrap(fn: Callable[[Any, str, str], list[Sample]]) -> Callable:
        DATASETS[name] = fn
        return fn

    return wrap


def apply_limit(items: Sequence[T], limit: int | None, key: str = "limit") -> list[T]:
    """The first ``limit`` items: ``-1`` or ``None`` = all, ``0`` = none, ``N`` = the first N."""
    if limit is None or limit == -1:
        return list(items)
    if limit < -1:
        raise ConfigError(f"{key}={limit}: expected -1 (all), 0 (none) or a positive count")
    return list(items)[:limit]


def dataset_samples(
    data_cfg: Any, split: str, render_pass: str | None = None, limit: int | None = None
) -> list[Sample]:
    """The pairs of ``split`` for a data config (``data.name``, ``data.root``, ...), limited to ``limit``
    (default ``data.limit``); raises :class:`DatasetError` when none is left."""
    import stereo.data  # noqa: F401  (registers the built-in datasets)

    name = str(data_cfg.name)
    if name not in DATASETS:
        raise ConfigError(f"data.name={name}: unknown dataset; expected one of {', '.join(sorted(DATASETS))}")
    samples = DATASETS[name](data_cfg, split, str(render_pass or data_cfg.render_pass))
    samples = apply_limit(samples, data_cfg.limit if limit is None else limit)
    if not samples:
        raise DatasetError(f"no {split} pairs left under {data_cfg.root} after limit={limit}")
    return samples
