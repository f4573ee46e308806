"""ONNX export of a checkpoint, and an ONNX Runtime backend with ``predict``'s interface.

The exported graph takes ``left`` and ``right`` (B, 3, H, W) RGB in [0, 1] and returns ``disparity``
(B, H, W) in pixels, with batch, height and width dynamic. Two things are fixed at export time, so
the traced network is exact only above a minimum size (stored in the file's metadata with the model
config): the spatial-pyramid pools (a pool wider than the feature map would change its kernel) and
the cost volume's shifts (the width of the feature map must cover its disparities). The graph therefore
pads its inputs itself (edge replication, bottom/right, as :func:`stereo.models.run` does) to a multiple
of the network's size divisor (16, or 32 with ``downsample=8``) and at least that size, and crops the
disparity back: any input size gives the network's answer, also in plain ONNX Runtime.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stereo.checkpoint import load_network
from stereo.config import to_plain
from stereo.errors import CheckpointError, ConfigError, MissingFileError
from stereo.io import atomic_write, refuse_package_path
from stereo.models import configure_runtime
from stereo.models.output import StereoOutput


def minimum_size(model: torch.nn.Module) -> tuple[int, int]:
    """The smallest (H, W), multiples of the size divisor, at which the exported graph equals the PyTorch model."""
    k = model.size_divisor
    pool = getattr(model, "downsample", 4) * max(model.feature_extraction.pool_sizes)  # image pixels
    h = -(-max(pool, k) // k) * k
    w = -(-max(pool, model.max_disp, k) // k) * k
    return h, w


class _PaddedToMinimum(torch.nn.Module):
    """The network as exported: inputs padded inside the graph (edge replication, bottom and right) to a
    multiple of its size divisor and at least the size the graph was traced at, output cropped back. The
    traced branches hold from that size up, so the graph answers correctly for any input size, also when
    run without stereo's own padding (plain ONNX Runtime)."""

    def __init__(self, network: torch.nn.Module, min_height: int, min_width: int) -> None:
        super().__init__()
        self.network, self.min_height, self.min_width = network, min_height, min_width

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        k = self.network.size_divisor
        shape = torch._shape_as_tensor(left)  # traced as a Shape op: the sizes stay dynamic in the graph
        h, w = shape[2], shape[3]
        th = torch.clamp((h + k - 1) // k * k, min=self.min_height)
        tw = torch.clamp((w + k - 1) // k * k, min=self.min_width)
        # edge replication as a gather: row/column i of the padded image is min(i, last) of the input
        rows, cols = torch.clamp(torch.arange(th), max=h - 1), torch.clamp(torch.arange(tw), max=w - 1)
        left = left.index_select(2, rows).index_select(3, cols)
        right = right.index_select(2, rows).index_select(3, cols)
        disparity = self.network.infer(left, right).disparity
        return disparity.index_select(1, torch.arange(h)).index_select(2, torch.arange(w))


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote: the file (``path``), its ``opset``, the network's range ``max_disp``
    (pixels), the size it was traced at (``min_height``, ``min_width``: the graph pads smaller inputs up to
    it) and every ``metadata`` entry stored in the file (strings, as ONNX keeps them)."""

    path: str
    opset: int
    max_disp: float
    min_height: int
    min_width: int
    metadata: dict[str, str]


def export_onnx(checkpoint: str | os.PathLike, output: str | os.PathLike, opset: int = 17) -> ExportResult:
    """Export ``checkpoint`` to ``output`` (atomically); returns what was written (:class:`ExportResult`)."""
    import onnx

    refuse_package_path(output, "output")
    from torch.onnx import _constants

    top = _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET  # the exporter used below (dynamo=False)
    if isinstance(opset, bool) or not isinstance(opset, int) or not 13 <= opset <= top:
        raise ConfigError(f"opset={opset}: this PyTorch's ONNX exporter writes opsets 13 to {top}")
    model, ckpt = load_network(checkpoint, torch.device("cpu"))
    samplers = [f"model.refine={model.config.refine}"] if model.refinement.refines else []
    samplers += [f"model.subpixel={model.config.subpixel}"] if model.subpixel is not None else []
    if samplers and opset < 16:
        raise ConfigError(
            f"{checkpoint}: {' and '.join(samplers)} sample the right image (GridSample): it needs opset >= 16, "
            f"got {opset}"
        )
    # ONNX-friendly runtime: no row chunking (a Python loop over the height), contiguous 3-D layout.
    configure_runtime(model, {"eval_chunk_rows": 0, "channels_last_3d": False})
    h, w = minimum_size(model)
    x = torch.rand(1, 3, h, w)
    meta = {
        "model_config": json.dumps(to_plain(model.config)),
        "max_disp": str(model.max_disp),
        "size_divisor": str(model.size_divisor),
        "min_height": str(h),
        "min_width": str(w),
        "hourglasses": str(model.hourglasses),
        "checkpoint_step": str(ckpt.get("step")),
        "inputs": "left, right: (B, 3, H, W) float32 RGB in [0, 1]; output disparity (B, H, W) in pixels",
    }
    dims = {0: "batch", 2: "height", 3: "width"}
    axes = {"left": dims, "right": dims, "disparity": {0: "batch", 1: "height", 2: "width"}}
    graph = _PaddedToMinimum(model, h, w)
    with atomic_write(output) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every shape-dependent Python branch; minimum_size() is what makes them safe.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(graph, (x, x), str(tmp), input_names=["left", "right"], output_names=["disparity"],
                          dynamic_axes=axes, opset_version=opset, dynamo=False)  # fmt: skip
        proto = onnx.load(str(tmp))
        for k, v in meta.items():
            proto.metadata_props.add(key=k, value=v)
        onnx.save(proto, str(tmp))
    return ExportResult(str(output), opset, float(model.max_disp), h, w, meta)


class OnnxStereo:
    """ONNX Runtime inference with the interface infer uses: ``max_disp``, ``hourglasses`` and
    :meth:`predict` ((B, 3, H, W) tensors of any size -> (B, H, W) disparity)."""

    def __init__(self, path: str | os.PathLike, threads: int = 0, options: Any = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"ONNX model not found: {path}")
        opts = options if options is not None else ort.SessionOptions()  # options: e.g. profiling (bench)
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ONNX Runtime's own errors: truncated, not ONNX, unsupported operators
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({first})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        keys = ("max_disp", "hourglasses", "size_divisor", "min_height", "min_width")
        missing = [k for k in keys if k not in meta]
        if missing:
            raise ConfigError(f"{path}: not exported by stereo-export (no {', '.join(missing)} in its metadata)")
        try:
            values = {k: int(float(meta[k])) for k in keys}
        except ValueError:
            raise ConfigError(
                f"{path}: its stereo-export metadata is not numeric ({ {k: meta[k] for k in keys} })"
            ) from None
        names = sorted(i.name for i in self.session.get_inputs())
        if names != ["left", "right"] or any(values[k] < 1 for k in keys):
            raise ConfigError(f"{path}: not a stereo-export model (inputs {names}, metadata {values})")
        self.max_disp = values["max_disp"]
        self.hourglasses = values["hourglasses"]
        self.size_divisor = values["size_divisor"]
        self.min_size = (values["min_height"], values["min_width"])

    def infer(self, left: torch.Tensor, right: torch.Tensor, confidence: bool = False) -> StereoOutput:
        """The :class:`~stereo.models.output.Predictor` interface: (B, 3, H, W) RGB in [0, 1] of any size
        (padded to the graph's minimum here), every head of the exported graph."""
        if confidence:
            raise ConfigError("confidence is not available with backend=onnxruntime (use backend=torch)")
        h, w = left.shape[-2:]
        k = self.size_divisor
        th, tw = max(-(-h // k) * k, self.min_size[0]), max(-(-w // k) * k, self.min_size[1])
        pad = (0, tw - w, 0, th - h)
        lp = torch.nn.functional.pad(left.float().cpu(), pad, mode="replicate")
        rp = torch.nn.functional.pad(right.float().cpu(), pad, mode="replicate")
        (disp,) = self.session.run(None, {"left": lp.numpy(), "right": rp.numpy()})
        disparity = torch.from_numpy(np.ascontiguousarray(disp[:, :h, :w]))
        return StereoOutput(disparity, heads=[self.hourglasses] * left.shape[0])
