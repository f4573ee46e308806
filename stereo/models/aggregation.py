"""3-D cost aggregation: two 3-D conv stages and stacked hourglasses with one output head each (PSMNet)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from stereo.models.layers import Conv3d, convbn_3d


class Hourglass(nn.Module):
    """3-D encoder-decoder: 1/4 -> 1/8 -> 1/16 -> 1/8 -> 1/4 of the image, with PSMNet's skips."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(convbn_3d(c, 2 * c, 3, 2, 1), nn.ReLU(inplace=True))
        self.conv2 = convbn_3d(2 * c, 2 * c, 3, 1, 1)
        self.conv3 = nn.Sequential(convbn_3d(2 * c, 2 * c, 3, 2, 1), nn.ReLU(inplace=True))
        self.conv4 = nn.Sequential(convbn_3d(2 * c, 2 * c, 3, 1, 1), nn.ReLU(inplace=True))
        self.conv5 = nn.Sequential(
            nn.ConvTranspose3d(2 * c, 2 * c, 3, padding=1, output_padding=1, stride=2, bias=False),
            nn.BatchNorm3d(2 * c),
        )
        self.conv6 = nn.Sequential(
            nn.ConvTranspose3d(2 * c, c, 3, padding=1, output_padding=1, stride=2, bias=False),
            nn.BatchNorm3d(c),
        )

    def forward(self, x, presqu, postsqu):
        pre = self.conv2(self.conv1(x))
        pre = F.relu(pre + postsqu if postsqu is not None else pre)
        out = self.conv4(self.conv3(pre))
        post = F.relu(self.conv5(out) + (presqu if presqu is not None else pre))
        return self.conv6(post), pre, post


def _classifier(c: int) -> nn.Sequential:
    return nn.Sequential(convbn_3d(c, c, 3, 1, 1), nn.ReLU(inplace=True), Conv3d(c, 1, 3, padding=1, bias=False))


class StackedHourglass(nn.Module):
    """PSMNet's 3-D network: ``dres0``, ``dres1``, hourglasses ``dres2..`` and heads ``classif1..``.

    Input (B, C_in, D/4, H/4, W/4); output a list of (B, 1, D/4, H/4, W/4) costs, one per hourglass,
    where head k adds the previous head's cost. :meth:`final_cost` is the memory-frugal inference path to
    the final cost alone (it still computes every head: the final one adds them up).
    """

    def __init__(self, in_channels: int, channels: int = 32, hourglasses: int = 3) -> None:
        super().__init__()
        if hourglasses < 1:
            raise ValueError(f"need at least one hourglass, got {hourglasses}")
        c = channels
        self.hourglasses = hourglasses
        self.dres0 = nn.Sequential(
            convbn_3d(in_channels, c, 3, 1, 1),
            nn.ReLU(inplace=True),
            convbn_3d(c, c, 3, 1, 1),
            nn.ReLU(inplace=True),
        )
        self.dres1 = nn.Sequential(convbn_3d(c, c, 3, 1, 1), nn.ReLU(inplace=True), convbn_3d(c, c, 3, 1, 1))
        for i in range(hourglasses):
            self.add_module(f"dres{i + 2}", Hourglass(c))
            self.add_module(f"classif{i + 1}", _classifier(c))

    def _stem(self, volume: torch.Tensor) -> tuple:
        """The two 3-D stages before the hourglasses; returns the loop state (x, cost0, pre1, post, prev)."""
        cost0 = self.dres0(volume)
        cost0 = self.dres1(cost0) + cost0
        return cost0, cost0, None, None, None

    def _step(self, i: int, state: tuple) -> tuple[torch.Tensor, tuple]:
        """Hourglass i and its head: (head i's cost (b, 1, D', H', W'), the next state)."""
        x, cost0, pre1, post, prev = state
        # PSMNet: hourglass k>1 takes (previous output, pre of the first hourglass, previous post).
        out, pre, post = getattr(self, f"dres{i + 2}")(x, pre1 if i else None, post)
        x = out + cost0
        cost = getattr(self, f"classif{i + 1}")(x)
        if prev is not None:
            cost = cost + prev
        return cost, (x, cost0, pre if i == 0 else pre1, post, cost)

    def forward(self, volume: torch.Tensor) -> list[torch.Tensor]:
        state = self._stem(volume)
        del volume
        costs: list[torch.Tensor] = []
        for i in range(self.hourglasses):
            cost, state = self._step(i, state)
            costs.append(cost)
        return costs

    def final_cost(self, volume: list[torch.Tensor]) -> torch.Tensor:
        """Inference: the final head's (B, 1, D', H', W') cost, equal to ``forward(v)[-1]`` to the last bit,
        at about half its peak memory.

        Takes the volume out of the one-element list ``volume`` (ownership: a tensor passed as an
        argument stays alive until the call returns), so it is freed once the first convolution has
        read it; residual sums are written in place, and each hourglass's input is freed as soon as the
        next one exists. Live at most: the volume and one ``channels`` volume, or about 3.5 of them.
        """
        x = volume.pop()
        for layer in self.dres0:
            x = layer(x)
        cost0 = self.dres1(x).add_(x)
        del x
        x, pre1, post, cost = cost0, None, None, None
        for i in range(self.hourglasses):
            out, pre, post = getattr(self, f"dres{i + 2}")(x, pre1, post)
            pre1 = pre if i == 0 else pre1
            x = out.add_(cost0)
            del out
            head = getattr(self, f"classif{i + 1}")(x)
            cost = head if cost is None else head.add_(cost)
        return cost

    def forward_early_exit(
        self, volume: list[torch.Tensor], stop: Callable[[int, torch.Tensor], torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[int]]:
        """Per image, stop after the first head k < K for which ``stop(k, cost)`` says so.

        Takes the volume out of the one-element list ``volume``, as :meth:`final_cost`, so it is freed
        after the two 3-D stages before the hourglasses.

        ``stop(k, cost)`` gets head k's (b, 1, D', H', W') cost of the images still running and returns
        a (b,) bool. Images that stop leave the batch; the rest run the next hourglass. Returns each
        image's (1, D', H', W') cost of the head that answered, and that head's number (1-based).
        """
        state = self._stem(volume.pop())
        b = state[0].shape[0]
        answers: list[torch.Tensor | None] = [None] * b
        heads = [self.hourglasses] * b
        active = torch.arange(b)
        for i in range(self.hourglasses):
            cost, state = self._step(i, state)
            last = i == self.hourglasses - 1
            done = torch.ones(len(active), dtype=torch.bool) if last else stop(i + 1, cost).cpu()
            for j in done.nonzero().flatten().tolist():
                answers[int(active[j])] = cost[j : j + 1]
                heads[int(active[j])] = i + 1
            if done.all():
                break
            keep = (~done).nonzero().flatten().to(cost.device)
            state = tuple(t.index_select(0, keep) for t in state)
            active = active[~done]
        return answers, heads
