"""What turns a head's cost into a disparity: the regression and, with ``model.refine=modes``, the light
full-resolution refinement on top of it (the idea of StereoNet's and iResNet's refinement; our own layers).
The network hands every head's cost to its :class:`Refinement` and never asks which kind it has.

The regression of PSMNet-family networks works on a 1/4-resolution cost volume, upsampled: edges come
out soft and sub-pixel precision is limited. :class:`ModesRefinement` looks at the left image and the
disparity at full resolution through a stack of dilated 3x3 convolutions (receptive field 63 px) and
adds a residual. Its last convolution starts at zero, so an untrained refinement returns its input.

It is given the evidence for a sub-pixel correction: the right image warped to the left view by the
current disparity, as the photometric error (left minus warped right, zero where the match falls outside
the right image; the idea of iResNet's feature constancy, on colours), and a local cost curve: the mean
absolute colour error at the disparity shifted by each of ``PHOTOMETRIC_OFFSETS`` pixels. And the evidence
about the regression's own distribution, where PSMNet's errors concentrate (object borders, thin
structures: a distribution with two modes, whose soft-argmin lands between them): the windowed soft-argmin
around the most likely disparity (what ``regression=local`` answers), the probability mass of that window
and the colour error at that candidate. Its head also predicts a gate in [0, 1] that moves each pixel from
the soft-argmin towards the windowed estimate (the soft-argmin has the lower EPE, the windowed one fewer
bad pixels; the refinement picks per pixel), before the residual.

The refinement computes in fp32 whatever the autocast around it: its inputs and output are disparities in
pixels, which bf16 would round to 0.5 px at 100 px.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereo.config import Refine, Regression, RuntimeConfig
from stereo.errors import ConfigError
from stereo.models.regression import upsample_regress, upsample_regress_modes

PHOTOMETRIC_OFFSETS = (-2.0, -1.0, 0.0, 1.0, 2.0)  # pixels: the local cost curve the refinement sees
MODES_RADIUS = 8.0  # pixels: refine=modes' window around the most likely disparity; fixed, the weights learn it

Size = tuple[int, int, int]  # (D, H, W): the full-resolution disparity range and image size
Guides = tuple[torch.Tensor, torch.Tensor]  # the normalised left and right images, (B, 3, H, W) each


def warp_right_to_left(right: torch.Tensor, disp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample the right image (B, C, H, W) at x - d for every left pixel, d the disparity (B, H, W) in
    pixels (bilinear, differentiable in both). Returns the warped image (B, C, H, W) and the mask
    (B, 1, H, W) of the pixels whose match lies inside the right image."""
    _, _, h, w = right.shape
    xs = torch.arange(w, device=disp.device, dtype=disp.dtype).view(1, 1, w) - disp
    inside = ((xs >= 0) & (xs <= w - 1)).unsqueeze(1).to(disp.dtype)
    if torch.jit.is_tracing():
        return _warp_by_gather(right.to(disp.dtype), xs), inside
    ys = torch.arange(h, device=disp.device, dtype=disp.dtype).view(1, h, 1).expand_as(xs)
    # align_corners=True: -1 and 1 are the centres of the first and last pixel.
    grid = torch.stack([2 * xs / max(w - 1, 1) - 1, 2 * ys / max(h - 1, 1) - 1], dim=-1)
    warped = F.grid_sample(right.to(disp.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return warped, inside


def _warp_by_gather(right: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """:func:`warp_right_to_left` as exported to ONNX: the (B, C, H, W) right image sampled at columns ``xs``
    (B, H, W) of the same rows, linear between the two nearest columns, zero outside. ONNX Runtime's
    ``GridSample`` runs about 8x slower than PyTorch's on the CPU (42% of the shipped network's time there);
    two ``GatherElements`` along the row do the same sampling."""
    b, c, h, w = right.shape
    left_col = torch.floor(xs)
    frac = (xs - left_col).unsqueeze(1)
    taps = []
    for col, weight in ((left_col, 1 - frac), (left_col + 1, frac)):
        inside = (col >= 0) & (col <= w - 1)
        index = torch.where(inside, col, torch.zeros_like(col)).long().unsqueeze(1).expand(b, c, h, w)
        taps.append(torch.gather(right, 3, index) * (weight * inside.unsqueeze(1).to(right.dtype)))
    return taps[0] + taps[1]


def _windowed_radius(runtime: RuntimeConfig) -> float | None:
    """``regression=local``'s window half-width in pixels, None for the plain soft-argmin."""
    return float(runtime.regression_radius) if runtime.regression == Regression.local else None


class Refinement(nn.Module):
    """A head's (B, 1, D', H', W') cost -> its (B, H, W) disparity in pixels: the base of every
    ``model.refine`` kind. ``size`` is (D, H, W) at full resolution, ``guides`` the normalised views.

    ``refines``: whether it has weights of its own (``runtime.refinement`` switches them off);
    ``full_resolution_channels``: the float maps per pixel it holds at its peak (the memory estimate)."""

    refines = False
    full_resolution_channels = 0

    def train_head(self, cost: torch.Tensor, size: Size, guides: Guides) -> torch.Tensor:
        raise NotImplementedError

    def infer_head(
        self, cost: torch.Tensor, size: Size, guides: Guides, runtime: RuntimeConfig, confidence: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eval: the disparity and, with ``confidence``, the soft-argmin's (B, H, W) confidence (else None),
        under the runtime's regression, chunking and ``refinement`` switch."""
        raise NotImplementedError

    @staticmethod
    def regress(
        cost: torch.Tensor, size: Size, runtime: RuntimeConfig, confidence: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eval, nothing learned: the runtime's regression of the upsampled cost (the soft-argmin, or
        ``regression=local``'s windowed one), chunked, and its confidence (None unless asked for)."""
        out = upsample_regress(cost, size, runtime.eval_chunk_rows or None, confidence, _windowed_radius(runtime))
        return out if confidence else (out, None)


class NoRefinement(Refinement):
    """``model.refine=none`` (PSMNet): the soft-argmin of the upsampled cost, nothing learned."""

    def train_head(self, cost: torch.Tensor, size: Size, guides: Guides) -> torch.Tensor:
        return upsample_regress(cost, size)

    def infer_head(
        self, cost: torch.Tensor, size: Size, guides: Guides, runtime: RuntimeConfig, confidence: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.regress(cost, size, runtime, confidence)


class ModesRefinement(Refinement):
    """``model.refine=modes``: the soft-argmin, the windowed estimate and its mass from one upsampling
    (:func:`~stereo.models.regression.upsample_regress_modes`), then the learned gate and residual.

    ``forward(disp, image, right, local, mass)``: the soft-argmin (B, H, W) in pixels, the normalised left
    and right images (B, 3, H, W), the windowed estimate (B, H, W, pixels) and its window's probability
    mass (B, H, W) -> refined disparity (B, H, W), never negative.

    Args:
        channels: width of the convolutions (16: about 16 GFLOP per 544x960 frame).
        dilations: one dilated 3x3 convolution with a residual connection per entry.
        scale: disparities are divided by this before entering the network, so the layers see values of
            order 1 for any range; the residual comes out in pixels.
    """

    refines = True

    def __init__(self, channels: int = 16, dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1), scale: float = 64.0):
        super().__init__()
        self.scale = float(scale)
        self.full_resolution_channels = 2 * channels  # two activations of the convolutions at a time
        self.stem = nn.Conv2d(4 + 3 + len(PHOTOMETRIC_OFFSETS) + 3, channels, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in dilations)
        self.head = nn.Conv2d(channels, 2, 3, padding=1)  # (residual, gate)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def train_head(self, cost: torch.Tensor, size: Size, guides: Guides) -> torch.Tensor:
        soft, local, mass = upsample_regress_modes(cost, size, MODES_RADIUS)
        return self(soft, *guides, local, mass)

    def infer_head(
        self, cost: torch.Tensor, size: Size, guides: Guides, runtime: RuntimeConfig, confidence: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not runtime.refinement:  # the network's own answer (regression=local allowed here)
            return self.regress(cost, size, runtime, confidence)
        x, soft, local, conf = self.evidence(cost, size, guides, runtime, confidence)
        return self.decode(x, soft, local), conf

    def evidence(
        self, cost: torch.Tensor, size: Size, guides: Guides, runtime: RuntimeConfig, confidence: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Eval: what the learned part reads for a head's cost: the (B, C, H, W) input of :meth:`decode`
        (:meth:`inputs`), the soft-argmin and the windowed estimate (B, H, W, pixels) it decodes with, and
        the soft-argmin's confidence (None unless asked for). None of it depends on the weights, so
        test-time adaptation computes it once (:mod:`stereo.adapt`)."""
        maps = upsample_regress_modes(cost, size, MODES_RADIUS, runtime.eval_chunk_rows or None, confidence)
        with torch.autocast(cost.device.type, enabled=False):
            x = self.inputs(maps[0], *guides, maps[1], maps[2])
        return x, maps[0], maps[1], (maps[3] if confidence else None)

    def forward(
        self, disp: torch.Tensor, image: torch.Tensor, right: torch.Tensor, local: torch.Tensor, mass: torch.Tensor
    ) -> torch.Tensor:
        with torch.autocast(disp.device.type, enabled=False):
            disp = disp.float() if disp.dtype in (torch.float16, torch.bfloat16) else disp
            return self.decode(self.inputs(disp, image, right, local, mass), disp, local)

    def decode(self, x: torch.Tensor, disp: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """The learned part, in fp32 whatever the autocast: the (B, C, H, W) evidence of :meth:`inputs`, the
        soft-argmin and the windowed estimate (B, H, W, pixels) -> the refined disparity."""
        with torch.autocast(x.device.type, enabled=False):
            # Channels-last: oneDNN prefers it for these full-resolution convolutions (docs/performance.md).
            inplace = not torch.is_grad_enabled()  # inference: no fresh full-resolution buffer per operation
            x = F.leaky_relu(self.stem(x.contiguous(memory_format=torch.channels_last)), 0.2, inplace)
            for block in self.blocks:
                step = F.leaky_relu(block(x), 0.2, inplace)
                x = x.add_(step) if inplace else x + step
            out = self.head(x)
            # A zero head (untrained) gives gate 0: the soft-argmin unchanged.
            disp = disp + out[:, 1].clamp(0, 1) * (local.to(disp.dtype) - disp)
            return F.relu(disp + out[:, 0])

    def inputs(
        self, disp: torch.Tensor, image: torch.Tensor, right: torch.Tensor, local: torch.Tensor, mass: torch.Tensor
    ) -> torch.Tensor:
        """The (B, 4 + 3 + len(PHOTOMETRIC_OFFSETS) + 3, H, W) input of the first convolution: the left image,
        disparity / scale, the signed colour error at the disparity and the mean absolute colour error at
        each offset, then the windowed estimate's offset from the disparity / :data:`MODES_RADIUS`, its
        window's mass and the mean absolute colour error there."""
        image, right = image.to(disp.dtype), right.to(disp.dtype)
        parts = [image, disp.unsqueeze(1) / self.scale]
        curve = []
        for offset in PHOTOMETRIC_OFFSETS:
            warped, inside = warp_right_to_left(right, disp + offset)
            error = (image - warped) * inside
            if offset == 0:
                parts.append(error)
            curve.append(error.abs().mean(dim=1, keepdim=True))
        parts += curve
        local, mass = local.to(disp.dtype), mass.to(disp.dtype)
        warped, inside = warp_right_to_left(right, local)
        parts += [
            ((local - disp) / MODES_RADIUS).unsqueeze(1),
            mass.unsqueeze(1),
            ((image - warped) * inside).abs().mean(dim=1, keepdim=True),
        ]
        return torch.cat(parts, dim=1)


def build_refinement(kind: str, max_disp: int, channels: int = 16) -> Refinement:
    """The :class:`Refinement` of ``model.refine=kind`` for a network of ``max_disp`` pixels, ``channels``
    wide (``model.refine_channels``; refine=modes only)."""
    if kind == Refine.modes.value:
        return ModesRefinement(channels=channels, scale=max_disp / 2)
    if kind == Refine.none.value:
        return NoRefinement()
    raise ConfigError(f"model.refine must be one of {', '.join(Refine.__members__)}, got {kind!r}")
