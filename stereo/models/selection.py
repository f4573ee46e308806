"""``model.subpixel_select=learned``: a learned weighing of a pixel's own disparity and its neighbours'.

:mod:`stereo.models.propagation`'s rule (take a neighbour's value when it matches better by a fixed margin)
mends the band of wrong disparities beside a depth edge on photographs, but on rendered scenes with weak
texture it also takes chance matches, and no hand-made guard kept one without the other (docs/inference.md).
This head makes the same choice from learned evidence: for each candidate (the pixel's own value and those of
:data:`~stereo.models.propagation.NEIGHBOURS`) the per-pixel match cost and its :data:`WINDOW` mean, relative to
the own value's, and the jump to it, plus the own value's costs and the left view's local contrast; two
convolutions read them over a neighbourhood and score each candidate. The scores' softmax weighs the candidates,
in training (so the engine's truncated L1 of that mixture trains the head) and in eval alike: picking the
best-scored candidate in eval instead was level with no choice at all on the selection sets, the mixture better
(docs/models.md). The move from the own value to the mixture is scaled by a learned gain
(:data:`GAIN_RATE` times the weight ``gain``), which starts at zero, so an untrained head returns its input
exactly; in training the scores learn as if that gain were 1 (:meth:`NeighbourSelect.forward`). The result is
clamped at 0, as every disparity the model returns.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stereo.models.propagation import NEIGHBOURS, match_cost, shifted

CANDIDATES = 1 + len(NEIGHBOURS)  # the pixel's own value first
WINDOW = 5  # pixels: the window of the mean cost it reads beside the per-pixel one
COST_CLIP = 3.0  # cost differences beyond this say nothing more (a match outside the right view costs 9)
JUMP_CLIP = 16.0  # pixels: jumps beyond this read as this
OWN_PRIOR = 2.0  # the own value's score at initialisation (others 0): softmax 0.38 on it
# The gain is this times its weight: Adam moves a weight by about its learning rate a step, so a plain scalar
# would need ~1/lr steps to reach 1 from 0; this lets it get there in tens of steps, as fast as the scores learn.
GAIN_RATE = 10.0


def candidates(disp: torch.Tensor) -> torch.Tensor:
    """(B, H, W) disparity -> (B, :data:`CANDIDATES`, H, W): the pixel's own value, then each neighbour's."""
    return torch.stack([disp] + [shifted(disp, dy, dx) for dy, dx in NEIGHBOURS], 1)


class NeighbourSelect(nn.Module):
    """Scores the candidates of each pixel and weighs them.

    ``forward(fl, fr, disp, contrast)``: the views' embeddings (B, C, H, W) with their colours in the last
    ``colours`` channels (:meth:`~stereo.models.subpixel.SubpixelMatch.embed`), the (B, H, W) disparity in
    pixels and the left view's (B, 1, H, W) local contrast -> the (B, H, W) disparity in pixels.
    """

    def __init__(self, colours: int, channels: int = 32) -> None:
        super().__init__()
        self.colours = colours
        inputs = 3 * len(NEIGHBOURS) + 3
        self.body = nn.Sequential(
            nn.Conv2d(inputs, channels, 3, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=2, dilation=2),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.out = nn.Conv2d(channels, CANDIDATES, 1)
        # float maps per pixel at its peak (the memory estimate): candidates, both costs, the input, two
        # activations, the scores
        self.peak_channels = 3 * CANDIDATES + inputs + 2 * channels + CANDIDATES
        nn.init.zeros_(self.out.weight)
        self.gain = nn.Parameter(torch.zeros(()))  # the move to the mixture / GAIN_RATE: 0, the identity, at first
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[0] = OWN_PRIOR

    def scores(
        self, fl: torch.Tensor, fr: torch.Tensor, disp: torch.Tensor, contrast: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The (B, K, H, W) candidates in pixels and their (B, K, H, W) scores (higher: better)."""
        values = candidates(disp)
        raw = torch.stack([match_cost(fl, fr, values[:, k], self.colours, window=1) for k in range(CANDIDATES)], 1)
        mean = F.avg_pool2d(raw, WINDOW, stride=1, padding=WINDOW // 2, count_include_pad=False)
        x = torch.cat(
            [
                (mean[:, 1:] - mean[:, :1]).clamp(-COST_CLIP, COST_CLIP),
                (raw[:, 1:] - raw[:, :1]).clamp(-COST_CLIP, COST_CLIP),
                (values[:, 1:] - values[:, :1]).clamp(-JUMP_CLIP, JUMP_CLIP) / 4,
                mean[:, :1].clamp(max=COST_CLIP),
                raw[:, :1].clamp(max=COST_CLIP),
                contrast / 4,
            ],
            1,
        )
        # Channels-last: oneDNN runs these full-resolution convolutions about twice as fast as on planes.
        return values, self.out(self.body(x.contiguous(memory_format=torch.channels_last)))

    def forward(self, fl: torch.Tensor, fr: torch.Tensor, disp: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
        values, scores = self.scores(fl, fr, disp, contrast)
        weights = scores.softmax(1)
        gain = GAIN_RATE * self.gain
        out = disp + gain * ((weights * values).sum(1) - disp)
        if self.training and torch.is_grad_enabled():
            # The scores learn as if the gain were 1: their true gradient is the gain times that, nothing at the
            # zero start, and an untrained mixture (a blend of neighbours) hurts, so the gain drifts below zero and
            # the scores never learn (a run did so: gain -0.035 after 600 steps). The term is zero in value; what
            # flows back through the candidates' weights (to the scores and their inputs) is that of gain 1, the
            # gain's gradient and that through the candidates' values stay exact.
            out = out + (1 - gain).detach() * ((weights - weights.detach()) * values.detach()).sum(1)
        # A learned gain above 1 (the shipped weights' is 1.12) can carry a pixel past the mixture, below zero
        # beside a near neighbour at 0; no disparity is negative.
        return F.relu(out)
