"""``stereo-app``: the Python API behind a local web page (Gradio, the optional extra ``app``).

A user drops a left and a right image (or one side-by-side frame) and gets the colour disparity with its
legend, the confidence, the left image with its doubtful pixels shaded, and an interactive 3-D point
cloud, with PFM, 16-bit PNG and PLY downloads. Each request runs :meth:`stereo.api.StereoModel.predict`
and :func:`stereo.infer.write_outputs`, as ``stereo-infer`` does, so the files are the same. The model
is loaded once; requests queue and run one at a time.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stereo.api import StereoModel, load_model
from stereo.calib import Calibration, point_cloud, write_glb
from stereo.config import AppAppConfig, runtime_config
from stereo.data.pairs import Pair
from stereo.errors import ConfigError, DataError, StereoError
from stereo.infer import CLOUD_SUFFIX, CONFIDENCE_SUFFIXES, DEPTH_SUFFIX, PairReader, output_paths, write_outputs
from stereo.matches import check_message, measure_pair

log = logging.getLogger("stereo.app")
EXAMPLES = Path(__file__).resolve().parent / "examples"
SHADE = np.array([0.85, 0.1, 0.1], np.float32)  # the tint of pixels below the confidence threshold
# Without a calibration the 3-D view still shows the shape: a focal length of one image width and a
# baseline of 1 (depth in baselines), said so on the page.
RELATIVE = "relative scale (focal length = image width, baseline = 1); give both, or a calibration file, for metres"


def examples() -> list[list[str | None]]:
    """The example inputs shipped with the package (generated scenes, never a held-out photograph): rows of
    (left, right, side-by-side)."""
    rows: list[list[str | None]] = []
    for left in sorted(EXAMPLES.glob("*_left.png")):
        right = left.with_name(left.name.replace("_left", "_right"))
        if right.is_file():
            rows.append([str(left), str(right), None])
    rows += [[None, None, str(p)] for p in sorted(EXAMPLES.glob("*_side_by_side.png"))]
    return rows


@dataclass
class Request:
    """One request of the page: the images (paths of the uploads) and the page's settings."""

    left: str | None
    right: str | None
    side_by_side: str | None
    scale: float
    min_confidence: float
    refinement: bool
    adapt: bool
    focal_px: float | None
    baseline: float | None
    calib: str | None


@dataclass
class Answer:
    """What the page shows for a request: image paths, the GLB, the downloads and one status line."""

    color: str | None = None
    legend: str | None = None
    confidence: str | None = None
    shaded: str | None = None
    cloud: str | None = None
    files: list[str] | None = None
    status: str = ""

    def outputs(self) -> tuple:
        return self.color, self.legend, self.confidence, self.shaded, self.cloud, self.files, self.status


