"""Efficient attention (Shen et al., WACV 2021) and its dot-product counterpart.

Both modules take a feature map ``x`` of shape (B, C, H, W), treat its n = H * W positions as tokens,
and return ``x + reprojection(attention)`` with the same shape, dtype and device. They share one
signature and one parameter layout (``queries``, ``keys``, ``values``, ``reprojection``: 1x1 convs with
bias, named as in the paper's reference code), so a state_dict moves freely between them.

Efficient attention computes a per-head global context ``K V^T`` of shape (d_k/h, d_v/h), independent of
n, and applies it to the queries: memory O(n d + d^2), compute O(d^2 n). Dot-product attention
materialises the (n, n) attention map: memory O(n^2), compute O(d n^2).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Normalization = Literal["softmax", "scaling"]
_NORMALIZATIONS = ("softmax", "scaling")


class _AttentionBase(nn.Module):
    """Shared projections and argument checks; subclasses implement :meth:`_attend`."""

    def __init__(
        self,
        in_channels: int,
        key_channels: int,
        value_channels: int,
        heads: int = 1,
        normalization: Normalization = "softmax",
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("key_channels", key_channels),
            ("value_channels", value_channels),
            ("heads", heads),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if key_channels % heads or value_channels % heads:
            raise ValueError(
                f"heads={heads} must divide key_channels={key_channels} and "
                f"value_channels={value_channels} (each head gets an equal share of channels)"
            )
        if normalization not in _NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
        self.in_channels = in_channels
        self.key_channels = key_channels
        self.value_channels = value_channels
        self.heads = heads
        self.normalization = normalization
        self.queries = nn.Conv2d(in_channels, key_channels, 1)
        self.keys = nn.Conv2d(in_channels, key_channels, 1)
        self.values = nn.Conv2d(in_channels, value_channels, 1)
        self.reprojection = nn.Conv2d(value_channels, in_channels, 1)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, key_channels={self.key_channels}, "
            f"value_channels={self.value_channels}, heads={self.heads}, "
            f"normalization={self.normalization!r}"
        )

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries and keys as (B, heads, d_k/h, n), values as (B, heads, d_v/h, n)."""
        b, _, h, w = x.shape
        n = h * w
        # Queries and keys from one 1x1 conv with both weight sets stacked (x is read once for both).
        # Values get their own conv: as a view of a shared output, v (saved for backward) would keep
        # the whole q/k/v tensor alive through the backward pass.
        weight = torch.cat([self.queries.weight, self.keys.weight])
        bias = torch.cat([self.queries.bias, self.keys.bias])
        dk, dv = self.key_channels, self.value_channels
        q, k = F.conv2d(x, weight, bias).reshape(b, 2, self.heads, dk // self.heads, n).unbind(1)
        v = self.values(x).reshape(b, self.heads, dv // self.heads, n)
        return q, k, v

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W): ``x + reprojection(attention(x))``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        b, _, h, w = x.shape
        out = self._attend(*self._project(x))  # (B, heads, d_v/h, n)
        out = out.reshape(b, self.value_channels, h, w)
        return x + self.reprojection(out)


def _softmax(t: torch.Tensor, dim: int) -> torch.Tensor:
    # Half-precision logits are softmaxed in float32: exp() in fp16 overflows above ~11.
    if t.dtype in (torch.float16, torch.bfloat16):
        return F.softmax(t, dim=dim, dtype=torch.float32).to(t.dtype)
    return F.softmax(t, dim=dim)


class EfficientAttention(_AttentionBase):
    """Efficient attention with linear memory and compute in the number of positions.

    Args:
        in_channels: C of the input (B, C, H, W).
        key_channels: d_k, channels of queries and keys (split over heads).
        value_channels: d_v, channels of values (split over heads).
        heads: number of heads; must divide d_k and d_v.
        normalization: ``"softmax"`` (keys softmaxed over positions, queries over each head's
            channels; the paper's default) or ``"scaling"`` (queries and keys divided by sqrt(n), which
            makes the module exactly equal to :class:`DotProductAttention` with ``"scaling"``).
    """

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.normalization == "softmax":
            q = _softmax(q, dim=2)  # over each head's d_k/h channels, per position
            k = _softmax(k, dim=3)  # over the n positions, per channel
        else:
            scale = q.shape[-1] ** -0.5
            q = q * scale
            k = k * scale
        context = k @ v.transpose(-1, -2)  # (B, heads, d_k/h, d_v/h): independent of n
        return context.transpose(-1, -2) @ q  # (B, heads, d_v/h, n)

    @torch.no_grad()
    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, heads, n, n) attention map that efficient attention applies implicitly.

        Row i holds the weights position i gives every position j, so that
        ``out[:, :, :, i] = sum_j map[:, :, i, j] * v[:, :, :, j]``. This materialises an n x n tensor:
        meant for analysis and visualisation on small inputs, never used by :meth:`forward`.
        """
        q, k, _ = self._project(x)
        if self.normalization == "softmax":
            q, k = _softmax(q, dim=2), _softmax(k, dim=3)
        else:
            n = q.shape[-1]
            q, k = q / n**0.5, k / n**0.5
        return q.transpose(-1, -2) @ k


class DotProductAttention(_AttentionBase):
    """Conventional (non-local) dot-product attention that materialises the (n, n) attention map.

    Same arguments and parameters as :class:`EfficientAttention`. ``"softmax"`` is standard scaled
    dot-product attention, softmax over keys of q.k / sqrt(d_k/h); ``"scaling"`` is (Q^T K / n) V.

    ``fused=True`` (softmax only) calls ``torch.nn.functional.scaled_dot_product_attention``, whose
    flash/memory-efficient kernels avoid storing the map but still do O(d n^2) work.
    """

    def __init__(
        self,
        in_channels: int,
        key_channels: int,
        value_channels: int,
        heads: int = 1,
        normalization: Normalization = "softmax",
        fused: bool = False,
    ) -> None:
        super().__init__(in_channels, key_channels, value_channels, heads, normalization)
        if fused and normalization != "softmax":
            raise ValueError("fused=True needs normalization='softmax' (SDPA always applies softmax)")
        self.fused = fused

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = (t.transpose(-1, -2) for t in (q, k, v))  # (B, heads, n, d)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v)
        # Scale q, not the (n, n) logits: one fewer n x n temporary.
        elif self.normalization == "softmax":
            logits = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)  # (B, heads, n, n)
            out = _softmax(logits, dim=-1) @ v
        else:
            out = ((q / q.shape[-2]) @ k.transpose(-1, -2)) @ v
        return out.transpose(-1, -2)  # (B, heads, d_v/h, n)


# The registry behind ``kind:`` in model configs; ``none`` places nothing.
ATTENTION_KINDS: dict[str, type[nn.Module] | None] = {
    "efficient": EfficientAttention,
    "dot_product": DotProductAttention,
    "none": None,
}


def build_attention(
    kind: str,
    in_channels: int,
    key_channels: int,
    value_channels: int,
    heads: int = 1,
    normalization: Normalization = "softmax",
) -> nn.Module:
    """An attention module by name (a key of :data:`ATTENTION_KINDS`; ``"none"`` gives the identity)."""
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention kind must be one of {list(ATTENTION_KINDS)}, got {kind!r}")
    cls = ATTENTION_KINDS[kind]
    if cls is None:
        return nn.Identity()
    return cls(in_channels, key_channels, value_channels, heads, normalization)
