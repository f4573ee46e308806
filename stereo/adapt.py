"""Test-time adaptation: fit the light refinement of a network to one unlabeled pair before answering.

The network runs once, frozen; the evidence the refinement reads (the soft-argmin, the windowed estimate
and its mass, the photometric errors around them: :meth:`~stereo.models.refinement.ModesRefinement.evidence`)
is computed once and kept. A copy of the refinement then takes ``steps`` Adam steps on the
self-supervised loss of :mod:`stereo.losses` (the left view reconstructed from the right by the refined
disparity, over the pixels visible in both views, plus edge-aware smoothness), each step costing the
refinement alone. Stop rule: when the loss has not fallen, the unadapted answer stands. Whichever answer
stands then goes through the rest of :meth:`~stereo.models.psmnet.PSMNet.infer`: the full-resolution sub-pixel
stage when the model has one (``model.subpixel``, not adapted) and the runtime's ``polish``. The shared network
is never changed (each call works on its own copy), and nothing is written.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from stereo.errors import ConfigError
from stereo.losses import occluded_from_disparity, photometric_loss
from stereo.models.output import StereoOutput

log = logging.getLogger(__name__)

ADAPT_STEPS = 20  # the default of adapt_steps: a few seconds per pair on a CPU (docs/inference.md)
ADAPT_LR = 1e-4  # Adam: small, so a few steps refine the learned prior instead of replacing it
MIN_CONTRAST = 2 / 255  # grey-level standard deviation below which a view has nothing to match


@dataclass
class AdaptReport:
    """What an adaptation did: the loss before and after ``steps`` steps, whether the adapted answer was
    taken (``adopted``) and, when not, why (``reason``); ``seconds`` of the whole adaptation."""

    steps: int
    loss_before: float
    loss_after: float
    adopted: bool
    reason: str
    seconds: float

    def describe(self) -> str:
        """One phrase for a log or a page: what the adaptation did."""
        if self.adopted:
            return f"adapted in {self.steps} steps (photometric loss {self.loss_before:.4f} -> {self.loss_after:.4f})"
        return f"adaptation not used: {self.reason}"


def check_adaptable(network: Any) -> None:
    """Raise :class:`ConfigError` unless ``network`` (any method) can adapt: a network with a learned refinement
    (``model.refine=modes``), run with its refinement and without early exit."""
    refinement = getattr(network, "refinement", None)
    if not getattr(refinement, "refines", False):
        raise ConfigError(
            "adapt=true adapts a network's sub-pixel refinement, and this model has none (model.refine=none); "
            "the shipped weights have one (checkpoint=shipped)"
        )
    runtime = network.runtime
    if not runtime.refinement:
        raise ConfigError("adapt=true adapts the refinement: it needs refinement=true")
    if runtime.early_exit != "off":
        raise ConfigError(f"adapt=true needs every head (early_exit=off), got early_exit={runtime.early_exit}")


def nothing_to_match(left: torch.Tensor, right: torch.Tensor) -> str | None:
    """Why a (B, 3, H, W) pair gives the photometric loss nothing to work with, or None."""
    grey_l, grey_r = left.float().mean(1), right.float().mean(1)
    if float(grey_l.std()) < MIN_CONTRAST or float(grey_r.std()) < MIN_CONTRAST:
        return "a blank view (no texture to match)"
    if float((left.float() - right.float()).abs().max()) < 1 / 255:
        return "identical views (nothing to triangulate)"
    return None


def adapt_infer(
    network: torch.nn.Module,
    left: torch.Tensor,
    right: torch.Tensor,
    confidence: bool = False,
    steps: int = ADAPT_STEPS,
    lr: float = ADAPT_LR,
    valid: torch.Tensor | None = None,
) -> StereoOutput:
    """``network.infer(left, right, confidence)`` with its refinement adapted to this pair.

    Args:
        network: an eval-mode network that :func:`check_adaptable` accepts.
        left, right: (B, 3, H, W) RGB in [0, 1], H and W multiples of the network's ``size_divisor``.
        steps: Adam steps (>= 1).
        lr: Adam's learning rate.
        valid: (B, H, W) bool, the pixels the loss may count (e.g. without the padding); None = all.

    Returns:
        The result, with its :class:`AdaptReport` as ``adaptation`` (the confidence is the network's, which
        adaptation does not change).
    """
    check_adaptable(network)
    if steps < 1:
        raise ConfigError(f"adapt_steps={steps}: expected at least 1")
    start = time.perf_counter()
    with torch.inference_mode(False), torch.no_grad():
        left, right = left.clone(), right.clone()  # tensors autograd may use, also when called under inference
        cost, bands = network.final_cost(left, right)
        size = (network.max_disp, *left.shape[-2:])
        refinement = network.refinement
        guides = network.guides(left, right)  # the refinement's and the sub-pixel stage's
        evidence, soft, local, conf = refinement.evidence(cost, size, guides, network.runtime, confidence)
        del cost
        unadapted = refinement.decode(evidence, soft, local)
    heads = [network.hourglasses] * left.shape[0]

    def answer(disp: torch.Tensor, report: AdaptReport) -> StereoOutput:
        # what infer does after the refinement: the sub-pixel stage (model.subpixel), then the polish
        with torch.no_grad():
            disp = network.matched(disp, guides)
        return StereoOutput(network.polished(disp, left, right), conf, heads, bands, report)

    reason = nothing_to_match(left, right)
    if reason is not None:
        log.warning("adapt: %s; the unadapted prediction stands", reason)
        return answer(unadapted, AdaptReport(0, float("nan"), float("nan"), False, reason, time.perf_counter() - start))
    with torch.inference_mode(False):  # a normal tensor, which autograd may save
        mask = ~occluded_from_disparity(unadapted)
        mask = mask if valid is None else mask & valid.to(mask.device)
    adapted, before, after = _fit(refinement, evidence, soft, local, (left.float(), right.float()), mask, steps, lr)
    seconds = time.perf_counter() - start
    if not after < before:
        why = f"the photometric loss did not fall ({before:.4f} -> {after:.4f})"
        log.warning("adapt: %s; the unadapted prediction stands", why)
        return answer(unadapted, AdaptReport(steps, before, after, False, why, seconds))
    return answer(adapted.detach(), AdaptReport(steps, before, after, True, "", seconds))


def _fit(
    refinement: torch.nn.Module,
    evidence: torch.Tensor,
    soft: torch.Tensor,
    local: torch.Tensor,
    views: tuple[torch.Tensor, torch.Tensor],
    mask: torch.Tensor,
    steps: int,
    lr: float,
) -> tuple[torch.Tensor, float, float]:
    """``steps`` Adam steps of a copy of ``refinement`` on the photometric loss over ``mask``: the adapted
    (B, H, W) disparity, and the loss before and after."""
    with torch.inference_mode(False), torch.enable_grad():
        with torch.no_grad():
            before = float(photometric_loss(*views, refinement.decode(evidence, soft, local), mask))
        own = copy.deepcopy(refinement).float().train()  # this call's copy: the shared network stays as it is
        for p in own.parameters():
            p.requires_grad_(True)
        opt = torch.optim.Adam(own.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            photometric_loss(*views, own.decode(evidence, soft, local), mask).backward()
            opt.step()
        with torch.no_grad():
            adapted = own.decode(evidence, soft, local)
            return adapted, before, float(photometric_loss(*views, adapted, mask))
