"""The measured cases of the benchmarks: each runs in a fresh process (:func:`~stereo.bench.harness.run_isolated`)
and returns plain numbers (times in seconds, memory in bytes)."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch

from stereo.bench.harness import measure, status_kib, synchronize, time_runs
from stereo.device import autocast, resolve_device


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


def attention_case(
    kind: str,
    height: int,
    width: int,
    backward: bool,
    channels: int = 128,
    key_channels: int = 64,
    value_channels: int = 128,
    heads: int = 1,
    normalization: str = "softmax",
    batch: int = 1,
    device: str = "cpu",
    threads: int = 0,
    warmup: int = 1,
    runs: int = 3,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Time and peak memory of one attention module on a (batch, channels, height, width) input.

    ``kind``: a kind of :data:`stereo.models.attention.ATTENTION_KINDS` (``efficient``, ``linear``, ``latent``,
    ``multires``; ``extra`` holds its own keys), ``dot_product`` (explicit n x n map) or
    ``dot_product_sdpa`` (PyTorch's fused ``scaled_dot_product_attention``). Peak memory is above the
    process's footprint once the module and the input exist, i.e. the attention's own working memory
    (activations, gradients).
    Run it in a fresh process (:func:`run_isolated`) so the figure is not polluted by other cases.
    """
    from stereo.models.attention import DotProductAttention, build_attention

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    if kind in ("dot_product", "dot_product_sdpa"):
        fused = kind == "dot_product_sdpa"
        module = DotProductAttention(channels, key_channels, value_channels, heads, normalization, fused)
    else:  # efficient and the linear kinds of stereo.models.attention.ATTENTION_KINDS
        extra = dict(extra or {})
        if kind == "multires":
            heads = len(extra.setdefault("scales", [1, 2, 4, 8]))
        norm = normalization if kind == "efficient" else "softmax"
        module = build_attention(kind, channels, key_channels, value_channels, heads, norm, **extra)
    module = module.to(dev)
    x = torch.randn(batch, channels, height, width, device=dev, requires_grad=backward)

    def step() -> None:
        if backward:
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x).sum().backward()
        else:
            with torch.inference_mode():
                module(x)

    times, peak, method = measure(step, dev, warmup, runs)
    return {
        "kind": kind,
        "parameters": sum(p.numel() for p in module.parameters()),
        "height": height,
        "width": width,
        "positions": height * width,
        "backward": backward,
        "times_s": times,
        "median_s": statistics.median(times),
        "peak_bytes": peak,
        "memory_method": method,
        "threads": torch.get_num_threads(),
        "device": str(dev),
    }


def _original_psmnet(path: str, max_disp: int) -> torch.nn.Module:
    """The original PSMNet (``models/stackhourglass.py`` of a JiaRenChang/PSMNet checkout at ``path``), on
    CPU: its hard-coded ``.cuda()`` calls are made no-ops in this (isolated) process."""
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    sys.path.insert(0, str(path))
    from models.stackhourglass import PSMNet as Original  # the user's checkout

    return Original(max_disp)


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
        return _original_psmnet(original, 192), 192
    cfg = load_config(f"model/{model}", overrides)
    net = build_model(cfg, runtime or {})
    return (fold_batchnorm(net.eval()) if fold_bn else net), cfg.max_disp


