"""``stereo-eval``: a checkpoint on a dataset's test split; EPE, bad-N and D1 with a documented mask and averaging."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from omegaconf import DictConfig

from stereo.adapt import check_adaptable
from stereo.config import EvalAppConfig, to_plain, typed
from stereo.data.dataset import StereoDataset
from stereo.data.real import PRIMARY
from stereo.data.registry import dataset_samples, edge_radius_of, require_ground_truth, texture_region_of
from stereo.device import check_precision, resolve_device
from stereo.engine import EvalResult, evaluate_model
from stereo.errors import ConfigError, DataError
from stereo.io import output_lock, write_image, write_json, write_text
from stereo.methods import build_method
from stereo.metrics import METRIC_KEYS, describe_mask, error_bands
from stereo.visualize import result_panels, stack_panels

log = logging.getLogger(__name__)


@dataclass
class EvalReport:
    """One evaluation: the metrics (EPE in px; bad-N and D1 in % of valid pixels) and how they were
    measured. ``metrics.json`` holds :meth:`to_json`."""

    epe: float
    bad05: float  # % of pixels with error > 0.5 px
    bad1: float
    bad2: float
    bad3: float
    d1: float
    pairs: int
    pairs_with_valid_pixels: int
    method: str  # checkpoint | sgbm
    checkpoint: str | None
    checkpoint_step: int | None
    root: str
    dataset: str
    render_pass: str
    mask: str  # in words, with its bound
    averaging: str  # in words
    primary_metric: str  # what the benchmark itself reports
    region: str
    seconds: float
    pairs_per_s: float
    seconds_per_pair: float
    early_exit: str | None  # networks only
    regression: str | None  # networks only: soft_argmin | local
    refinement: bool | None  # networks with a sub-pixel refinement (model.refine): whether it ran
    adapt_steps: int  # adapt=true: the refinement's steps per pair before scoring (0: none)
    mean_head: float  # the mean hourglass head that answered (NaN without heads)
    subpixel_steps: int | None = None  # networks with a sub-pixel stage (model.subpixel) that ran: its updates
    subpixel_rounds: int | None = None  # networks whose stage has a learned choice and ran: its rounds after it
    propagate: int = 0  # the rounds of propagation after that stage (models/propagation.py; 0: none)
    d1_definition: str = "error > 3 px and > 5% of gt (KITTI)"
    sgbm: dict[str, Any] | None = None  # method=sgbm: its settings
    sgbm_density_before_fill: float | None = None

    def metrics(self) -> dict[str, float]:
        """EPE, bad-0.5/1/2/3 and D1 by name (:data:`stereo.metrics.METRIC_KEYS`)."""
        return {k: getattr(self, k) for k in METRIC_KEYS}

    @property
    def bands(self) -> dict[str, float]:
        """The share (%) of pixels in each error band (<= 0.5, 0.5-1, 1-2, 2-3, > 3 px)."""
        return error_bands(self.metrics())

    def to_json(self) -> dict[str, Any]:
        """The report as ``metrics.json`` holds it, with the error bands (the SGBM keys only for SGBM)."""
        out = asdict(self)
        out["bands"] = self.bands
        if self.method != "sgbm":
            del out["sgbm"], out["sgbm_density_before_fill"]
        return out


def evaluate(
    cfg: EvalAppConfig | DictConfig, out_dir: str | os.PathLike, show_progress: bool = True, tensorboard: bool = True
) -> EvalReport:
    """Evaluate ``cfg.checkpoint`` (or, with ``method=sgbm``, OpenCV's SGBM) as configured
    (``conf/eval.yaml``); writes ``<out_dir>/metrics.json`` (:meth:`EvalReport.to_json`) and returns the report.

    Full frames are padded to the model's multiple and cropped back (:func:`stereo.models.run`).
    ``cfg.mask`` picks the valid pixels (:data:`stereo.metrics.MASKS`; ``cfg.max_disp`` defaults to the
    model's), ``cfg.averaging`` is ``image`` (per image, then the mean) or ``pixel`` (pooled).
    """
    cfg = typed(cfg, EvalAppConfig)
    samples = dataset_samples(cfg.data, "test")
    require_ground_truth(samples, cfg.data.root, "stereo-eval")
    device = resolve_device(cfg.device)
    precision = check_precision(device, cfg.precision)  # before any work
    if cfg.adapt and cfg.method != "checkpoint":
        raise ConfigError(f"adapt=true adapts a network's refinement; method={cfg.method} has none")
    model, origin = build_method(cfg.method, cfg, device)
    if cfg.adapt:
        check_adaptable(model)  # before any pair
    checkpoint = origin["checkpoint"]
    max_disp = float(cfg.max_disp if cfg.max_disp is not None else model.max_disp)
    out_dir = Path(out_dir)
    with output_lock(out_dir, "stereo-eval"):  # one writer per folder; its stale temporary files go
        ds = StereoDataset(samples, max_disp=max_disp, mask=cfg.mask, edge_radius=edge_radius_of(cfg.data),
                           texture=texture_region_of(cfg.data))  # fmt: skip
        r = evaluate_model(model, ds, device, precision, cfg.averaging, keep_worst=cfg.worst_k,
                           show_progress=show_progress, adapt_steps=cfg.adapt_steps if cfg.adapt else 0)  # fmt: skip
        if r.summary.images == 0:  # every metric would be NaN: say why instead of reporting it
            raise DataError(
                f"data.root={cfg.data.root}: none of the {r.summary.pairs} test pair(s) has a pixel with valid "
                f"ground truth under mask={cfg.mask} ({describe_mask(cfg.mask, max_disp)}), region="
                f"{cfg.data.region}; check the disparity files, or widen the mask (max_disp=..., mask=...)"
            )
        result = _report(cfg, r, model, origin, max_disp)
        write_json(out_dir / "metrics.json", result.to_json())
        m = result.metrics()
        log.info(
            "%s on %d %s pairs (%s; %s): EPE %.3f px, bad-1 %.2f%%, bad-2 %.2f%%, bad-3 %.2f%%, D1 %.2f%% -> %s",
            checkpoint or "sgbm", result.pairs, cfg.data.name, result.mask, result.averaging,
            m["epe"], m["bad1"], m["bad2"], m["bad3"], m["d1"], out_dir / "metrics.json",
        )  # fmt: skip
        if cfg.per_image_csv:
            _write_csv(out_dir / "per_image.csv", r.rows)
        if cfg.worst_k:
            _save_worst(out_dir / "worst", r.worst, ds, max_disp)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            with SummaryWriter(str(out_dir / "tensorboard")) as writer:
                _log_tensorboard(writer, result, r.worst, ds, max_disp)
        return result


def _refines(method: Any) -> bool:
    """Whether a method is a network with a learned refinement (SGBM and ONNX Runtime have none)."""
    return bool(getattr(getattr(method, "refinement", None), "refines", False))


def _stage_steps(cfg: EvalAppConfig, model: Any) -> int | None:
    """The updates of the method's full-resolution sub-pixel stage that ran (None: it has none, or it did not
    run)."""
    stage = getattr(model, "subpixel", None)
    if stage is None or not cfg.refinement:
        return None
    return stage.steps if cfg.subpixel_steps is None else int(cfg.subpixel_steps)


def _stage_rounds(cfg: EvalAppConfig, model: Any) -> int | None:
    """The rounds of update and learned choice after the stage's choice that ran (None: the stage has no choice,
    or it did not run)."""
    stage = getattr(model, "subpixel", None)
    if stage is None or stage.selector is None or not cfg.refinement:
        return None
    return stage.rounds if cfg.subpixel_rounds is None else int(cfg.subpixel_rounds)


def _report(cfg: EvalAppConfig, r: EvalResult, model: Any, origin: dict[str, Any], max_disp: float) -> EvalReport:
    """The :class:`EvalReport` of an evaluation loop's result ``r`` and how it was measured."""
    s = r.summary
    stage_steps = _stage_steps(cfg, model)
    result = EvalReport(
        epe=s.epe,
        bad05=s.bad05,
        bad1=s.bad1,
        bad2=s.bad2,
        bad3=s.bad3,
        d1=s.d1,
        pairs=s.pairs,
        pairs_with_valid_pixels=s.images,
        method=str(cfg.method),
        checkpoint=origin["checkpoint"],
        checkpoint_step=origin["step"],
        root=str(cfg.data.root),
        dataset=str(cfg.data.name),
        render_pass=str(cfg.data.render_pass),
        mask=describe_mask(cfg.mask, max_disp),
        averaging="per image, then mean over images" if cfg.averaging == "image" else "over all valid pixels",
        primary_metric=PRIMARY.get(str(cfg.data.name), "epe"),
        region=str(cfg.data.region),
        seconds=r.seconds,
        pairs_per_s=len(r.rows) / max(r.seconds, 1e-9),
        seconds_per_pair=s.seconds_per_pair,
        early_exit=str(cfg.early_exit) if cfg.method == "checkpoint" else None,
        regression=str(cfg.regression) if cfg.method == "checkpoint" else None,
        refinement=bool(cfg.refinement) if _refines(model) else None,
        adapt_steps=cfg.adapt_steps if cfg.adapt else 0,
        mean_head=s.mean_head,
        subpixel_steps=stage_steps,
        subpixel_rounds=_stage_rounds(cfg, model),
        propagate=int(cfg.propagate) if stage_steps is not None else 0,
    )
    if cfg.method == "sgbm":
        result.sgbm = {**to_plain(cfg.sgbm), "num_disparities": model.max_disp}
        result.sgbm_density_before_fill = model.density
    return result


