"""The original PSMNet code (``JiaRenChang/PSMNet``) beside ours: building it from a checkout, and the
check that its checkpoints give the same disparities through our loader.

Nothing of the original is vendored: a checkout is given by path (``original=``). Its hard-coded
``.cuda()`` calls become no-ops on a CPU-only machine, within its own calls only (a torch function mode).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from stereo.errors import MissingFileError

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def original_stackhourglass(path: str | os.PathLike, max_disp: int = 192) -> torch.nn.Module:
    """``models/stackhourglass.py``'s ``PSMNet(max_disp)`` from a checkout at ``path``."""
    path = Path(path)
    if not (path / "models" / "stackhourglass.py").is_file():
        raise MissingFileError(f"original={path}: not a checkout of JiaRenChang/PSMNet (no models/stackhourglass.py)")
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
    from models.stackhourglass import PSMNet as Original  # the user's checkout

    if torch.cuda.is_available():
        return Original(max_disp)
    with _CudaCallsStayOnCpu():
        net = Original(max_disp)
    forward = net.forward

    def forward_on_cpu(*args: Any, **kwargs: Any) -> Any:
        with _CudaCallsStayOnCpu():
            return forward(*args, **kwargs)

    net.forward = forward_on_cpu  # this instance only; its state dict is the original's
    return net


class _CudaCallsStayOnCpu(TorchFunctionMode):
    """Within it, ``Tensor.cuda()`` returns the tensor itself: the original code calls it in ``__init__``
    and ``forward``, and a CPU-only machine has no CUDA. Nothing outside the block changes."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func is torch.Tensor.cuda:
            return args[0]
        return func(*args, **(kwargs or {}))


def _calibrate_batchnorm(net: torch.nn.Module, gen: torch.Generator) -> None:
    """Random BatchNorm affine parameters, then running statistics measured on random images (as
    training would leave them): the check covers BatchNorm in eval mode with realistic statistics."""
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(2):
            left, right = (torch.rand(2, 3, 256, 512, generator=gen) for _ in range(2))
            net((left - IMAGENET_MEAN) / IMAGENET_STD, (right - IMAGENET_MEAN) / IMAGENET_STD)
    net.eval()


def check_equality(
    original: str | os.PathLike, sizes: list[tuple[int, int]], checkpoint: str | None = None, seed: int = 0
) -> list[dict[str, Any]]:
    """Disparities of the original code and of our loader for the same weights, at each (H, W) in
    ``sizes`` (multiples of 16): the original in eval mode fed ImageNet-normalised RGB as its loader
    does; ours through :func:`stereo.checkpoint.load_network` (BatchNorm folded, as ``stereo-infer`` runs).
    The weights are ``checkpoint`` (an original PSMNet file) or random ones with BatchNorm statistics
    measured on random images, saved in the original's format first. Returns, per size, the median, 99.9th percentile
    and maximum absolute difference in pixels."""
    from stereo.checkpoint import load_network
    from stereo.models import run

    gen = torch.Generator().manual_seed(seed)
    net = original_stackhourglass(original).eval()
    with tempfile.TemporaryDirectory() as tmp:
        if checkpoint is None:
            torch.manual_seed(seed)
            net = original_stackhourglass(original)
            _calibrate_batchnorm(net, gen)
            checkpoint = str(Path(tmp) / "original.tar")
            state = {f"module.{k}": v for k, v in net.state_dict().items()}
            torch.save({"epoch": 0, "state_dict": state, "train_loss": 0.0}, checkpoint)
        else:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
            net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()}, strict=False)
        net.eval()
        ours, _ = load_network(checkpoint, torch.device("cpu"), {"memory_budget_gb": None, "fold_batchnorm": False})
    rows = []
    for h, w in sizes:
        left, right = torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 3, h, w, generator=gen)
        with torch.inference_mode():
            theirs = net((left - IMAGENET_MEAN) / IMAGENET_STD, (right - IMAGENET_MEAN) / IMAGENET_STD)
            mine = run(ours, left, right).disparity
        diff = (theirs.reshape(h, w) - mine.reshape(h, w)).abs().numpy()
        rows.append({"height": h, "width": w, "median_px": float(np.median(diff)),
                     "p999_px": float(np.percentile(diff, 99.9)), "max_px": float(diff.max()),
                     "disparity_range_px": [float(theirs.min()), float(theirs.max())]})  # fmt: skip
    return rows
