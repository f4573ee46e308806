"""Sub-pixel refinement: a light full-resolution residual on the regressed disparity, guided by the
left image (the idea of StereoNet's and iResNet's refinement; our own layers).

The regression of PSMNet-family networks works on a 1/4-resolution cost volume, upsampled: edges come
out soft and sub-pixel precision is limited. :class:`ResidualRefinement` looks at the left image and the
disparity at full resolution through a stack of dilated 3x3 convolutions (receptive field 63 px) and
adds a residual. Its last convolution starts at zero, so an untrained refinement returns its input.

``photometric=True`` (``model.refine=warp``) also gives it the evidence for a sub-pixel correction: the
right image warped to the left view by the current disparity, as the photometric error (left minus
warped right, zero where the match falls outside the right image; the idea of iResNet's feature
constancy, on colours), and a local cost curve: the mean absolute colour error at the disparity
shifted by each of ``PHOTOMETRIC_OFFSETS`` pixels, from which a correction is read as from a parabola
through the costs around the minimum, without dividing by an image gradient.

``modes=True`` (``model.refine=modes``) adds the evidence about the regression's own distribution, where
PSMNet's errors concentrate (object borders, thin structures: a distribution with two modes, whose
soft-argmin lands between them): the windowed soft-argmin around the most likely disparity (what
``regression=local`` answers), the probability mass of that window and the colour error at that
candidate. Its head also predicts a gate in [0, 1] that moves each pixel from the soft-argmin towards the
windowed estimate (the soft-argmin has the lower EPE, the windowed one fewer bad pixels; the refinement
picks per pixel), before the residual.

The refinement computes in fp32 whatever the autocast around it: its inputs and output are disparities in
pixels, which bf16 would round to 0.5 px at 100 px.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

PHOTOMETRIC_OFFSETS = (-2.0, -1.0, 0.0, 1.0, 2.0)  # pixels: the local cost curve of the warp refinement
MODES_RADIUS = 8.0  # pixels: refine=modes' window around the most likely disparity; fixed, the weights learn it


def warp_right_to_left(right: torch.Tensor, disp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample the right image (B, C, H, W) at x - d for every left pixel, d the disparity (B, H, W) in
    pixels (bilinear, differentiable in both). Returns the warped image (B, C, H, W) and the mask
    (B, 1, H, W) of the pixels whose match lies inside the right image."""
    _, _, h, w = right.shape
    xs = torch.arange(w, device=disp.device, dtype=disp.dtype).view(1, 1, w) - disp
    ys = torch.arange(h, device=disp.device, dtype=disp.dtype).view(1, h, 1).expand_as(xs)
    # align_corners=True: -1 and 1 are the centres of the first and last pixel.
    grid = torch.stack([2 * xs / max(w - 1, 1) - 1, 2 * ys / max(h - 1, 1) - 1], dim=-1)
    warped = F.grid_sample(right.to(disp.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    inside = ((xs >= 0) & (xs <= w - 1)).unsqueeze(1).to(disp.dtype)
    return warped, inside


class ResidualRefinement(nn.Module):
    """``forward(disp, image, right=None, local=None, mass=None)``: disparity (B, H, W) in pixels and the
    normalised left image (B, 3, H, W); with ``photometric`` the normalised right image (B, 3, H, W); with
    ``modes`` the windowed estimate (B, H, W, pixels) and its window's probability mass (B, H, W)
    (:func:`~stereo.models.regression.regress_modes`) -> refined disparity (B, H, W), never negative.

    Args:
        channels: width of the convolutions (16: about 16 GFLOP per 544x960 frame).
        dilations: one dilated 3x3 convolution with a residual connection per entry.
        scale: disparities are divided by this before entering the network, so the layers see values of
            order 1 for any range; the residual comes out in pixels.
        photometric: also look at the photometric error of the right image warped by the disparity, and
            at the local cost curve around it (``PHOTOMETRIC_OFFSETS``).
        modes: also look at the windowed estimate, its mass and its colour error (needs ``photometric``),
            and gate between the two estimates.
    """

    def __init__(
        self,
        channels: int = 16,
        dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1),
        scale: float = 64.0,
        photometric: bool = False,
        modes: bool = False,
    ):
        super().__init__()
        if modes and not photometric:
            raise ValueError("modes needs photometric (the colour error of the windowed estimate)")
        self.scale = float(scale)
        self.photometric = photometric
        self.modes = modes
        inputs = 4 + (3 + len(PHOTOMETRIC_OFFSETS) if photometric else 0) + (3 if modes else 0)
        self.stem = nn.Conv2d(inputs, channels, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=d, dilation=d) for d in dilations)
        self.head = nn.Conv2d(channels, 2 if modes else 1, 3, padding=1)  # (residual[, gate])
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self,
        disp: torch.Tensor,
        image: torch.Tensor,
        right: torch.Tensor | None = None,
        local: torch.Tensor | None = None,
        mass: torch.Tensor | None = None,
    ) -> torch.Tensor:
        with torch.autocast(disp.device.type, enabled=False):
            disp = disp.float() if disp.dtype in (torch.float16, torch.bfloat16) else disp
            # Channels-last: oneDNN's convolutions ran 1.7-2.4x faster so at 544x960 on 2 CPU cores.
            x = self.inputs(disp, image, right, local, mass).contiguous(memory_format=torch.channels_last)
            x = F.leaky_relu(self.stem(x), 0.2)
            for block in self.blocks:
                x = x + F.leaky_relu(block(x), 0.2)
            out = self.head(x)
            if self.modes:  # a zero head (untrained) gives gate 0: the soft-argmin unchanged
                disp = disp + out[:, 1].clamp(0, 1) * (local.to(disp.dtype) - disp)
            return F.relu(disp + out[:, 0])

    def inputs(
        self,
        disp: torch.Tensor,
        image: torch.Tensor,
        right: torch.Tensor | None = None,
        local: torch.Tensor | None = None,
        mass: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The (B, 4 [+ 3 + len(PHOTOMETRIC_OFFSETS) [+ 3]], H, W) input of the first convolution: the left
        image, disparity / scale, then (photometric) the signed colour error at the disparity and the mean
        absolute colour error at each offset, then (modes) the windowed estimate's offset from the
        disparity / :data:`MODES_RADIUS`, its window's mass and the mean absolute colour error there."""
        image = image.to(disp.dtype)
        parts = [image, disp.unsqueeze(1) / self.scale]
        if self.photometric:
            if right is None:
                raise ValueError("a photometric refinement needs the right image")
            right = right.to(disp.dtype)
            curve = []
            for offset in PHOTOMETRIC_OFFSETS:
                warped, inside = warp_right_to_left(right, disp + offset)
                error = (image - warped) * inside
                if offset == 0:
                    parts.append(error)
                curve.append(error.abs().mean(dim=1, keepdim=True))
            parts += curve
        if self.modes:
            if local is None or mass is None:
                raise ValueError("refine=modes needs the windowed estimate and its mass (regress_modes)")
            local, mass = local.to(disp.dtype), mass.to(disp.dtype)
            warped, inside = warp_right_to_left(right, local)
            parts += [
                ((local - disp) / MODES_RADIUS).unsqueeze(1),
                mass.unsqueeze(1),
                ((image - warped) * inside).abs().mean(dim=1, keepdim=True),
            ]
        return torch.cat(parts, dim=1)
