"""``model.subpixel=match``: learned full-resolution sub-pixel matching after the network's answer.

The network's disparity comes from a cost volume at 1/4 (or 1/8) of the image: its precision is bounded by
that grid and by the upsampling. This stage looks at the two views at full resolution: light learned
features of each view (shared weights), the right view's features and colours warped to the left by the
current disparity shifted by each of :data:`OFFSETS` (quarter pixels within +-1.5 px), per offset the cosine
of the feature vectors and the mean colour difference, then a small convolutional head that reads that curve,
the left features and the left view's local contrast, and returns a bounded residual in pixels and a gate in
[0, 1] that says how much of it to take.
``steps`` such updates run in turn with the same weights, each from the previous answer (RAFT-Stereo's
lookups in a window around the current estimate; HITNet's and StereoNet's local refinement: the ideas, our
own layers). The head's last convolution starts at zero, so an untrained stage returns its input exactly.

The lookups are local (a few pixels), so the cost is linear in pixels. It computes in fp32 whatever the
autocast around it: its inputs and outputs are disparities in pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereo.models.propagation import agreement, propagate
from stereo.models.refinement import warp_right_to_left
from stereo.models.selection import NeighbourSelect

OFFSETS = tuple(k / 4 for k in range(-6, 7))  # pixels around the current estimate: the correlation curve
REACH = 1.5  # pixels: the largest residual one update can add (the curve's extent)
COLOURS = 3  # the last channels of an embedding (:meth:`SubpixelMatch.embed`): the view's own colours
CONTRAST_WINDOW = 5  # pixels: the window of the local contrast the head reads (:func:`local_contrast`)
CONTRAST_FLOOR = 1e-4  # variance in normalised units (a standard deviation of about 0.6 grey levels): flat below


def local_contrast(image: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) normalised view -> (B, 1, H, W): log of the variance of its colours over a
    :data:`CONTRAST_WINDOW` window, averaged over channels. Features are normalised to unit length before the
    correlation, so without this the head cannot tell a textured surface from sensor noise on a flat one
    (where a learned step only moves pixels by the noise's chance matches)."""
    pool = dict(kernel_size=CONTRAST_WINDOW, stride=1, padding=CONTRAST_WINDOW // 2, count_include_pad=False)
    mean = F.avg_pool2d(image, **pool)
    var = (F.avg_pool2d(image * image, **pool) - mean * mean).clamp_min(0).mean(1, keepdim=True)
    return torch.log(var + CONTRAST_FLOOR)


class SubpixelMatch(nn.Module):
    """Full-resolution sub-pixel updates of a disparity map.

    ``forward(disp, left, right, steps=None, propagation=0)``: the (B, H, W) disparity in pixels and the
    normalised views (B, 3, H, W) -> the updated (B, H, W) disparity in pixels, never negative.

    Args:
        channels: width of the feature and head convolutions.
        feature_channels: channels of the features that are correlated.
        steps: updates with shared weights, each from the previous answer.
        select: after the updates, a learned mixture of each pixel's and its neighbours' disparities
            (:class:`~stereo.models.selection.NeighbourSelect`, ``model.subpixel_select=learned``).
        rounds: with ``select``, rounds of one more update and one more choice after that
            (``model.subpixel_rounds``), the same weights again.
    """

    def __init__(
        self, channels: int = 16, feature_channels: int = 8, steps: int = 1, select: bool = False, rounds: int = 0
    ) -> None:
        super().__init__()
        if rounds and not select:
            raise ValueError(f"rounds={rounds}: each round ends with the learned choice, which needs select=True")
        self.steps = steps
        self.rounds = rounds
        k = len(OFFSETS)
        # Its peak in float maps per pixel: both views' features, the contrast, the curve, the head's input, two
        # activations.
        views, curve = 2 * (feature_channels + 3) + 1, 2 * k + 1
        self.full_resolution_channels = views + curve + (curve + feature_channels + 1) + 2 * channels
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=2, dilation=2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, feature_channels, 3, padding=1),
        )
        self.head = nn.Sequential(
            nn.Conv2d(2 * k + 1 + feature_channels + 1, channels, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=2, dilation=2),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.out = nn.Conv2d(channels, 2, 3, padding=1)  # (residual, gate logit)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # None registers nothing: the state dict of a stage without it stays as it was.
        self.selector = NeighbourSelect(COLOURS) if select else None
        if self.selector is not None:
            self.full_resolution_channels = max(self.full_resolution_channels, views + self.selector.peak_channels)

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised view -> (B, feature_channels + 3, H, W): unit-length feature vectors, then
        the view's colours (warped together)."""
        # Channels-last: oneDNN's full-resolution convolutions of a few channels run about a third faster so.
        features = self.features(image.contiguous(memory_format=torch.channels_last))
        return torch.cat([F.normalize(features, dim=1, eps=1e-6), image], 1)

    def curve(self, fl: torch.Tensor, fr: torch.Tensor, disp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per offset, the cosine of the left features with the right features warped by ``disp + offset``
        and the mean absolute colour difference of the views so warped: (B, 2 len(OFFSETS), H, W); and the
        (B, 1, H, W) share of offsets whose match lies inside the right view. ``fl``/``fr``: the views'
        features with their colours last (:meth:`embed`)."""
        scores, colour, inside = [], [], []
        for offset in OFFSETS:
            warped, ok = warp_right_to_left(fr, disp + offset)
            cosine, difference = agreement(fl, warped, COLOURS)
            scores.append(cosine)
            colour.append(difference)
            inside.append(ok)
        return torch.cat(scores + colour, 1), torch.cat(inside, 1).mean(1, keepdim=True)

    def update(self, fl: torch.Tensor, fr: torch.Tensor, disp: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
        """One update of the (B, H, W) disparity from the features of both views and the left view's (B, 1, H, W)
        :func:`local_contrast`."""
        corr, inside = self.curve(fl, fr, disp)
        # Concatenated straight into channels-last memory, the layout the head's convolutions run fastest in.
        parts = (corr, inside, fl[:, :-COLOURS], contrast)
        x = torch.cat([part.permute(0, 2, 3, 1) for part in parts], -1).permute(0, 3, 1, 2)
        out = self.out(self.head(x))
        # Zero output (untrained): residual 0 whatever the gate, so the input comes back unchanged.
        step = REACH * torch.tanh(out[:, 0]) * torch.sigmoid(out[:, 1])
        return F.relu(disp + step)

    def forward(
        self,
        disp: torch.Tensor,
        left: torch.Tensor,
        right: torch.Tensor,
        steps: int | None = None,
        propagation: int = 0,
        rounds: int | None = None,
    ) -> torch.Tensor:
        """``steps`` updates (None: the stage's own number, as trained), the learned mixture of neighbours'
        disparities if the stage has one, then ``rounds`` (None: as trained) of one more update and one more
        mixture, then ``propagation`` rounds of :func:`~stereo.models.propagation.propagate` between the same
        features (no weights of its own)."""
        rounds = self.rounds if rounds is None else rounds
        if rounds and self.selector is None:
            raise ValueError(f"rounds={rounds}: each round ends with the learned choice, and this stage has none")
        with torch.autocast(disp.device.type, enabled=False):
            disp = disp.float() if disp.dtype in (torch.float16, torch.bfloat16) else disp
            left = left.to(disp.dtype)
            fl, fr, contrast = self.embed(left), self.embed(right.to(disp.dtype)), local_contrast(left)
            for _ in range(self.steps if steps is None else steps):
                disp = self.update(fl, fr, disp, contrast)
            if self.selector is not None:
                disp = self.selector(fl, fr, disp, contrast)
                for _ in range(rounds):
                    disp = self.selector(fl, fr, self.update(fl, fr, disp, contrast), contrast)
            return propagate(fl, fr, disp, propagation, COLOURS) if propagation else disp