def _random_pair(batch: int, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random left/right images (B, 3, H, W) in [0, 1]."""
    return (torch.rand(batch, 3, height, width, device=device), torch.rand(batch, 3, height, width, device=device))


def model_case(
    model: str,
    height: int,
    width: int,
    train: bool = False,
    batch: int = 1,
    overrides: list[str] | None = None,
    runtime: dict[str, Any] | None = None,
    fold_bn: bool = False,
    original: str | None = None,
    compile: bool = False,
    onednn: bool = True,
    device: str = "cpu",
    threads: int = 0,
    precision: str = "fp32",
    warmup: int = 1,
    runs: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Time and peak memory of a network on random images: eval (``predict``, inference mode) or a
    training step (forward, PSMNet's 0.5/0.7/1.0 smooth-L1 loss over the last heads, backward, Adam).

    The network is :func:`_bench_network`'s (``overrides``, ``runtime``, ``fold_bn``, ``original``);
    ``compile`` wraps it in ``torch.compile`` (inductor); the first call, which compiles, is timed apart
    (``compile_s``) before the warm-up and the runs. ``onednn=False`` turns PyTorch's oneDNN (mkldnn) CPU
    kernels off (``torch.backends.mkldnn.enabled``), so convolutions take PyTorch's own kernels.
    ``peak_bytes`` is the working memory above the process once model and inputs exist;
    ``process_peak_bytes`` (CPU) the whole process's resident high-water mark, comparable with
    figures measured as peak RSS of a script; ``bands`` how many row bands the last eval ran in.
    """
    if threads:
        torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = onednn
    last: dict[str, Any] = {}
    dev = resolve_device(device)
    torch.manual_seed(seed)
    net, max_disp = _bench_network(model, overrides, runtime, fold_bn and not train, original)
    net = net.to(dev)
    # What a step calls: the original code's forward; ours trains through forward and answers through infer.
    call = net if train or original else net.infer
    if compile:
        call = torch.compile(call)
    left, right = _random_pair(batch, height, width, dev)
    amp = autocast(dev, precision)
    if train:
        step = _training_step(net, call, original is not None, left, right, max_disp, amp)
    else:
        step = _eval_step(net, call, original is not None or compile, left, right, amp, last)
    compile_s = None
    if compile:  # the first call compiles; time it apart from the runs
        t0 = time.perf_counter()
        step()
        synchronize(dev)
        compile_s = time.perf_counter() - t0
    times, peak, method = measure(step, dev, warmup, runs)
    process_peak = (status_kib("VmHWM") or 0) * 1024 if dev.type == "cpu" else None
    return {
        "model": model,
        "overrides": overrides or [],
        "height": height,
        "width": width,
        "train": train,
        "batch": batch,
        "precision": precision,
        "parameters": sum(p.numel() for p in net.parameters()),
        "times_s": times,
        "median_s": statistics.median(times),
        "peak_bytes": peak,
        "process_peak_bytes": process_peak,
        "memory_method": method,
        "bands": last.get("bands"),
        "compile_s": compile_s,
        "threads": torch.get_num_threads(),
        "device": str(dev),
    }


def _training_step(
    net: torch.nn.Module, call: Any, original: bool, left: torch.Tensor, right: torch.Tensor, max_disp: float, amp: Any
) -> Any:
    """What a training step does, as a function: forward, the training loss itself (PSMNet's head weights)
    over every pixel of random ground truth, backward, Adam."""
    from stereo.train import loss_weights, sequence_loss

    batch, _, height, width = left.shape
    if not original:
        net.check_train_shape(batch, height, width)  # a clear error instead of BatchNorm's
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    gt = torch.rand(batch, height, width, device=left.device) * max_disp * 0.8
    valid = torch.ones_like(gt, dtype=torch.bool)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with amp:
            outs = call(left, right)
            outs = outs if original else outs.heads
        sequence_loss(outs, gt, valid, loss_weights(None, len(outs))).backward()
        opt.step()

    return step


def _eval_step(
    net: torch.nn.Module, call: Any, direct: bool, left: torch.Tensor, right: torch.Tensor, amp: Any, last: dict
) -> Any:
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


def interleaved_case(
    variants: list[dict[str, Any]],
    height: int,
    width: int,
    device: str = "cpu",
    threads: int = 0,
    precision: str = "fp32",
    warmup: int = 1,
    runs: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Eval time of several networks in one process, taking turns: every round runs each variant once (in
    reverse order every other round), so a slow spell of a shared machine falls on all of them alike and
    the ratio of two variants within a round is steadier than the ratio of two separate processes' medians.

    ``variants``: ``{"label", "model", "overrides"}`` each. Returns per label the seconds of every round
    (``times_s``) and their median, and the parameters; no memory (the networks share one process).
    """
    from stereo.models import run

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    nets = {v["label"]: _bench_network(v["model"], v.get("overrides"))[0].to(dev).eval() for v in variants}
    left, right = _random_pair(1, height, width, dev)
    amp = autocast(dev, precision)

    def step(net: torch.nn.Module) -> None:
        with torch.inference_mode(), amp:
            run(net, left, right)

    for net in nets.values():
        time_runs(lambda n=net: step(n), dev, warmup=warmup, runs=0)
    times: dict[str, list[float]] = {label: [] for label in nets}
    for r in range(runs):
        for label in list(nets) if r % 2 == 0 else list(nets)[::-1]:
            times[label] += time_runs(lambda n=nets[label]: step(n), dev, warmup=0, runs=1)
    return {
        "height": height,
        "width": width,
        "precision": precision,
        "times_s": times,
        "median_s": {label: statistics.median(t) for label, t in times.items()},
        "parameters": {label: sum(p.numel() for p in net.parameters()) for label, net in nets.items()},
        "threads": torch.get_num_threads(),
        "device": str(dev),
    }


def backend_case(
    model: str,
    height: int,
    width: int,
    backend: str,
    onnx_path: str | None = None,
    threads: int = 0,
    warmup: int = 1,
    runs: int = 3,
    seed: int = 0,
) -> dict[str, Any]:
    """Eval time and peak memory of one model through ``torch`` (eager ``run``) or ``onnxruntime``
    (an exported file, :class:`stereo.export.OnnxStereo`), on random images; run it isolated."""
    from stereo.models import run

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    left, right = _random_pair(1, height, width, torch.device("cpu"))
    if backend == "torch":
        net = _bench_network(model)[0].eval()

        def step() -> None:
            run(net, left, right)
    else:
        from stereo.export import OnnxStereo

        ort_model = OnnxStereo(onnx_path, threads=threads)

        def step() -> None:
            ort_model.infer(left, right)

    times, peak, method = measure(step, torch.device("cpu"), warmup, runs)
    return {
        "model": model,
        "backend": backend,
        "height": height,
        "width": width,
        "times_s": times,
        "median_s": statistics.median(times),
        "peak_bytes": peak,
        "process_peak_bytes": (status_kib("VmHWM") or 0) * 1024,
        "memory_method": method,
    }


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


def profile_case(model: str, height: int, width: int, fold_bn: bool = False, threads: int = 0) -> dict[str, Any]:
    """Where one eval forward spends its time: torch.profiler's self CPU time per operator (after a
    warm-up run), largest first, in seconds."""
    from torch.profiler import ProfilerActivity, profile

    from stereo.models import run

    if threads:
        torch.set_num_threads(threads)
    net = _bench_network(model, fold_bn=fold_bn)[0].eval()
    left, right = _random_pair(1, height, width, torch.device("cpu"))
    run(net, left, right)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(net, left, right)
    ops = sorted(((e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()), key=lambda kv: -kv[1])
    return {"ops": ops, "total_s": sum(v for _, v in ops)}


API_VARIANTS = ("network", "api", "api_confidence")


def api_case(
    variant: str, height: int, width: int, threads: int = 0, warmup: int = 1, runs: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Eval time of the shipped weights on one random uint8 pair through ``stereo.models.run`` on
    tensors (``network``, the network alone), the Python API on numpy arrays (``api``: conversion,
    padding and the copy back included) or the API with the confidence (``api_confidence``); run isolated."""
    import numpy as np

    from stereo.api import load_model
    from stereo.models import run

    if variant not in API_VARIANTS:
        raise ValueError(f"variant must be one of {API_VARIANTS}, got {variant!r}")
    if threads:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    left, right = (rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2))
    model = load_model(device="cpu")
    if variant == "network":
        lt, rt = (torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / 255)[None] for a in (left, right))

        def step() -> None:
            run(model.network, lt, rt)
    else:

        def step() -> None:
            model.predict(left, right, confidence=variant == "api_confidence")

    times = time_runs(step, torch.device("cpu"), warmup=warmup, runs=runs)
    return {"variant": variant, "height": height, "width": width, "times_s": times,
            "median_s": statistics.median(times)}  # fmt: skip
