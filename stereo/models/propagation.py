"""``propagate=N``: PatchMatch-style propagation of a full-resolution disparity map, with no training.

A cost volume at 1/4 of the image blurs depth edges: a band of pixels beside an edge gets a disparity between
the two surfaces' or the other surface's, errors of a few pixels that a local sub-pixel step cannot reach.
Each round, every pixel tries the disparities of its neighbours :data:`NEIGHBOURS` (2, 4 and 8 px to the left,
right, above and below) and takes the one the two views match best at, when it beats its own by :data:`MARGIN`:
the cost of a disparity map is, per pixel, the dissimilarity of the left view's learned features with the right
view's warped by it (1 - the cosine of the sub-pixel stage's unit-length features, plus the mean absolute colour
difference: what the stage reads, :mod:`stereo.models.subpixel`), averaged over a :data:`WINDOW` x :data:`WINDOW`
window; a neighbour's value is scored as the whole map shifted by that neighbour's offset. A surface's disparity
so spreads from its interior to its edge, as in PatchMatch Stereo (Bleyer et al., BMVC 2011) and
HITNet's propagation; a pixel only ever takes a value that a neighbour already has.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stereo.models.refinement import warp_right_to_left

NEIGHBOURS = tuple((dy, dx) for r in (2, 4, 8) for dy, dx in ((0, r), (0, -r), (r, 0), (-r, 0)))  # pixels
WINDOW = 5  # pixels: the cost's averaging window (chosen on the selection sets, docs/inference.md)
MARGIN = 0.1  # a neighbour's value must cost this much less: sensor noise on weak texture makes chance matches
MIN_JUMP = 0.5  # pixels: a neighbour's value closer than this to the pixel's own is left to the sub-pixel stage
OUTSIDE = 9.0  # a match outside the right view: above any inside (1 - cosine <= 2; normalised colours differ < 5)


def shifted(disp: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(B, H, W) -> (B, H, W): each pixel gets the value of its neighbour ``dy`` rows below and ``dx`` columns to
    the right (the border's nearest value beyond the image)."""
    h, w = disp.shape[-2:]
    pad = max(abs(dy), abs(dx))
    wide = F.pad(disp[:, None], (pad, pad, pad, pad), mode="replicate")[:, 0]
    return wide[:, pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def agreement(fl: torch.Tensor, warped: torch.Tensor, colours: int) -> tuple[torch.Tensor, torch.Tensor]:
    """How well the right view's embedding, warped to the left (B, C, H, W), agrees with the left's ``fl``: the
    (B, 1, H, W) cosine of the unit-length features and mean absolute difference of the last ``colours``
    channels (the views' colours). The sub-pixel stage's curve reads both; :func:`match_cost` combines them."""
    c = fl.shape[1] - colours
    cosine = (fl[:, :c] * warped[:, :c]).sum(1, keepdim=True)
    return cosine, (fl[:, c:] - warped[:, c:]).abs().mean(1, keepdim=True)


def match_cost(
    fl: torch.Tensor, fr: torch.Tensor, disp: torch.Tensor, colours: int, window: int = WINDOW
) -> torch.Tensor:
    """The (B, H, W) cost of a (B, H, W) disparity in pixels: 1 - cosine of the left features with the right
    ones warped by it plus the mean absolute colour difference, averaged over ``window`` x ``window``; ``fl``,
    ``fr``: (B, C, H, W) embeddings whose last ``colours`` channels are the views' colours and whose others are
    unit-length features. :data:`OUTSIDE` where the match leaves the right view."""
    warped, inside = warp_right_to_left(fr, disp)
    cosine, colour = agreement(fl, warped, colours)
    cost = 1 - cosine + colour
    cost = torch.where(inside > 0.5, cost, OUTSIDE)
    if window == 1:  # the per-pixel cost (the learned choice's): a pooling pass would only copy it
        return cost[:, 0]
    return F.avg_pool2d(cost, window, stride=1, padding=window // 2, count_include_pad=False)[:, 0]


def propagate(fl: torch.Tensor, fr: torch.Tensor, disp: torch.Tensor, rounds: int, colours: int) -> torch.Tensor:
    """``rounds`` rounds of propagation of the (B, H, W) disparity (pixels) between the embedded views ``fl``
    and ``fr`` (:func:`match_cost`) -> (B, H, W). A pixel takes the neighbour's value that costs least, when it
    differs from its own by more than :data:`MIN_JUMP` and costs at least :data:`MARGIN` less than its own."""
    for _ in range(rounds):
        # the pixel's own value competes with its cost less the margin: a neighbour must beat that
        best, best_cost = disp, match_cost(fl, fr, disp, colours) - MARGIN
        for dy, dx in NEIGHBOURS:
            candidate = shifted(disp, dy, dx)  # from the previous round's map: the order of neighbours is free
            cost = match_cost(fl, fr, candidate, colours)
            better = (cost < best_cost) & ((candidate - disp).abs() > MIN_JUMP)
            best, best_cost = torch.where(better, candidate, best), torch.where(better, cost, best_cost)
        disp = best
    return disp
