"""The measured cases of the benchmarks, each a dataclass that says what it measures.

A case runs in a fresh process (:func:`~stereo.bench.harness.run_isolated`) alone, for its time and memory
(``*_case``), or in turns with the others it is compared with (``*_interleaved``), for time ratios
(:func:`~stereo.bench.harness.ratio`). Both return plain JSON: ``case``, the measured
:class:`~stereo.bench.harness.Timing` (seconds, bytes) and what else the case knows.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from stereo.bench.harness import interleave, measure, synchronize, time_runs
from stereo.device import autocast, resolve_device

Step = Callable[[], Any]


def dot_product_attention_bytes(
    batch: int,
    heads: int,
    positions: int,
    channels: int,
    key_channels: int,
    value_channels: int,
    normalization: str = "softmax",
    backward: bool = False,
    element_size: int = 4,
) -> int:
    """Estimated peak working memory of :class:`~stereo.models.attention.DotProductAttention` (explicit map).

    Softmax holds logits and probabilities at once (2 maps) in the forward pass and, in the backward
    pass, the saved probabilities, their gradient and the logits' gradient (3 maps). Scaling needs one
    map forward and two with backward. The O(n d) projections are added on top.
    """
    maps = {("softmax", False): 2, ("softmax", True): 3, ("scaling", False): 1, ("scaling", True): 2}
    n_maps = maps[(normalization, backward)]
    linear = positions * (2 * key_channels + 2 * value_channels + channels) * (3 if backward else 1)
    return batch * (heads * n_maps * positions**2 + linear) * element_size


@dataclass
class Measure:
    """How every case of a run is timed: device, CPU threads, untimed warm-up runs, timed runs, seed."""

    device: str = "cpu"
    threads: int = 0
    warmup: int = 1
    runs: int = 3
    seed: int = 0

    def start(self) -> torch.device:
        """Set the threads and the seed in this (isolated) process; the device to run on."""
        if self.threads:
            torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)
        return resolve_device(self.device)

    def where(self, device: torch.device) -> dict[str, Any]:
        return {"threads": torch.get_num_threads(), "device": str(device)}


@dataclass
class AttentionCase:
    """One attention module on a (batch, channels, height, width) input, forward or forward + backward.

    ``kind``: a kind of :data:`stereo.models.attention.ATTENTION_KINDS` (``extra`` holds its own keys),
    ``dot_product`` (explicit n x n map) or ``dot_product_sdpa`` (PyTorch's fused attention)."""

    kind: str
    height: int
    width: int
    backward: bool = False
    channels: int = 128
    key_channels: int = 64
    value_channels: int = 128
    heads: int = 1
    normalization: str = "softmax"
    batch: int = 1
    extra: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.height}x{self.width} {'fwd+bwd' if self.backward else 'fwd'}"

    def build(self, device: torch.device) -> tuple[Step, int]:
        """The measured step (with a fresh input) and the module's parameter count."""
        from stereo.models.attention import DotProductAttention, build_attention

        module: torch.nn.Module
        if self.kind in ("dot_product", "dot_product_sdpa"):
            fused = self.kind == "dot_product_sdpa"
            module = DotProductAttention(self.channels, self.key_channels, self.value_channels, self.heads,
                                         self.normalization, fused)  # type: ignore[arg-type]  # fmt: skip
        else:  # efficient and the linear kinds of ATTENTION_KINDS
            extra, heads = dict(self.extra or {}), self.heads
            if self.kind == "multires":
                heads = len(extra.setdefault("scales", [1, 2, 4, 8]))
            norm = self.normalization if self.kind == "efficient" else "softmax"
            module = build_attention(self.kind, self.channels, self.key_channels, self.value_channels, heads, norm,
                                     **extra)  # type: ignore[arg-type]  # fmt: skip
        module = module.to(device)
        x = torch.randn(self.batch, self.channels, self.height, self.width, device=device, requires_grad=self.backward)

        def step() -> None:
            if self.backward:
                module.zero_grad(set_to_none=True)
                x.grad = None
                module(x).sum().backward()
            else:
                with torch.inference_mode():
                    module(x)

        return step, sum(p.numel() for p in module.parameters())


def attention_case(case: dict[str, Any], how: dict[str, Any]) -> dict[str, Any]:
    """Time and peak memory of one :class:`AttentionCase` alone: memory is above the process's footprint once
    the module and its input exist, i.e. the attention's own working memory (activations, gradients)."""
    m, c = Measure(**how), AttentionCase(**case)
    dev = m.start()
    step, parameters = c.build(dev)
    return {"case": asdict(c), "parameters": parameters, "timing": measure(step, dev, m.warmup, m.runs).to_json(),
            **m.where(dev)}  # fmt: skip