class DepthService:
    """The model, loaded once, and what a request does with it. Requests arrive one at a time (the page's
    queue), so changing the model's ``refinement`` setting for one of them is safe."""

    def __init__(self, cfg: AppAppConfig, work_dir: str | os.PathLike | None = None) -> None:
        self.cfg = cfg
        self.model: StereoModel = load_model(cfg.checkpoint, cfg.device, str(cfg.precision), **_runtime_keys(cfg))
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="stereo-app-"))
        self.count = 0

    @property
    def refines(self) -> bool:
        """Whether the network has a sub-pixel refinement the page may turn off."""
        return bool(getattr(getattr(self.model.network, "refinement", None), "refines", False))

    def answer(self, request: Request) -> Answer:
        """The page's outputs for ``request``; a user error becomes the status line, never a traceback."""
        try:
            return self._answer(request)
        except (StereoError, OSError, ValueError) as e:
            text = _one_line(e)
            for upload in (request.left, request.right, request.side_by_side, request.calib):
                if upload:  # the upload's name as the user knows it, not the server's temporary folder
                    text = text.replace(str(Path(upload).parent) + os.sep, "")
            return Answer(status=f"error: {text}")

    def _answer(self, r: Request) -> Answer:
        pair, layout = self._pair(r)
        # stereo-infer's reader: the same views (rectified first for raw cameras) and calibration
        limg, rimg, calib, _ = PairReader.build(layout, r.calib, focal_px=r.focal_px, baseline=r.baseline).read(pair)
        name = pair.name
        self.count += 1
        out = self.work_dir / f"{self.count:05d}"
        out.mkdir(parents=True)
        paths = output_paths(out, name, depth=calib is not None, cloud=True, confidence=True)
        if self.refines:
            self.model.network.set_runtime(refinement=bool(r.refinement))
        t0 = time.perf_counter()
        pred = self.model.predict(limg, rimg, scale=float(r.scale), confidence=True, adapt=bool(r.adapt),
                                  adapt_steps=self.cfg.adapt_steps)  # fmt: skip
        seconds = time.perf_counter() - t0
        disp, conf = np.asarray(pred.disparity), np.asarray(pred.confidence)
        cloud_calib = calib or Calibration(float(disp.shape[1]), None, None, 1.0)
        write_outputs(paths, disp, None, cloud_calib, limg, None, conf, 0.0)
        by = {_suffix(p, name): p for p in paths}
        shaded = out / f"{name}_shaded.png"
        cv2.imwrite(str(shaded), cv2.cvtColor(_shade(limg, conf, r.min_confidence), cv2.COLOR_RGB2BGR))
        glb = out / f"{name}.glb"
        confident = np.where(conf >= r.min_confidence, disp, 0.0)  # the PLY download keeps every point
        pts, colours = point_cloud(confident, limg, cloud_calib)
        keep = _viewed(pts, self.cfg.max_points)
        write_glb(glb, _centred(pts[keep]), colours[keep])
        files = [str(by[s]) for s in (".pfm", ".png", CLOUD_SUFFIX, CONFIDENCE_SUFFIXES[0], DEPTH_SUFFIX) if s in by]
        h, w = disp.shape
        shown, scale = len(keep), "calibrated" if calib else RELATIVE
        status = (f"{w}x{h} in {seconds:.2f} s on {self.model.device} ({self.model.precision}); disparity "
                  f"{float(disp.min()):.1f}..{float(disp.max()):.1f} px; {float((conf < r.min_confidence).mean()):.0%} "
                  f"of pixels below confidence {r.min_confidence:g}; 3-D view: {shown:,} points, {scale}")  # fmt: skip
        if pred.adaptation is not None:
            status += f"; {pred.adaptation.describe()}"
        if warning := check_message(measure_pair(limg, rimg), name):  # as stereo-infer's rectification check
            status += f". Warning: {warning}"
        return Answer(str(by["_color.png"]), str(by["_legend.png"]), str(by[CONFIDENCE_SUFFIXES[1]]), str(shaded),
                      str(glb), files, status)  # fmt: skip

    def _pair(self, r: Request) -> tuple[Pair, str]:
        """The uploads as a :class:`~stereo.data.pairs.Pair` with a name for its files, and its layout."""
        if r.side_by_side and not (r.left or r.right):
            frame = Path(r.side_by_side)
            return Pair(frame, frame, _stem(r.side_by_side)), "sbs"
        if r.side_by_side:
            raise DataError("give a left and a right image, or one side-by-side frame, not both")
        if not (r.left and r.right):
            raise DataError("give a left and a right image (or one side-by-side frame)")
        return Pair(Path(r.left), Path(r.right), _stem(r.left)), "pair"


def _runtime_keys(cfg: AppAppConfig) -> dict[str, Any]:
    """The runtime settings of ``cfg`` other than device and precision (load_model takes those apart)."""
    runtime = vars(runtime_config(cfg))
    return {k: v for k, v in runtime.items() if k not in ("device", "precision")}


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _stem(path: str) -> str:
    """A file name for outputs: the upload's stem, without the left/right/side-by-side words."""
    stem = Path(path).stem
    for word in ("_side_by_side", "_left", "_right"):
        stem = stem.removesuffix(word)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "pair"


def _suffix(path: Path, name: str) -> str:
    return path.name[len(name) :]


