"""Soft-argmin disparity regression over a trilinearly upsampled cost, chunked for inference."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

CONFIDENCE_RADIUS = 1.5  # pixels: the confidence is the probability mass of the 3 disparities nearest the estimate


def softmax_over_disparities(cost: torch.Tensor) -> torch.Tensor:
    """Softmax over dim 1 of a (B, D, H, W) cost. In an ONNX export it runs over the last axis between two
    transposes (same numbers): ONNX Runtime's Softmax over an inner axis took a third of the light network's
    time there (``bench_onnx.py profile=true``)."""
    if torch.jit.is_tracing():
        e = (cost - cost.amax(1, keepdim=True)).exp()
        return e / e.sum(1, keepdim=True)
    return F.softmax(cost, dim=1)


def soft_argmin(
    cost: torch.Tensor, confidence: bool = False, radius: float | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """(B, D, H, W) matching cost (higher = better) -> (B, H, W) disparity ``sum_d d * softmax(cost)_d``.

    With ``radius`` (pixels), the expectation is taken only over the disparities within ``radius`` of the
    most likely one, renormalised: where the distribution has two modes (a thin object in front of a
    background) the estimate stays on the mode of the most likely disparity instead of landing between them.
    With ``confidence``, also (B, H, W) in [0, 1]: the probability mass within :data:`CONFIDENCE_RADIUS`
    pixels of the estimate (1 for a distribution concentrated there, low for a flat or split one)."""
    prob = softmax_over_disparities(cost)
    values = torch.arange(cost.shape[1], device=cost.device, dtype=prob.dtype)
    disp = _expectation(prob, values, radius)
    return (disp, _confidence(prob, disp)) if confidence else disp


def _confidence(prob: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) probabilities and their (B, H, W) estimate -> the mass within CONFIDENCE_RADIUS of it."""
    values = torch.arange(prob.shape[1], device=prob.device, dtype=prob.dtype)
    near = (values.view(1, -1, 1, 1) - disp.unsqueeze(1)).abs() < CONFIDENCE_RADIUS
    return (prob * near).sum(1).clamp(0, 1)


def _expectation(prob: torch.Tensor, values: torch.Tensor, radius: float | None) -> torch.Tensor:
    if radius is None:
        return torch.einsum("bdhw,d->bhw", prob, values)
    mode = prob.argmax(1, keepdim=True).to(prob.dtype)
    window = prob * ((values.view(1, -1, 1, 1) - mode).abs() <= radius)
    return torch.einsum("bdhw,d->bhw", window, values) / window.sum(1)  # the mode is always inside: > 0


@functools.lru_cache(maxsize=64)
@torch.inference_mode(False)  # cached: a matrix first built under inference mode must still serve training
def _resize_matrix64(n_in: int, n_out: int) -> torch.Tensor:
    # Source position of each output sample with align_corners=False (as F.interpolate), clamped at 0.
    src = ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    w = src - i0
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m.index_put_((rows, i0), 1 - w, accumulate=True)  # accumulate: i0 == i1 at the borders
    m.index_put_((rows, i1), w, accumulate=True)
    return m


