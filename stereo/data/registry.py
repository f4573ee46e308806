"""Datasets by name: ``data.name`` in a config selects a function that lists a split's stereo pairs.

A new dataset is a YAML in ``conf/data/`` plus a function registered here with :func:`register_dataset`;
training and evaluation code stays as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from stereo.config import DataConfig
from stereo.errors import ConfigError, DatasetError

T = TypeVar("T")


@dataclass(frozen=True)
class Sample:
    """One stereo pair: image paths, the left-view disparity (PFM; None for unlabeled pairs, which only a
    self-supervised loss can use), and the subset it comes from."""

    left: Path
    right: Path
    disparity: Path | None
    subset: str
    # evaluate only where this image says visible: 255 in an 8-bit mask (Middlebury's mask0nocc.png), > 0 in a
    # 16-bit one (KITTI's disp_noc)
    mask: Path | None = None
    # with it, evaluate only the left pixels whose match it confirms (stereo.data.occlusion; Scene Flow)
    right_disparity: Path | None = None
    occluded: bool = False  # evaluate the other pixels instead: those that mask or right_disparity say are hidden
    name: str | None = None  # the pair's name in split files where its paths do not say it (data=folder)


# name -> function(data config, split ("train" | "test"), render pass) -> samples. Split "val" (validation
# while training) is the "test" split, except for the datasets in HOLDOUT_DATASETS: real benchmarks whose
# ground truth exists for one set of pairs only. There "test" is every pair (to evaluate a model trained
# elsewhere), and "train"/"val" divide them without overlap (:func:`holdout`).
DATASETS: dict[str, Callable[[Any, str, str], list[Sample]]] = {}


def register_dataset(name: str) -> Callable:
    def wrap(fn: Callable[[DataConfig, str, str], list[Sample]]) -> Callable:
        DATASETS[name] = fn
        return fn

    return wrap


HOLDOUT_DATASETS = {"kitti", "middlebury", "eth3d", "folder"}


def region_of(cfg: DataConfig) -> str:
    """``data.region`` of a data config (``all`` | ``nonocc`` | ``occluded`` | ``edges`` | ``textured`` |
    ``lowtexture``)."""
    return str(cfg.region)


def texture_region_of(cfg: DataConfig) -> str | None:
    """``data.region`` when it selects pixels by the left image's texture (``textured``, ``lowtexture``), else None."""
    region = region_of(cfg)
    return region if region in ("textured", "lowtexture") else None


def edge_radius_of(cfg: DataConfig) -> int | None:
    """``data.edge_radius`` when ``data.region=edges`` (the pixels a dataset keeps: near depth edges), else None."""
    return int(cfg.edge_radius) if region_of(cfg) == "edges" else None


def sample_name(s: Sample) -> str:
    """A pair's name in split files: its own (data=folder: the path below ``left/``), the frame (KITTI
    ``000160_10``) or the scene folder (``im0.png``'s)."""
    if s.name:
        return s.name
    return s.left.parent.name if s.left.stem == "im0" else s.left.stem


def holdout(samples: Sequence[Sample], data_cfg: DataConfig) -> tuple[list[Sample], list[Sample]]:
    """(training, validation) pairs: the names listed in ``data.val_names`` (a text file, one per line), or
    else the last ``data.val_fraction`` of the pairs in sorted order (at least one, at most all but one)."""
    ordered = sorted(samples, key=lambda s: str(s.left))
    names_file = data_cfg.val_names
    if names_file:
        path = Path(str(names_file)).expanduser()
        if not path.is_file():
            raise DatasetError(f"data.val_names={path}: file not found")
        wanted = {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}
        unknown = sorted(wanted - {sample_name(s) for s in ordered})
        if unknown:
            raise DatasetError(f"data.val_names={path}: {len(unknown)} name(s) match no pair: {', '.join(unknown[:5])}")
        val = [s for s in ordered if sample_name(s) in wanted]
    else:
        n = min(max(1, round(len(ordered) * float(data_cfg.val_fraction))), len(ordered) - 1)
        val = ordered[len(ordered) - n :] if n > 0 else []
    train = [s for s in ordered if s not in val]
    if not train or not val:
        raise DatasetError(f"{data_cfg.root}: {len(ordered)} pair(s) cannot be split into training and validation")
    return train, val


def apply_limit(items: Sequence[T], limit: int | None, key: str = "limit") -> list[T]:
    """The first ``limit`` items: ``-1`` or ``None`` = all, ``0`` = none, ``N`` = the first N."""
    if limit is None or limit == -1:
        return list(items)
    if limit < -1:
        raise ConfigError(f"{key}={limit}: expected -1 (all), 0 (none) or a positive count")
    return list(items)[:limit]


def _with_root(data_cfg: Any, root: str) -> Any:
    """A copy of a data config (a :class:`DataConfig` or its DictConfig) with another ``root``."""
    if is_dataclass(data_cfg):
        return replace(data_cfg, root=root)  # type: ignore[type-var]
    from omegaconf import OmegaConf

    copy = OmegaConf.create(OmegaConf.to_container(data_cfg))
    copy.root = root
    return copy


def dataset_samples(
    data_cfg: DataConfig, split: str, render_pass: str | None = None, limit: int | None = None
) -> list[Sample]:
    """The pairs of ``split`` for a data config (``data.name``, ``data.root``, ...), limited to ``limit``
    (default ``data.limit``); raises :class:`DatasetError` when none is left."""
    import stereo.data  # noqa: F401  (registers the built-in datasets)

    name = str(data_cfg.name)
    if name not in DATASETS:
        raise ConfigError(f"data.name={name}: unknown dataset; expected one of {', '.join(sorted(DATASETS))}")
    if split not in ("train", "val", "test"):
        raise ConfigError(f"split {split!r}: expected train, val or test")
    roots = [str(data_cfg.root), *map(str, data_cfg.extra_roots)]
    resolved = [Path(r).expanduser().resolve() for r in roots]
    if len(set(resolved)) < len(roots):
        raise ConfigError(f"data.root and data.extra_roots name a folder twice: {roots}")
    samples: list[Sample] = []
    render_pass = str(render_pass or data_cfg.render_pass)
    # data.extra_roots: each root is read as data.root would be, and its pairs follow data.root's in order.
    for root in roots:
        cfg = data_cfg if root == str(data_cfg.root) else _with_root(data_cfg, root)
        if name in HOLDOUT_DATASETS and split in ("train", "val"):
            samples += holdout(DATASETS[name](cfg, "test", render_pass), cfg)[0 if split == "train" else 1]
        else:
            samples += DATASETS[name](cfg, "test" if split == "val" else split, render_pass)
    samples = apply_limit(samples, data_cfg.limit if limit is None else limit)
    if not samples:
        raise DatasetError(f"no {split} pairs left under {data_cfg.root} after limit={limit}")
    return samples


def require_ground_truth(samples: list[Sample], root: Any, what: str) -> None:
    """Raise :class:`DatasetError` naming the missing ``disparity/`` folder and the way out when any of
    ``samples`` has no ground truth; ``what`` says what needs it."""
    if any(s.disparity is None for s in samples):
        raise DatasetError(
            f"{root}: {what} needs ground truth, and {Path(str(root)) / 'disparity'} does not exist. Add the "
            "left-view disparities there, or train without them: train.loss=photometric (self-supervised; with "
            "val.limit=0 or a labelled val.root)"
        )