def _shade(rgb: np.ndarray, confidence: np.ndarray, threshold: float) -> np.ndarray:
    """The left image (H, W, 3) as uint8 with pixels less confident than ``threshold`` tinted."""
    low = (confidence < threshold)[..., None]
    out = np.where(low, 0.35 * rgb + 0.65 * SHADE, rgb)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def _viewed(points: np.ndarray, max_points: int, near: float = 0.95) -> np.ndarray:
    """Indices of the points the 3-D view shows: the nearest ``near`` of them (the few farthest, at disparities
    near zero, would stretch the view along the line of sight), every k-th, at most ``max_points``."""
    if not len(points):
        return np.arange(0)
    idx = np.flatnonzero(points[:, 2] <= np.quantile(points[:, 2], near))
    return idx[:: max(1, -(-len(idx) // max_points))]


def _centred(points: np.ndarray) -> np.ndarray:
    """Points moved so their median sits at the origin, where the viewer's camera looks."""
    return points - np.median(points, axis=0) if len(points) else points


def port_error(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served (in use, or not an address of this machine), or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return f"port={port} is in use on {host} (another stereo-app?); choose another, e.g. port={port + 1}"
            return f"host={host} port={port}: cannot serve there ({e.strerror or e})"
    return None


def build_page(service: DepthService) -> Any:
    """The Gradio page over ``service``."""
    import gradio as gr

    cfg = service.cfg
    with gr.Blocks(title="stereo: depth from two photos") as page:
        gr.Markdown("## stereo: depth from a stereo pair\nDrop a rectified left and right image, or one "
                    "side-by-side frame (left half | right half). Disparity in pixels of the left view.")  # fmt: skip
        with gr.Row():
            left = gr.File(label="left image", type="filepath", elem_id="left")
            right = gr.File(label="right image", type="filepath", elem_id="right")
            sbs = gr.File(label="or one side-by-side frame", type="filepath", elem_id="side_by_side")
        with gr.Row():
            scale = gr.Slider(0.1, 1.0, value=cfg.scale, step=0.05, label="scale (downsample first: for "
                              "disparities beyond the model's range)", elem_id="scale")  # fmt: skip
            threshold = gr.Slider(0.0, 1.0, value=cfg.min_confidence, step=0.05, elem_id="min_confidence",
                                  label="confidence threshold (shaded below; left out of the 3-D view)")  # fmt: skip
            refinement = gr.Checkbox(value=True, label="sub-pixel refinement", interactive=service.refines,
                                     elem_id="refinement")  # fmt: skip
            adapt = gr.Checkbox(value=False, label=f"adapt to this pair first ({cfg.adapt_steps} steps, slower)",
                                elem_id="adapt")  # fmt: skip
        with gr.Accordion("camera (for metric depth)", open=False):
            with gr.Row():
                focal = gr.Number(label="focal length, px", value=None, elem_id="focal_px")
                baseline = gr.Number(label="baseline (its unit is the depth's)", value=None, elem_id="baseline")
                what = "Middlebury/ETH3D calib.txt, KITTI, or raw cameras (OpenCV YAML/XML/JSON, Kalibr): rectified"
                calib = gr.File(label=f"or a calibration file: {what}", type="filepath")
        run = gr.Button("Estimate depth", variant="primary", elem_id="run")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            color = gr.Image(label="disparity", type="filepath", format="png", elem_id="color")
            confidence = gr.Image(label="confidence", type="filepath", format="png", elem_id="confidence")
        legend = gr.Image(label="colour scale (px)", type="filepath", format="png", height=80, elem_id="legend")
        with gr.Row():
            shaded = gr.Image(label="left image, doubtful pixels shaded", type="filepath", format="png",
                              elem_id="shaded")  # fmt: skip
            cloud = gr.Model3D(label="3-D point cloud (drag to turn)", elem_id="cloud", clear_color=(1, 1, 1, 1))
        files = gr.File(label="downloads: PFM, 16-bit PNG (x256), PLY, confidence", file_count="multiple",
                        elem_id="files")  # fmt: skip
        gr.Examples(examples(), inputs=[left, right, sbs], label="examples (generated scenes)")
        gr.Markdown(f"Model: `{service.model.checkpoint or 'untrained'}`, max disparity {service.model.max_disp:g} "
                    f"px, on {service.model.device}.")  # fmt: skip

        def go(*values: Any) -> tuple:
            return service.answer(Request(*values)).outputs()

        run.click(go, [left, right, sbs, scale, threshold, refinement, adapt, focal, baseline, calib],
                  [color, legend, confidence, shaded, cloud, files, status], concurrency_limit=1)  # fmt: skip
    return page


def serve(cfg: AppAppConfig, block: bool = True) -> Any:
    """Load the model, build the page and serve it on ``cfg.host:cfg.port``; returns the page (with
    ``block=False``, while it serves in a thread: ``page.close()`` stops it)."""
    if problem := port_error(cfg.host, cfg.port):
        raise ConfigError(problem)
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("host=%s: the page is open to anyone who can reach this machine on port %d", cfg.host, cfg.port)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: many machines have no internet
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests, one line each
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError("stereo-app needs Gradio: pip install 'stereo[app]' (or .[app] in a checkout)") from None
    service = DepthService(cfg)
    page = build_page(service)
    page.queue(default_concurrency_limit=1)
    print(f"stereo-app: http://{cfg.host}:{cfg.port} (Ctrl-C stops it)", flush=True)
    try:
        page.launch(server_name=cfg.host, server_port=cfg.port, prevent_thread_lock=not block, show_error=False,
                    quiet=True, allowed_paths=[str(service.work_dir), str(EXAMPLES)])  # fmt: skip
    finally:
        if block:  # served until Ctrl-C or SIGTERM: the requests' files go with the server
            shutil.rmtree(service.work_dir, ignore_errors=True)
    return page
