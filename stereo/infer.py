"""Inference on the user's own image pairs: disparity as PFM, 16-bit PNG and colour PNG, optional depth."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from omegaconf import DictConfig

from stereo.adapt import AdaptReport
from stereo.api import StereoModel, scaled_size
from stereo.calib import Calibration, calibration_from, point_cloud, write_ply
from stereo.config import RUNTIME_KEYS, InferAppConfig, RuntimeConfig, typed
from stereo.data.images import check_same_size, image_size, read_rgb, split_frame
from stereo.data.pairs import Pair, find_frames, find_pairs
from stereo.data.pfm import write_pfm
from stereo.device import resolve_device
from stereo.errors import ConfigError, OutputError
from stereo.io import LOCK_NAME, atomic_paths, encode_image, output_lock, remove_stale_temps_of, write_json
from stereo.matches import MatchReport, measure_pair, offset_for, run_check, scale_for, shift_right_view
from stereo.methods import build_method
from stereo.rectification import (
    RawCalibration,
    Rectification,
    is_raw_calibration,
    read_raw_calibration,
    rectification,
    rectify_from_matches,
)
from stereo.video import VideoResult, infer_video
from stereo.visualize import colorize_disparity, colour_legend

log = logging.getLogger(__name__)
SATURATION = 0.95  # predicted disparity above this fraction of max_disp suggests the range is exceeded


OUTPUT_SUFFIXES = (".pfm", ".png", "_color.png", "_legend.png")
DEPTH_SUFFIX = "_depth.pfm"
CLOUD_SUFFIX = ".ply"
CONFIDENCE_SUFFIXES = ("_confidence.pfm", "_confidence.png")
RECTIFIED_SUFFIXES = ("_left_rect.png", "_right_rect.png")


def output_paths(
    out_dir: Path, name: str, depth: bool, cloud: bool = False, confidence: bool = False, rectified: bool = False
) -> list[Path]:
    """The files one pair's outputs go to, in the order :func:`write_outputs` writes them."""
    suffixes = OUTPUT_SUFFIXES + ((DEPTH_SUFFIX,) if depth else ()) + ((CLOUD_SUFFIX,) if cloud else ())
    suffixes += CONFIDENCE_SUFFIXES if confidence else ()
    suffixes += RECTIFIED_SUFFIXES if rectified else ()
    return [out_dir / f"{name}{s}" for s in suffixes]


