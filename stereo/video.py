"""Stereo video: ``stereo-infer video=FILE layout=sbs|tb``, or ``left_video=`` and ``right_video=``.

Every frame's disparity (and confidence) is written as a PFM under ``<output_dir>/<name>/frames/`` as soon
as it exists: they are the run's record, so a rerun continues after the last complete frame. Once every
frame has one, the videos are encoded from the PFMs with OpenCV's ``VideoWriter`` at the input's frame
rate: ``<name>_color.mp4`` (the colour disparity, one range for the whole video), ``<name>_disparity.mp4``
(grey, 0..that range) and, with ``confidence=true``, ``<name>_confidence.mp4``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stereo.api import StereoModel
from stereo.data.images import split_frame
from stereo.data.pfm import read_pfm, write_pfm
from stereo.errors import DataError, MissingFileError, OutputError
from stereo.io import atomic_paths, atomic_write
from stereo.progress import progress
from stereo.visualize import colorize_disparity

log = logging.getLogger(__name__)
FOURCC = "mp4v"  # MPEG-4 part 2: encoded by the FFmpeg inside opencv-python's wheels, played almost anywhere


@dataclass
class VideoResult:
    """A video run: its name, frames, those predicted in this run, the frame rate, the colour range (px)
    and the videos written."""

    name: str
    frames: int
    predicted: int
    fps: float
    color_range_px: float
    outputs: list[str]


class _Reader:
    """Frames of one video file, as float RGB (H, W, 3) in [0, 1]."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise MissingFileError(f"video not found: {self.path}")
        self.capture = cv2.VideoCapture(str(self.path))
        if not self.capture.isOpened():
            raise DataError(f"{self.path}: OpenCV cannot open this video (its container or codec is not one the "
                            "FFmpeg in opencv-python reads; convert it, e.g. to H.264 MP4)")  # fmt: skip
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS)) or 25.0
        self.count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            ok, frame = self.capture.read()
            if not ok:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(255)


def stereo_frames(video: str | None, layout: str, left: str | None, right: str | None
                  ) -> tuple[str, float, int, Iterator[tuple[np.ndarray, np.ndarray]]]:  # fmt: skip
    """(name, frame rate, frame count, the (left, right) views of each frame) of ``video`` with ``layout``
    (sbs | tb), or of two videos ``left`` and ``right`` read in step."""
    if video:
        reader = _Reader(video)
        views = (split_frame(f, layout, f"{reader.path} frame {i}") for i, f in enumerate(reader))
        return reader.path.stem, reader.fps, reader.count, views
    if not (left and right):
        raise DataError("give video= (with layout=sbs|tb), or both left_video= and right_video=")
    a, b = _Reader(left), _Reader(right)
    if a.count and b.count and a.count != b.count:
        log.warning("%s has %d frames and %s %d: the pairs stop at the shorter", a.path, a.count, b.path, b.count)
    count = min(a.count, b.count) if a.count and b.count else a.count or b.count
    return a.path.stem, a.fps, count, zip(a, b, strict=False)  # the shorter video ends the pairs


def infer_video(model: StereoModel, out_dir: Path, video: str | None, layout: str, left: str | None,
                right: str | None, confidence: bool = False, scale: float = 1.0) -> VideoResult:  # fmt: skip
    """Predict every frame (resuming after the last frame whose PFM exists), then encode the videos."""
    name, fps, count, views = stereo_frames(video, layout, left, right)
    name = name if name.strip(".") else "video"  # a file named "...mp4" must not lead out of out_dir
    frames_dir = out_dir / name / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    done = _complete_frames(frames_dir, confidence)
    if done:
        log.info("%s: %d frame(s) predicted already; continuing after them", name, done)
    predicted = 0
    for i, (lv, rv) in enumerate(progress(views, total=count or None, desc=name, unit="frame")):
        if i < done:
            continue
        pred = model.predict(lv, rv, scale=scale, confidence=confidence)
        if confidence:  # the confidence first: a frame is complete once its disparity PFM exists
            with atomic_write(frames_dir / f"{i:06d}_confidence.pfm") as tmp:
                write_pfm(tmp, np.asarray(pred.confidence, np.float32))
        with atomic_write(frames_dir / f"{i:06d}.pfm") as tmp:
            write_pfm(tmp, np.asarray(pred.disparity, np.float32))
        predicted += 1
    total = _complete_frames(frames_dir, confidence)
    if total == 0:
        raise DataError(f"{video or left}: no frame could be read")
    vmax, outputs = _encode(out_dir, name, frames_dir, total, fps, confidence, model.max_disp)
    return VideoResult(name, total, predicted, fps, vmax, outputs)


def _complete_frames(frames_dir: Path, confidence: bool) -> int:
    """How many frames from the first have their PFMs (the run's record)."""
    n = 0
    while (frames_dir / f"{n:06d}.pfm").is_file() and (
        not confidence or (frames_dir / f"{n:06d}_confidence.pfm").is_file()
    ):
        n += 1
    return n


def _encode(out_dir: Path, name: str, frames_dir: Path, count: int, fps: float, confidence: bool,
            max_disp: float) -> tuple[float, list[str]]:  # fmt: skip
    """The videos from the PFMs: colour and grey disparity over one range (the largest disparity of the
    video, at most the model's range) and the confidence."""
    vmax = max(
        1e-6, min(float(max_disp), max(float(read_pfm(frames_dir / f"{i:06d}.pfm").max()) for i in range(count)))
    )
    h, w = read_pfm(frames_dir / f"{0:06d}.pfm").shape
    kinds = ["color", "disparity"] + (["confidence"] if confidence else [])
    paths = {k: out_dir / f"{name}_{k}.mp4" for k in kinds}
    with atomic_paths(list(paths.values())) as tmps:  # a video appears whole, or not at all
        _write_videos(dict(zip(kinds, tmps, strict=True)), frames_dir, count, fps, (w, h), vmax, paths)
    return vmax, [str(p) for p in paths.values()]


def _write_videos(tmps: dict[str, Path], frames_dir: Path, count: int, fps: float, size: tuple[int, int],
                  vmax: float, finals: dict[str, Path]) -> None:  # fmt: skip
    writers = {k: cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*FOURCC), fps, size) for k, p in tmps.items()}
    confidence = "confidence" in writers
    try:
        for k, wr in writers.items():
            if not wr.isOpened():
                raise OutputError(f"{finals[k]}: OpenCV cannot write this video (codec {FOURCC}); check the folder "
                                  "and that opencv-python has its FFmpeg")  # fmt: skip
        for i in range(count):
            disp = read_pfm(frames_dir / f"{i:06d}.pfm")
            writers["color"].write(cv2.cvtColor(colorize_disparity(disp, 0.0, vmax), cv2.COLOR_RGB2BGR))
            grey = np.clip(disp / vmax * 255 + 0.5, 0, 255).astype(np.uint8)
            writers["disparity"].write(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
            if confidence:
                conf = np.clip(read_pfm(frames_dir / f"{i:06d}_confidence.pfm") * 255 + 0.5, 0, 255).astype(np.uint8)
                writers["confidence"].write(cv2.cvtColor(conf, cv2.COLOR_GRAY2BGR))
    finally:
        for wr in writers.values():
            wr.release()