def predictions_on_test_split(
    model: Any,
    root: str | os.PathLike,
    render_pass: str = "clean",
    limit: int = -1,
    confidence: bool = True,
    desc: str = "predict",
    progress: bool = True,
) -> Iterator[tuple[Any, np.ndarray]]:
    """(:class:`~stereo.api.Prediction`, ground-truth disparity (H, W) in pixels) for each of the first
    ``limit`` (-1 = all) pairs of the Scene Flow test split of ``root``, predicted by a
    :class:`~stereo.api.StereoModel`, with a progress bar: the loop of the analysis tools."""
    from stereo.data.disparity import read_disparity
    from stereo.data.sceneflow import discover
    from stereo.progress import progress as bar

    samples = discover(root, "test", render_pass, cache=False)
    for s in bar(samples if limit < 0 else samples[:limit], desc=desc, unit="pair", enabled=progress):
        yield model.predict(s.left, s.right, confidence=confidence), read_disparity(s.disparity)


def evaluate_methods(
    methods: list[tuple[str, list[str]]],
    root: str | os.PathLike,
    passes: list[str],
    max_disp: float,
    extra: list[str] | None = None,
    work_dir: str | os.PathLike | None = None,
    show_progress: bool = True,
) -> list[tuple[str, EvalReport]]:
    """``stereo-eval``'s code for each ``(label, eval overrides)`` of ``methods`` (e.g. ``["method=sgbm"]``,
    ``["checkpoint=shipped", "precision=bf16"]``) on ``root``, in each pass, with the mask ``0 < gt <
    max_disp`` and the ``extra`` overrides (``device=``, ``data.limit=``, ...). Every evaluation writes into its
    own folder of ``work_dir`` (default: a temporary folder, removed). Returns ``(label, report)``, methods
    outer, passes inner."""
    from stereo.config import load_config

    results: list[tuple[str, EvalReport]] = []
    # A temporary folder only when no work_dir is given (it would otherwise be made and removed, unused).
    with tempfile.TemporaryDirectory() if work_dir is None else contextlib.nullcontext(str(work_dir)) as tmp:
        base = Path(tmp)
        for label, over in methods:
            for p in passes:
                data = [f"data.root={root}", f"data.render_pass={p}", f"max_disp={max_disp}", *(extra or [])]
                cfg = load_config("eval", [*over, *data])
                out = base / f"eval_{len(results)}_{p}"
                results.append((label, evaluate(cfg, out, show_progress=show_progress, tensorboard=False)))
    return results