def plan_outputs(
    pairs: list[Pair],
    out_dir: Path,
    depth: bool,
    cloud: bool = False,
    confidence: bool = False,
    rectified: bool = False,
) -> dict[str, list[Path]]:
    """Every output path of every pair, checked before any model runs: the output folder must be a
    writable folder, every output must resolve to a path inside it (no ``..``, no symbolic link out of
    it), no output may be an input image, and no two outputs may share a path."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"output_dir={out_dir} exists and is not a folder")
    plan = {p.name: output_paths(out_dir, p.name, depth, cloud, confidence, rectified) for p in pairs}
    root = out_dir.resolve()
    for name, outs in plan.items():
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or any(q in ("", ".", "..") for q in parts):
            raise OutputError(f"refusing the output name {name!r}: names must stay below output_dir={out_dir}")
        for out in outs:
            where = out.resolve()
            if not where.is_relative_to(root):
                raise OutputError(
                    f"refusing to write {out}: it resolves to {where}, outside output_dir={out_dir} (through a "
                    "symbolic link); remove the link or choose another output_dir"
                )
    inputs = {f.resolve(): f for p in pairs for f in (p.left, p.right)}
    clashes = [f"{out} would overwrite the input {inputs[out.resolve()]}" for outs in plan.values() for out in outs
               if out.resolve() in inputs]  # fmt: skip
    if clashes:
        raise OutputError(
            f"refusing to write over input images ({len(clashes)}): {'; '.join(clashes[:3])}. "
            "Choose an output_dir that does not hold the inputs."
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"output_dir={out_dir}: cannot create the folder ({e.strerror or e})") from e
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutputError(f"output_dir={out_dir}: the folder is not writable")
    return plan


def write_outputs(
    paths: list[Path],
    disp: np.ndarray,
    color_max: float | None,
    calib: Calibration | None = None,
    rgb: np.ndarray | None = None,
    max_depth: float | None = None,
    confidence: np.ndarray | None = None,
    min_confidence: float = 0.0,
    png16: bool = True,
    right_rgb: np.ndarray | None = None,
) -> None:
    """Write one pair's outputs all or nothing: ``<name>.pfm`` (float32 pixels), ``<name>.png`` (uint16 =
    disparity x 256), ``<name>_color.png`` with its scale in ``<name>_legend.png`` and, with a
    calibration, ``<name>_depth.pfm`` (depth = baseline * f / (disparity + doffs), in the baseline's unit;
    inf where that is not positive) and, when planned, ``<name>.ply`` (the left image's colours at their
    3-D points, without pixels less confident than ``min_confidence``) and ``<name>_confidence.pfm`` /
    ``.png`` (float32 in [0, 1] / 8-bit x 255). The 16-bit PNG holds disparities >= 0 (a network's few
    slightly negative ones become 0); ``png16=False`` leaves it out (a converged pair's negative disparities:
    the PFM holds them)."""
    png = np.clip(np.round(np.maximum(disp, 0) * 256.0), 0, 65535).astype(np.uint16) if png16 else None
    written = [p for i, p in enumerate(paths) if i != 1 or png is not None]
    with atomic_paths(written) as tmps:
        tmp = dict(zip(written, tmps, strict=True))
        write_pfm(tmp[paths[0]], disp)
        if png is not None:
            encode_image(tmp[paths[1]], png, paths[1])
        vmin = min(0.0, float(disp.min()))
        vmax = float(color_max if color_max is not None else max(float(disp.max()), 1e-6))
        colour, legend = colorize_disparity(disp, vmin, vmax), colour_legend(vmin, vmax, disp.shape[1])
        encode_image(tmp[paths[2]], cv2.cvtColor(colour, cv2.COLOR_RGB2BGR), paths[2])
        encode_image(tmp[paths[3]], cv2.cvtColor(legend, cv2.COLOR_RGB2BGR), paths[3])
        for t, p in ((tmp[p], p) for p in paths[4:]):
            if p.name.endswith(DEPTH_SUFFIX):
                assert calib is not None, "a depth file is planned only with a calibration"
                write_pfm(t, calib.depth(disp))
            elif p.name.endswith(CONFIDENCE_SUFFIXES[0]):
                assert confidence is not None, "a confidence file is planned only with a confidence"
                write_pfm(t, confidence.astype(np.float32))
            elif p.name.endswith(RECTIFIED_SUFFIXES):  # the views the network saw
                view = rgb if p.name.endswith(RECTIFIED_SUFFIXES[0]) else right_rgb
                assert view is not None, "rectified views are written only with both views"
                encode_image(t, cv2.cvtColor((np.clip(view, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR), p)
            elif p.name.endswith(CONFIDENCE_SUFFIXES[1]):
                assert confidence is not None
                encode_image(t, np.round(np.clip(confidence, 0, 1) * 255).astype(np.uint8), p)
            else:
                assert calib is not None and rgb is not None, "a point cloud is planned only with a calibration"
                kept = (
                    disp
                    if min_confidence <= 0 or confidence is None
                    else np.where(confidence >= min_confidence, disp, 0.0)
                )
                write_ply(t, *point_cloud(kept, rgb, calib, max_depth))


@dataclass
class PairResult:
    """What ``stereo-infer`` did with one pair: its ``name`` (what its outputs are called below the output
    folder), the input paths, ``size`` [H, W], ``seconds`` of prediction, the disparity's range in pixels,
    whether it reached :data:`SATURATION` of the model's range (``saturated``), the colour image's range
    ``color_range_px``, the ``head`` that answered (networks), the files written (``outputs``) and, with
    ``adapt=true``, the :class:`~stereo.adapt.AdaptReport`."""

    name: str
    left: str
    right: str
    size: list[int]
    seconds: float
    disparity_min: float
    disparity_max: float
    saturated: bool
    color_range_px: list[float]
    head: int | None
    outputs: list[str]
    adaptation: AdaptReport | None = None
    scale: float = 1.0  # the scale it ran at (scale=auto: chosen for this pair)
    disparity_offset: int = 0  # pixels the right view moved (disparity_offset=auto: chosen for this pair)
    matches: MatchReport | None = None  # what the pair's feature matches measured, when they were measured
    rectified: dict[str, Any] | None = None  # how the views were rectified (rectify=calib|matches)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def infer(
    cfg: InferAppConfig | DictConfig, output_dir: str | os.PathLike | None = None
) -> list[PairResult] | VideoResult:
    """Predict disparity for every pair of ``cfg.left``/``cfg.right`` (``conf/infer.yaml``) and write the
    outputs to ``output_dir`` (default ``cfg.output_dir``); returns a :class:`PairResult` per pair.

    ``scale`` < 1 downsamples the images, predicts, and upsamples the disparity (multiplied by
    1/scale): use it when disparities exceed the model's range. ``color_range``: ``image`` (each
    colour PNG spans its own 0..max) or ``fixed`` (0..``color_max``, default the model's max_disp).
    Nothing is written over an input; a failure part-way leaves only complete pairs. With ``video=`` (or
    ``left_video=``/``right_video=``), the frames of a video instead (:mod:`stereo.video`).
    """
    cfg = typed(cfg, InferAppConfig)
    if cfg.video or cfg.left_video:
        return _infer_video(cfg, Path(output_dir if output_dir is not None else cfg.output_dir or "."))
    reader = PairReader.from_config(cfg)
    if cfg.point_cloud and not reader.calibrated:
        raise ConfigError("point_cloud=true needs a calibration: calib=<calib file> or focal_px and baseline")
    out_dir = Path(output_dir if output_dir is not None else cfg.output_dir or ".")
    pairs = find_pairs(str(cfg.left), str(cfg.right)) if cfg.layout == "pair" else find_frames(str(cfg.left))
    pairs, shard = select_shard(pairs, cfg.shard)
    dev = _local_device(resolve_device(cfg.device), cfg.device, cfg.shard)
    want_conf = bool(cfg.confidence) or (bool(cfg.point_cloud) and cfg.min_confidence > 0)
    if cfg.min_confidence > 0 and not cfg.point_cloud:
        log.warning("min_confidence=%g has no effect without point_cloud=true (it drops points of the cloud)",
                    cfg.min_confidence)  # fmt: skip
    if cfg.backend == "onnxruntime":
        _refuse_for_onnx(cfg, want_conf)
    network, origin = build_method("onnxruntime" if cfg.backend == "onnxruntime" else "checkpoint", cfg, dev)
    model = StereoModel(network, dev, cfg.precision, origin["checkpoint"])
    model.adaptation_steps(bool(cfg.adapt), int(cfg.adapt_steps))  # refused before any output is written
    if cfg.scale != "auto":
        _check_scaled_sizes(pairs, float(cfg.scale), str(cfg.layout))
    # Every input and the model are known to be usable before the output folder is touched.
    plan = plan_outputs(pairs, out_dir, depth=reader.calibrated, cloud=bool(cfg.point_cloud),
                        confidence=cfg.confidence, rectified=cfg.save_rectified)  # fmt: skip
    if cfg.skip_existing:
        pairs = _not_done(pairs, plan)
    with _lock(out_dir, shard, [q for pair in pairs for q in plan[pair.name]]):
        results = [_infer_pair(pair, plan[pair.name], model, cfg, reader, want_conf) for pair in pairs]
        part = "" if shard is None else f".shard-{shard[0]}-of-{shard[1]}"
        write_json(out_dir / f"pairs{part}.json", {"pairs": [r.to_json() for r in results]})
        if reader.rectifications:  # the rectified cameras the outputs are in (P1, P2, Q), one per image size
            write_json(
                out_dir / "rectification.json",
                {"rectifications": [r.to_json() for r in reader.rectifications.values()]},
            )
        return results


def _infer_video(cfg: InferAppConfig, out_dir: Path) -> VideoResult:
    """stereo-infer video=...: every frame, resumable, then the videos (:func:`stereo.video.infer_video`)."""
    dev = resolve_device(cfg.device)
    want_conf = bool(cfg.confidence)
    if cfg.backend == "onnxruntime":
        _refuse_for_onnx(cfg, want_conf)
    network, origin = build_method("onnxruntime" if cfg.backend == "onnxruntime" else "checkpoint", cfg, dev)
    model = StereoModel(network, dev, cfg.precision, origin["checkpoint"])
    with output_lock(out_dir, "stereo-infer"):
        r = infer_video(model, out_dir, cfg.video, str(cfg.layout), cfg.left_video, cfg.right_video, want_conf,
                        float(cfg.scale))  # fmt: skip
    print(f"{r.name}: {r.frames} frames ({r.predicted} predicted now), colour range 0..{r.color_range_px:.1f} px; "
          f"{', '.join(r.outputs)}", flush=True)  # fmt: skip
    return r


def _refuse_for_onnx(cfg: InferAppConfig, want_conf: bool) -> None:
    """backend=onnxruntime: the .onnx file is the network as exported; a setting it cannot honour is refused."""
    if not cfg.onnx:
        raise ConfigError("backend=onnxruntime needs onnx=<file.onnx> (made by stereo-export)")
    given, defaults = {k: v for k, v in vars(cfg).items() if k in RUNTIME_KEYS}, vars(RuntimeConfig())
    ignored = [f"checkpoint={cfg.checkpoint}"] if cfg.checkpoint is not None else []
    ignored += [f"{k}={_shown(v)}" for k, v in given.items() if k != "device" and v != defaults[k]]
    ignored += ["confidence=true" if cfg.confidence else "min_confidence"] if want_conf else []
    ignored += ["adapt=true"] if cfg.adapt else []
    if ignored:
        raise ConfigError(f"{', '.join(ignored)}: not available with backend=onnxruntime (the .onnx file holds "
                          "the network as exported, in fp32, with every head, its regression and refinement, "
                          "returning the disparity only); drop it or use backend=torch")  # fmt: skip


@contextlib.contextmanager
def _lock(out_dir: Path, shard: tuple[int, int] | None, outputs: list[Path]) -> Iterator[None]:
    """The output folder's lock: one writer per folder (its stale temporary files go), or for the shards of
    one job that share the folder, a lock of each shard's own, which cleans up only after itself."""
    if shard is None:
        with output_lock(out_dir, "stereo-infer"):
            yield
        return
    i, n = shard
    with output_lock(out_dir, f"stereo-infer shard {i}/{n}", name=f"{LOCK_NAME}.shard-{i}-of-{n}", clean=False):
        for p in remove_stale_temps_of(outputs):
            log.info("removed %s, left by an interrupted run", p)
        yield


@dataclass
class PairReader:
    """How a pair's files become the views the network sees: split a frame (``layout``), undistort and
    rectify with a raw calibration (``rectify=calib``) or from the pair's matches (``rectify=matches``);
    and the calibration of those views (for depth), when there is one."""

    layout: str
    mode: str  # calib | matches | off
    raw: RawCalibration | None = None
    calib: Calibration | None = None  # of rectified cameras (calib.txt, KITTI, focal_px/baseline)
    rectifications: dict[tuple[int, int], Rectification] = field(default_factory=dict)  # by image size

    @classmethod
    def from_config(cls, cfg: InferAppConfig) -> PairReader:
        return cls.build(str(cfg.layout), cfg.calib, str(cfg.rectify), cfg.focal_px, cfg.baseline, cfg.cx, cfg.cy,
                         cfg.doffs)  # fmt: skip

    @classmethod
    def build(cls, layout: str, calib: str | None, rectify: str = "auto", focal_px: float | None = None,
              baseline: float | None = None, cx: float | None = None, cy: float | None = None,
              doffs: float | None = None) -> PairReader:  # fmt: skip
        """A reader for ``calib=`` (raw or rectified cameras) and ``rectify=`` as stereo-infer takes them."""
        raw = read_raw_calibration(calib) if calib and is_raw_calibration(calib) else None
        mode = rectify if rectify != "auto" else ("calib" if raw is not None else "off")
        if mode == "calib" and raw is None:
            raise ConfigError(f"rectify=calib: calib={calib} describes rectified cameras (nothing to undistort); "
                              "use rectify=off, or a raw calibration (OpenCV, Kalibr, ROS)")  # fmt: skip
        if raw is not None and mode != "calib":
            raise ConfigError(f"calib={calib} describes raw cameras: its depth holds only in the frame "
                              f"rectify=calib makes (not rectify={mode})")  # fmt: skip
        rectified = None if raw else calibration_from(calib, focal_px, baseline, cx, cy, doffs)
        return cls(layout, mode, raw, rectified)

    @property
    def calibrated(self) -> bool:
        return self.calib is not None or self.raw is not None

    def read(self, pair: Pair) -> tuple[np.ndarray, np.ndarray, Calibration | None, dict[str, Any] | None]:
        """The views (H, W, 3) float RGB, their calibration and what rectified them (for pairs.json)."""
        if self.layout == "pair":
            left, right = read_rgb(pair.left), read_rgb(pair.right)
            check_same_size(left, right, pair.left, pair.right)
        else:
            left, right = split_frame(read_rgb(pair.left), self.layout, pair.left)
        if self.mode == "matches":
            left, right, info = rectify_from_matches(left, right, pair.name)
            return left, right, None, {"rectify": "matches", **info}
        if self.raw is None:
            return left, right, self.calib, None
        size = (left.shape[1], left.shape[0])
        if size not in self.rectifications:
            self.rectifications[size] = rectification(self.raw, size)
        rect = self.rectifications[size]
        return (*rect.apply(left, right), rect.calibration(), {"rectify": "calib", "source": rect.source})


def select_shard(pairs: list[Pair], shard: str | None) -> tuple[list[Pair], tuple[int, int] | None]:
    """The pairs of ``shard`` (``i/n``: every n-th pair by name from the i-th; ``auto``: i and n from
    ``RANK``/``WORLD_SIZE`` (torchrun) or ``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT``) and (i, n);
    all pairs and None without a shard. Nothing is read from the environment without ``auto``; the shard
    in use is printed."""
    if not shard:
        return pairs, None
    if shard == "auto":
        i, n, source = _shard_from_environment()
    else:
        i, n = (int(v) for v in shard.split("/"))
        source = "shard="
    if not 0 <= i < n:
        raise ConfigError(f"shard={shard}: part {i} of {n} ({source}) is out of range; expected 0 <= i < n")
    mine = sorted(pairs, key=lambda p: p.name)[i::n]
    print(f"shard {i}/{n} ({source}): {len(mine)} of {len(pairs)} pair(s)", flush=True)
    return mine, (i, n)


def _local_device(device: torch.device, asked: str, shard: str | None) -> torch.device:
    """Under torchrun (``shard=auto`` with ``LOCAL_RANK`` set), ``device=auto`` or ``cuda`` takes this
    process's own GPU, ``cuda:<LOCAL_RANK>``, as a training run does; any other device stays."""
    local = os.environ.get("LOCAL_RANK")
    if shard != "auto" or local is None or device.type != "cuda" or asked not in ("auto", "cuda"):
        return device
    return resolve_device(f"cuda:{int(local) % max(torch.cuda.device_count(), 1)}")


def _shard_from_environment() -> tuple[int, int, str]:
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), "RANK/WORLD_SIZE"
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))  # arrays may start at any index (--array=1-8)
        i = int(env["SLURM_ARRAY_TASK_ID"]) - first
        return i, int(env["SLURM_ARRAY_TASK_COUNT"]), "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT"
    raise ConfigError(
        "shard=auto: neither RANK/WORLD_SIZE (torchrun) nor SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT (a SLURM array) "
        "is set; give shard=i/n"
    )