def resize_matrix(n_in: int, n_out: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(n_out, n_in) matrix of linear resizing along one axis with ``align_corners=False``: ``M @ x``
    resizes ``x`` (n_in, ...) as ``F.interpolate`` does (two non-zeros per row, summing to 1). Built
    once per size on the CPU (cached), then copied to ``device``."""
    return _resize_matrix64(n_in, n_out).to(device=device, dtype=dtype)


def upsample_regress(
    cost: torch.Tensor,
    size: tuple[int, int, int],
    chunk_rows: int | None = None,
    confidence: bool = False,
    radius: float | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Trilinearly upsample a (B, 1, D', H', W') cost to ``size`` = (D, H, W) and soft-argmin it.

    Equal to ``soft_argmin(F.interpolate(cost, size, mode="trilinear").squeeze(1))``: trilinear
    resizing is separable, so it runs as three small matrix products (one per axis), whose backward
    is matrix products too (CPU's trilinear backward took 4x its forward, 1.6 s of a 13 s training
    step at 256x512; on CUDA it is also non-deterministic). With ``chunk_rows`` the full (B, D, H, W)
    volume is never held: each chunk of output rows is resized and regressed on its own. Images run one
    by one, so an image's disparity does not depend on the batch it came in. A half-precision cost
    (autocast) is regressed in fp32: a bf16 disparity would move in steps of 0.5 px at 100 px. Under ONNX
    tracing it is ``F.interpolate`` (one Resize whose sizes follow the graph's dynamic axes). With
    ``confidence``, returns (disparity, confidence); ``radius``: the windowed soft-argmin (see
    :func:`soft_argmin`).
    """
    if torch.jit.is_tracing():
        up = F.interpolate(cost, size, mode="trilinear", align_corners=False).squeeze(1)
        return soft_argmin(up, confidence, radius)
    if cost.dtype in (torch.float16, torch.bfloat16):
        cost = cost.float()
    with torch.autocast(cost.device.type, enabled=False):
        if not torch.is_grad_enabled():
            maps = _inference_maps(cost, size, chunk_rows, radius, confidence, modes=False)
            return maps if confidence else maps[0]
        return _upsample_regress(cost, size, chunk_rows, confidence, radius)


def regress_modes(prob: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, D, H, W) probabilities over the disparities 0..D-1 -> three (B, H, W) maps: the soft-argmin over
    every disparity, the windowed one within ``radius`` pixels of the most likely disparity (what
    ``regression=local`` answers) and the probability mass inside that window (1 for a unimodal
    distribution, lower where a second mode takes a share: object borders, thin structures)."""
    values = torch.arange(prob.shape[1], device=prob.device, dtype=prob.dtype)
    soft = _expectation(prob, values, None)
    # The window's 2r + 1 disparities gathered around the mode, not a mask over all D. The mode is the first
    # index of the maximum, as argmax, whose strided reduction over D took twice as long on the CPU.
    reach = int(math.floor(radius))
    first = torch.where(prob == prob.amax(1, keepdim=True), values.view(1, -1, 1, 1), values.new_tensor(math.inf))
    mode = first.amin(1, keepdim=True).long()
    index = mode + torch.arange(-reach, reach + 1, device=prob.device).view(1, -1, 1, 1)
    inside = (index >= 0) & (index < prob.shape[1])
    index = index.clamp(0, prob.shape[1] - 1)
    window = prob.gather(1, index) * inside
    mass = window.sum(1)  # > 0: the mode is always inside
    local = (window * index.to(prob.dtype)).sum(1) / mass
    return soft, local, mass.clamp(0, 1)


def _modes_of_logits(
    logits: torch.Tensor, radius: float | None, confidence: bool, modes: bool
) -> tuple[torch.Tensor, ...]:
    """Inference's regression of (N, D) logits, one pixel per row (overwritten): what :func:`soft_argmin`
    (``modes=False``, windowed with ``radius``) or :func:`regress_modes` (``modes=True``) answer, each (N,), and
    with ``confidence`` the soft-argmin's confidence, from the unnormalised ``exp(logits - max)``: no
    probabilities, masks or index maps over all D; the window and the confidence's few disparities are
    gathered. Equal to those functions up to float rounding (sums in another order), except where two
    disparities' probabilities round to the same maximum and their logits do not: the mode is the logits'
    first maximum; and the confidence counts a disparity 1.5 px from the estimate or not as rounding puts it."""
    top, mode = logits.max(1, keepdim=True)  # the first index of the maximum, in the pass that finds it
    e = logits.sub_(top).exp_()
    total = e.sum(1)
    values = torch.arange(logits.shape[1], device=logits.device, dtype=logits.dtype)
    soft = (e @ values) / total
    maps: tuple[torch.Tensor, ...] = (soft,)
    if radius is not None:
        reach = int(math.floor(radius))
        window, index = _gathered(e, mode, -reach, reach)
        local = (window * index.to(e.dtype)).sum(1) / window.sum(1)  # the mode is always inside: > 0
        maps = (soft, local, (window.sum(1) / total).clamp(0, 1)) if modes else (local,)
    if confidence:
        estimate = maps[0].unsqueeze(1)
        start = torch.floor(estimate - CONFIDENCE_RADIUS).long() + 1  # the first disparity above the bound
        near, index = _gathered(e, start, 0, math.ceil(2 * CONFIDENCE_RADIUS))
        near = near * ((index.to(e.dtype) - estimate).abs() < CONFIDENCE_RADIUS)
        maps = (*maps, (near.sum(1) / total).clamp(0, 1))
    return maps


def _gathered(e: torch.Tensor, start: torch.Tensor, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
    """e (N, D) at the disparities ``start + lo .. start + hi`` of each row (``start`` (N, 1) long), zero
    outside 0..D-1, and those disparities."""
    index = start + torch.arange(lo, hi + 1, device=e.device).view(1, -1)
    inside = (index >= 0) & (index < e.shape[1])
    return e.gather(1, index.clamp(0, e.shape[1] - 1)) * inside, index


def _inference_maps(
    cost: torch.Tensor, size: tuple[int, int, int], chunk_rows: int | None, radius: float | None,
    confidence: bool, modes: bool,
) -> tuple[torch.Tensor, ...]:  # fmt: skip
    """Inference (no gradients) of :func:`upsample_regress` (``modes=False``) and :func:`upsample_regress_modes`:
    the same upsampling by matrix products, each chunk's logits written with the disparities last into one
    buffer reused across chunks (a fresh one per chunk cost more in page faults than its product), then
    :func:`_modes_of_logits`. The shipped weights at 544x960, with the confidence, 2 CPU cores: 0.55 -> 0.20 s."""
    md, mh, mw = _resize_matrices(cost, size)
    mdt = md.T.contiguous()
    d, h, w = size
    step = chunk_rows or h
    buffer = cost.new_empty(min(step, h) * w, d)
    images = []
    for image in cost[:, 0]:
        x = image @ mw  # (D', H', W)
        chunks = []
        for r in range(0, h, step):
            part = mh[r : r + step] @ x  # (D', rows, W)
            rows = part.shape[1]
            logits = torch.mm(part.reshape(part.shape[0], rows * w).T, mdt, out=buffer[: rows * w])
            chunks.append([m.view(1, rows, w) for m in _modes_of_logits(logits, radius, confidence, modes)])
        images.append([_joined(parts, 1) for parts in zip(*chunks, strict=True)])
    return tuple(_joined(maps, 0) for maps in zip(*images, strict=True))


def upsample_regress_modes(
    cost: torch.Tensor,
    size: tuple[int, int, int],
    radius: float,
    chunk_rows: int | None = None,
    confidence: bool = False,
) -> tuple[torch.Tensor, ...]:
    """:func:`regress_modes` of the (B, 1, D', H', W') cost trilinearly upsampled to ``size`` = (D, H, W):
    (soft, local, mass), each (B, H, W), from one upsampling (chunked by rows as :func:`upsample_regress`;
    regressed in fp32). With ``confidence``, a fourth map: the soft-argmin's confidence of
    :func:`soft_argmin`. The evidence of ``model.refine=modes``."""

    def maps_of(logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        prob = softmax_over_disparities(logits)
        maps = regress_modes(prob, radius)
        return (*maps, _confidence(prob, maps[0])) if confidence else maps

    if torch.jit.is_tracing():
        return maps_of(F.interpolate(cost, size, mode="trilinear", align_corners=False).squeeze(1))
    if cost.dtype in (torch.float16, torch.bfloat16):
        cost = cost.float()
    with torch.autocast(cost.device.type, enabled=False):
        if not torch.is_grad_enabled():
            return _inference_maps(cost, size, chunk_rows, radius, confidence, modes=True)
        return _upsampled_maps(cost, size, chunk_rows, maps_of)


def _resize_matrices(cost: torch.Tensor, size: tuple[int, int, int]):
    (d_out, h_out, w_out), (d_in, h_in, w_in) = size, cost.shape[-3:]
    kw = {"device": cost.device, "dtype": cost.dtype}
    return resize_matrix(d_in, d_out, **kw), resize_matrix(h_in, h_out, **kw), resize_matrix(w_in, w_out, **kw).T


def _upsampled_rows(x: torch.Tensor, md: torch.Tensor, mh_rows: torch.Tensor) -> torch.Tensor:
    """(D', H', W) cost already resized along W -> (1, D, rows, W): the rows of ``mh_rows``, resized along
    H and then D."""
    part = mh_rows @ x  # (D', rows, W)
    rows, width = part.shape[1:]
    return (md @ part.reshape(x.shape[0], rows * width)).view(1, md.shape[0], rows, width)


def _upsampled_maps(
    cost: torch.Tensor,
    size: tuple[int, int, int],
    chunk_rows: int | None,
    maps_of: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
) -> tuple[torch.Tensor, ...]:
    """The (B, H, W) maps that ``maps_of`` computes from (1, D, rows, W) logits, each chunk of ``chunk_rows``
    rows of the (B, 1, D', H', W') cost upsampled to ``size`` on its own (None = whole images), joined.
    Images run one by one: a disparity does not depend on the batch it came in."""
    md, mh, mw = _resize_matrices(cost, size)
    step = chunk_rows or size[1]
    images = []
    for image in cost[:, 0]:
        x = image @ mw  # (D', H', W)
        chunks = [maps_of(_upsampled_rows(x, md, mh[r : r + step])) for r in range(0, size[1], step)]
        images.append([_joined(parts, 1) for parts in zip(*chunks, strict=True)])
    return tuple(_joined(maps, 0) for maps in zip(*images, strict=True))


def _joined(parts: tuple[torch.Tensor, ...], dim: int) -> torch.Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim)


def _upsample_regress(
    cost: torch.Tensor, size: tuple[int, int, int], chunk_rows: int | None, confidence: bool, radius: float | None
):
    def maps_of(logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = soft_argmin(logits, confidence, radius)
        return out if confidence else (out,)

    maps = _upsampled_maps(cost, size, chunk_rows, maps_of)
    return maps if confidence else maps[0]