def benchmark_max_disp(root: str | os.PathLike, default: float | None = None) -> float:
    """The ``max_disp`` of a generated set (its ``sample.json``), else ``default``; a clear error when neither."""
    manifest = Path(root) / "sample.json"
    if manifest.is_file():
        return float(json.loads(manifest.read_text())["parameters"]["max_disp"])
    if default is None:
        raise DataError(f"{manifest}: not found; a generated set has one (give max_disp= for another dataset)")
    return default


def slice_metrics(checkpoint: str | os.PathLike, work_dir: str | os.PathLike, device: str = "cpu") -> dict[str, Any]:
    """EPE and bad-N of ``checkpoint`` on the first pairs of generated-v1 (:data:`stereo.weights.SLICE`: both
    passes, mask 0 < gt < 96, per-image averaging, through ``stereo-eval``'s code), generated in ``work_dir``."""
    from stereo.data.benchmarks import build_slice
    from stereo.weights import SLICE

    root = build_slice(SLICE["benchmark"], SLICE["part"], SLICE["pairs"], Path(work_dir) / "slice")
    result: dict[str, Any] = dict(SLICE)
    method = [("", [f"checkpoint={checkpoint}", f"device={device}"])]
    reports = evaluate_methods(
        method, root, ["clean", "final"], SLICE["max_disp"], work_dir=work_dir, show_progress=False
    )
    for p, (_, r) in zip(("clean", "final"), reports, strict=True):
        result[p] = r.metrics()
    return result