def _not_done(pairs: list[Pair], plan: dict[str, list[Path]]) -> list[Pair]:
    """skip_existing: the pairs whose outputs are not all present (outputs are written all or nothing)."""
    todo = [p for p in pairs if not all(q.is_file() for q in plan[p.name])]
    if len(todo) < len(pairs):
        print(f"skip_existing: {len(pairs) - len(todo)} of {len(pairs)} pair(s) done already", flush=True)
    return todo


def _shown(value: Any) -> str:
    """A config value as it is written on the command line (``false``, ``local``, ``4.0``)."""
    if isinstance(value, Enum):
        return str(value.value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _pair_range(
    left: np.ndarray, right: np.ndarray, pair: Pair, cfg: InferAppConfig, max_disp: float
) -> tuple[MatchReport | None, int, float]:
    """The pair's feature matches (when the check or an ``auto`` key needs them; the check runs here), the
    right view's shift and the scale to run at."""
    auto_offset, auto_scale = cfg.disparity_offset == "auto", cfg.scale == "auto"
    matches = None
    if cfg.rectification_check != "off" or auto_offset or auto_scale:
        matches = measure_pair(left, right)
        run_check(matches, pair.name, str(cfg.rectification_check))
        if matches is None and (auto_offset or auto_scale):
            log.warning("%s: too few feature matches for disparity_offset/scale=auto: offset 0, scale 1", pair.name)
    offset = offset_for(matches) if auto_offset else int(cfg.disparity_offset)
    scale = scale_for(matches, max_disp, offset) if auto_scale else float(cfg.scale)
    if auto_scale:
        scaled_size(left.shape[0], left.shape[1], scale, f"{pair.left} with scale=auto ({scale:g})")
    return matches, offset, scale


def _check_scaled_sizes(pairs: list[Pair], scale: float, layout: str = "pair") -> None:
    """Refuse a ``scale`` that shrinks any left image below :data:`~stereo.api.MIN_SIDE` pixels a side
    (sizes read from the headers, before any output is written; a frame's views are half of it)."""
    for pair in pairs:
        size = image_size(pair.left)
        if size is not None:
            w, h = size[0] // (2 if layout == "sbs" else 1), size[1] // (2 if layout == "tb" else 1)
            scaled_size(h, w, scale, f"{pair.left} ({w}x{h}{' per view' if layout != 'pair' else ''})")


def _infer_pair(
    pair: Pair, paths: list[Path], model: StereoModel, cfg: InferAppConfig, reader: PairReader, want_conf: bool
) -> PairResult:
    """Predict one pair through the Python API, write its outputs all or nothing, print one line."""
    limg, rimg, calib, rectified = reader.read(pair)
    h, w = limg.shape[:2]
    matches, offset, scale = _pair_range(limg, rimg, pair, cfg, model.max_disp)
    t0 = time.perf_counter()
    pred = model.predict(limg, shift_right_view(rimg, offset), scale=scale, confidence=want_conf,
                         adapt=bool(cfg.adapt), adapt_steps=int(cfg.adapt_steps))  # fmt: skip
    disp = np.asarray(pred.disparity) - np.float32(offset)  # numpy in, numpy out; in the views' own pixels
    confidence = None if pred.confidence is None else np.asarray(pred.confidence)
    seconds = time.perf_counter() - t0
    cmax = (cfg.color_max or float(model.max_disp)) if cfg.color_range == "fixed" else None
    png16 = offset == 0 or float(disp.min()) >= 0
    write_outputs(paths, disp, cmax, calib, limg, cfg.max_depth, confidence, float(cfg.min_confidence), png16, rimg)
    saturated = float(disp.max()) + offset >= SATURATION * model.max_disp * (1 / scale)
    s = PairResult(
        name=pair.name,
        left=str(pair.left),
        right=str(pair.right),
        size=[h, w],
        seconds=seconds,
        disparity_min=float(disp.min()),
        disparity_max=float(disp.max()),
        saturated=saturated,
        color_range_px=[0.0, float(cmax if cmax is not None else max(float(disp.max()), 1e-6))],
        head=pred.heads[0] if pred.heads else None,
        outputs=[str(p) for p in paths if png16 or p != paths[1]],
        adaptation=pred.adaptation,
        scale=scale,
        disparity_offset=offset,
        matches=matches,
        rectified=rectified,
    )
    msg = f"{pair.name}: {w}x{h}, {seconds:.2f} s, disparity {s.disparity_min:.1f}..{s.disparity_max:.1f} px"
    if cfg.early_exit != "off" and cfg.backend == "torch":
        msg += f", answered by head {s.head} of {model.network.hourglasses}"
    if pred.adaptation is not None:
        msg += f", {pred.adaptation.describe()}"
    if cfg.scale == "auto":
        msg += f", scale {scale:g} (auto)"
    if cfg.disparity_offset == "auto" or offset:
        msg += f", right view shifted {offset} px" + (" (auto)" if cfg.disparity_offset == "auto" else "")
    if rectified is not None:
        how = "from its calibration" if rectified["rectify"] == "calib" else (
            f"from {rectified['inliers']} feature matches (depth has no metric scale)")  # fmt: skip
        msg += f", rectified {how}"
    if not png16:
        msg += f"; negative disparities: no 16-bit PNG, {paths[0].name} holds them"
    if saturated:
        msg += (
            f"  WARNING: reaches {SATURATION:.0%} of the model's range ({model.max_disp / scale:g} px); "
            "larger disparities may be clipped: try scale=0.5, or scale=auto"
        )
    print(msg, flush=True)
    return s