def attention_interleaved(cases: list[dict[str, Any]], how: dict[str, Any]) -> dict[str, Any]:
    """The :class:`AttentionCase` s in turns in one process: timings by label, for ratios."""
    m = Measure(**how)
    dev = m.start()
    steps = {c.label: c.build(dev)[0] for c in (AttentionCase(**case) for case in cases)}
    return {"timings": {k: t.to_json() for k, t in interleave(steps, dev, m.warmup, m.runs).items()}, **m.where(dev)}


def _bench_network(
    model: str,
    overrides: list[str] | None = None,
    runtime: dict[str, Any] | None = None,
    fold_bn: bool = False,
    original: str | None = None,
) -> tuple[torch.nn.Module, int]:
    """The network a benchmark case runs and its max disparity (pixels): ``conf/model/<model>.yaml`` with
    ``overrides`` and ``runtime`` settings (``memory_budget_gb``, ``channels_last_3d``, ...), BatchNorm
    folded if ``fold_bn`` (eval only); or, with ``original`` = a PSMNet checkout, its ``stackhourglass``
    model at max disparity 192."""
    from stereo.config import load_config
    from stereo.models import build_model
    from stereo.models.fuse import fold_batchnorm

    if original:
        from stereo.original_psmnet import original_stackhourglass

        return original_stackhourglass(original, 192), 192
    cfg = load_config(f"model/{model}", overrides)
    net = build_model(cfg, runtime or {})
    return (fold_batchnorm(net.eval()) if fold_bn else net), cfg.max_disp