def _log_tensorboard(writer, result: EvalReport, worst: list, ds: StereoDataset, max_disp: float) -> None:
    """Scalars, a readable markdown summary, the HParams view and the worst panels of one evaluation."""
    from torch.utils.tensorboard.summary import hparams

    step = result.checkpoint_step or 0
    metrics = result.metrics()
    for k, v in metrics.items():
        writer.add_scalar(f"eval/{k}", v, step)
    rows = "\n".join(f"| {k} | {v:.3f} |" for k, v in metrics.items())
    writer.add_text(
        "eval/summary",
        f"**{result.method}** {result.checkpoint or ''} (step {step}) on {result.pairs} {result.dataset} "
        f"pairs ({result.render_pass} pass), mask {result.mask}, {result.averaging}\n\n"
        f"| metric | value |\n|---|---|\n{rows}\n\nEPE in px, bad-N and D1 in % of valid pixels.",
        step,
    )
    hp = {"method": result.method, "checkpoint": str(result.checkpoint), "step": int(step),
          "dataset": result.dataset, "render_pass": result.render_pass, "mask": result.mask,
          "averaging": result.averaging}  # fmt: skip
    for summary in hparams(hp, {f"eval/{k}": v for k, v in metrics.items()}):
        writer.file_writer.add_summary(summary)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["index", "left", *METRIC_KEYS, "pixels", "head", "seconds"],
                       extrasaction="ignore")  # fmt: skip
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def _save_worst(folder: Path, worst: list, ds: StereoDataset, max_disp: float) -> None:
    for rank, (row, pred) in enumerate(worst, 1):
        item = ds[row["index"]]
        left = item["left"].permute(1, 2, 0).numpy()
        panel = stack_panels(result_panels(left, pred, item["disparity"].numpy(), item["valid"].numpy(), max_disp))
        path = folder / f"{rank:02d}_epe{row['epe']:.2f}_{Path(row['left']).stem}.png"
        write_image(path, cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