def _random_pair(batch: int, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random left/right images (B, 3, H, W) in [0, 1]."""
    return (torch.rand(batch, 3, height, width, device=device), torch.rand(batch, 3, height, width, device=device))


@dataclass
class NetworkCase:
    """A network on random images: eval (inference mode, through :func:`stereo.models.run`) or a training step
    (forward, PSMNet's 0.5/0.7/1.0 smooth-L1 loss over the last heads, backward, Adam).

    The network is ``conf/model/<model>.yaml`` with ``overrides`` and ``runtime`` settings, BatchNorm folded
    with ``fold_bn`` (eval only), or with ``original`` (a JiaRenChang/PSMNet checkout) that code's PSMNet.
    ``compile`` wraps the call in ``torch.compile``; ``onednn=False`` runs the step with PyTorch's oneDNN CPU
    kernels off, for that step only."""

    label: str
    model: str
    height: int
    width: int
    overrides: list[str] = field(default_factory=list)
    train: bool = False
    batch: int = 1
    precision: str = "fp32"
    runtime: dict[str, Any] | None = None
    fold_bn: bool = False
    original: str | None = None
    compile: bool = False
    onednn: bool = True

    def build(self, device: torch.device) -> tuple[Step, torch.nn.Module, dict[str, Any]]:
        """The measured step, the network, and what the last eval step learnt (``bands``: row bands it ran in)."""
        net, max_disp = _bench_network(self.model, self.overrides, self.runtime, self.fold_bn and not self.train,
                                       self.original)  # fmt: skip
        net = net.to(device)
        # What a step calls: the original code's forward; ours trains through forward and answers through infer.
        call: Any = net if self.train or self.original else net.infer
        if self.compile:
            call = torch.compile(call)
        left, right = _random_pair(self.batch, self.height, self.width, device)
        amp, last = autocast(device, self.precision), {}
        if self.train:
            inner = _training_step(net, call, self.original is not None, left, right, max_disp, amp)
        else:
            inner = _eval_step(net, call, self.original is not None or self.compile, left, right, amp, last)
        if self.onednn:
            return inner, net, last

        def step() -> None:
            # torch.backends.mkldnn.flags() would also reset oneDNN's TF32 switch, with a warning on CPU
            before = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = False  # type: ignore[assignment]
            try:
                inner()
            finally:
                torch.backends.mkldnn.enabled = before  # type: ignore[assignment]

        return step, net, last


def model_case(case: dict[str, Any], how: dict[str, Any]) -> dict[str, Any]:
    """Time and peak memory of one :class:`NetworkCase` alone. With ``compile``, the first call, which
    compiles, is timed apart (``compile_s``) before the warm-up and the runs."""
    m, c = Measure(**how), NetworkCase(**case)
    dev = m.start()
    step, net, last = c.build(dev)
    compile_s = None
    if c.compile:
        t0 = time.perf_counter()
        step()
        synchronize(dev)
        compile_s = time.perf_counter() - t0
    timing = measure(step, dev, m.warmup, m.runs)
    return {"case": asdict(c), "timing": timing.to_json(), "parameters": sum(p.numel() for p in net.parameters()),
            "bands": last.get("bands"), "compile_s": compile_s, **m.where(dev)}  # fmt: skip


def model_interleaved(cases: list[dict[str, Any]], how: dict[str, Any]) -> dict[str, Any]:
    """The :class:`NetworkCase` s in turns in one process (eval or training steps alike): timings and
    parameter counts by label, for ratios."""
    m = Measure(**how)
    dev = m.start()
    built = {c.label: c.build(dev) for c in (NetworkCase(**case) for case in cases)}
    timings = interleave({k: b[0] for k, b in built.items()}, dev, m.warmup, m.runs)
    return {"timings": {k: t.to_json() for k, t in timings.items()},
            "parameters": {k: sum(p.numel() for p in b[1].parameters()) for k, b in built.items()},
            **m.where(dev)}  # fmt: skip


def _training_step(
    net: torch.nn.Module, call: Any, original: bool, left: torch.Tensor, right: torch.Tensor, max_disp: float, amp: Any
) -> Step:
    """What a training step does, as a function: forward, the training loss itself (PSMNet's head weights)
    over every pixel of random ground truth, backward, Adam."""
    from stereo.train import loss_weights, sequence_loss

    batch, _, height, width = left.shape
    if not original:
        net.check_train_shape(batch, height, width)  # type: ignore[operator]  # a clear error instead of BatchNorm's
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    gt = torch.rand(batch, height, width, device=left.device) * max_disp * 0.8
    valid = torch.ones_like(gt, dtype=torch.bool)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with amp:
            outs = call(left, right)
            # the original's heads are (B, 1, H, W): its own training script squeezes them
            outs = [o.squeeze(1) for o in outs] if original else outs.heads
        sequence_loss(outs, gt, valid, loss_weights(None, len(outs))).backward()
        opt.step()

    return step


def _eval_step(
    net: torch.nn.Module, call: Any, direct: bool, left: torch.Tensor, right: torch.Tensor, amp: Any, last: dict
) -> Step:
    """An eval forward as a function, in inference mode: ``call`` itself when ``direct`` (the original code,
    or a compiled infer: sizes multiples of 16), else :func:`stereo.models.run` (padding, bands, recorded
    in ``last["bands"]``)."""
    from stereo.models import run

    net.eval()

    def step() -> None:
        with torch.inference_mode(), amp:
            if direct:
                call(left, right)
            else:
                last["bands"] = run(net, left, right).bands

    return step


BACKENDS = ("torch", "onnxruntime")


def _backend_step(
    model: str, backend: str, onnx_path: str | None, height: int, width: int, checkpoint: str | None = None
) -> Step:
    """An eval forward of ``model`` (random weights) or ``checkpoint`` (as ``stereo-infer`` loads it) through
    ``torch`` (eager :func:`stereo.models.run`) or ``onnxruntime`` (an exported file,
    :class:`stereo.export.OnnxStereo`, with this process's threads)."""
    from stereo.models import run

    left, right = _random_pair(1, height, width, torch.device("cpu"))
    if backend == "torch":
        net = _eval_network(model, checkpoint)
        return lambda: run(net, left, right)
    from stereo.export import OnnxStereo

    if onnx_path is None:
        raise ValueError("backend=onnxruntime needs onnx_path")
    session = OnnxStereo(onnx_path, threads=torch.get_num_threads())
    return lambda: session.infer(left, right)


def _eval_network(model: str, checkpoint: str | None = None, fold_bn: bool = False) -> torch.nn.Module:
    """The network of a backend case in eval mode: ``checkpoint`` as ``stereo-infer`` loads it (BatchNorm
    folded), else ``model``'s config with random weights."""
    if checkpoint:
        from stereo.checkpoint import load_network

        return load_network(checkpoint, torch.device("cpu"))[0]
    return _bench_network(model, fold_bn=fold_bn)[0].eval()


def backend_case(
    model: str, height: int, width: int, backend: str, onnx_path: str | None, how: dict, checkpoint: str | None = None
) -> dict:
    """Time and peak memory of one model through one backend alone, on the CPU."""
    m = Measure(**how)
    m.start()
    step = _backend_step(model, backend, onnx_path, height, width, checkpoint)
    timing = measure(step, torch.device("cpu"), m.warmup, m.runs)
    return {"case": {"model": model, "backend": backend, "height": height, "width": width}, "timing": timing.to_json()}


def backend_interleaved(
    model: str, height: int, width: int, onnx_path: str, how: dict, checkpoint: str | None = None
) -> dict[str, Any]:
    """Both backends in turns in one process: timings by backend, for their ratio."""
    m = Measure(**how)
    m.start()
    steps = {b: _backend_step(model, b, onnx_path, height, width, checkpoint) for b in BACKENDS}
    return {"timings": {k: t.to_json() for k, t in interleave(steps, torch.device("cpu"), m.warmup, m.runs).items()}}


def flops_case(model: str, height: int, width: int, original: str | None = None) -> dict[str, Any]:
    """Floating-point operations of one eval forward (PyTorch's FLOP counter: convolutions, matmuls;
    element-wise work is not counted), whole frame, no bands."""
    from torch.utils.flop_counter import FlopCounterMode

    runtime = None if original else {"memory_budget_gb": None}
    net = _bench_network(model, runtime=runtime, original=original)[0].eval()
    left, right = _random_pair(1, height, width, torch.device("cpu"))
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        (net if original else net.infer)(left, right)
    return {"flops": counter.get_total_flops()}


def matmul_case(n: int = 4096, runs: int = 5, threads: int = 0) -> dict[str, Any]:
    """The machine's fp32 matrix-multiply rate (GFLOP/s, median of ``runs``): the roofline for dense work."""
    if threads:
        torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    times = time_runs(lambda: a @ b, torch.device("cpu"), warmup=1, runs=runs)
    return {"n": n, "times_s": times, "gflops": 2 * n**3 / statistics.median(times) / 1e9}


def profile_case(
    model: str, height: int, width: int, fold_bn: bool = False, threads: int = 0, checkpoint: str | None = None
) -> dict[str, Any]:
    """Where one eval forward of ``model`` (or ``checkpoint``) spends its time: torch.profiler's self CPU time
    per operator (after a warm-up run), largest first, in seconds."""
    from torch.profiler import ProfilerActivity, profile

    from stereo.models import run

    if threads:
        torch.set_num_threads(threads)
    net = _eval_network(model, checkpoint, fold_bn)
    left, right = _random_pair(1, height, width, torch.device("cpu"))
    run(net, left, right)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(net, left, right)
    ops = sorted(((e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()), key=lambda kv: -kv[1])
    return {"ops": ops, "total_s": sum(v for _, v in ops)}


def backend_profile(
    model: str, height: int, width: int, onnx_path: str, how: dict[str, Any], checkpoint: str | None = None
) -> dict[str, Any]:
    """Where one eval forward spends its time in each backend, seconds by operator, largest first: ONNX
    Runtime's own profiler (the nodes of the last of two runs, by op type) and torch.profiler's self CPU
    time (after a warm-up run)."""
    import json
    import tempfile

    import onnxruntime as ort

    from stereo.export import OnnxStereo

    m = Measure(**how)
    m.start()
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.intra_op_num_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:  # ORT writes its profile as a file (by default into the cwd)
        opts.profile_file_prefix = str(Path(tmp) / "ort_profile")
        session = OnnxStereo(onnx_path, options=opts)
        left, right = _random_pair(1, height, width, torch.device("cpu"))
        for _ in range(2):
            session.infer(left, right)
        events = json.loads(Path(session.session.end_profiling()).read_text())
    last = [e for e in events if e.get("name") == "model_run"][-1]
    ort_ops: dict[str, float] = {}
    for e in events:
        if (
            e.get("cat") == "Node"
            and last["ts"] <= e["ts"] <= last["ts"] + last["dur"]
            and "op_name" in e.get("args", {})
        ):
            ort_ops[e["args"]["op_name"]] = ort_ops.get(e["args"]["op_name"], 0.0) + e["dur"] / 1e6
    torch_ops = profile_case(model, height, width, fold_bn=True, threads=torch.get_num_threads(), checkpoint=checkpoint)
    return {"onnxruntime": {"ops": sorted(ort_ops.items(), key=lambda kv: -kv[1]), "total_s": last["dur"] / 1e6},
            "torch": torch_ops}  # fmt: skip


API_VARIANTS = ("network", "api", "api_confidence")


def api_interleaved(height: int, width: int, how: dict[str, Any]) -> dict[str, Any]:
    """The shipped weights on one random uint8 pair, in turns: ``network`` (:func:`stereo.models.run` on ready
    tensors), ``api`` (``StereoModel.predict`` on numpy arrays: conversion, padding and the copy back
    included) and ``api_confidence`` (the same with the confidence): timings by variant, for ratios."""
    import numpy as np

    from stereo.api import load_model
    from stereo.models import run

    m = Measure(**how)
    m.start()
    rng = np.random.default_rng(m.seed)
    left, right = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2))
    model = load_model(device="cpu")
    lt, rt = (torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / 255)[None] for a in (left, right))
    steps: dict[str, Step] = {
        "network": lambda: run(model.network, lt, rt),
        "api": lambda: model.predict(left, right, confidence=False),
        "api_confidence": lambda: model.predict(left, right, confidence=True),
    }
    timings = interleave(steps, torch.device("cpu"), m.warmup, m.runs)
    return {"timings": {k: t.to_json() for k, t in timings.items()}}
