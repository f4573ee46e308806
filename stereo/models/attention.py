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

import inspect
from collections.abc import Sequence
from typing import Any, Literal

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

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W): ``x + reprojection(attention(x))``."""
        self._check_input(x)
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


class LinearAttention(_AttentionBase):
    """Linear attention by a first-order Taylor expansion of the softmax kernel (Li et al., 2020).

    With queries and keys L2-normalised per position (within each head), sim(q_i, k_j) = 1 + q_i . k_j
    >= 0, and ``out_i = (sum_j v_j + (sum_j v_j k_j^T) q_i) / (n + q_i . sum_j k_j)``: O(n d^2) time and
    O(n d + d^2) memory. It approximates softmax attention; it is not equal to it. Same arguments as
    :class:`EfficientAttention`; only ``normalization="softmax"`` (the default) is accepted, since the
    kernel fixes the normalisation.
    """

    eps = 1e-6

    def __init__(self, in_channels, key_channels, value_channels, heads=1, normalization="softmax") -> None:
        if normalization != "softmax":
            raise ValueError("attention kind 'linear' normalises by its Taylor kernel; leave normalization=softmax")
        super().__init__(in_channels, key_channels, value_channels, heads, normalization)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        dtype = q.dtype
        q, k, v = (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in (q, k, v))
        q = F.normalize(q, dim=2)  # over each head's channels, per position
        k = F.normalize(k, dim=2)
        n = q.shape[-1]
        vk = v @ k.transpose(-1, -2)  # (B, heads, d_v/h, d_k/h)
        num = v.sum(-1, keepdim=True) + vk @ q  # (B, heads, d_v/h, n)
        den = n + (k.sum(-1, keepdim=True) * q).sum(2, keepdim=True)  # (B, heads, 1, n), >= 0
        return (num / den.clamp_min(self.eps)).to(dtype)


class LatentAttention(_AttentionBase):
    """Perceiver-style attention through M learned latents (Jaegle et al., 2021; Perceiver IO decoder).

    Per head: the latents' learned queries cross-attend to the n positions (keys/values from x,
    softmax over positions: O(n M)); ``latent_layers`` rounds of self-attention among the latents
    (O(M^2), independent of n); then every position reads the latents back by cross-attention (its
    query against keys projected from the latents, softmax over the M latents), followed by the shared
    reprojection and residual. Extra keys: ``latents`` (M), ``latent_layers``.
    """

    def __init__(self, in_channels, key_channels, value_channels, heads=1, normalization="softmax",
                 latents: int = 64, latent_layers: int = 1) -> None:  # fmt: skip
        if normalization != "softmax":
            raise ValueError("attention kind 'latent' uses softmax cross-attention; leave normalization=softmax")
        super().__init__(in_channels, key_channels, value_channels, heads, normalization)
        if latents < 1 or latent_layers < 0:
            raise ValueError(f"latents must be >= 1 and latent_layers >= 0, got {latents} and {latent_layers}")
        self.latents, self.latent_layers = latents, latent_layers
        dk, dv = key_channels // heads, value_channels // heads
        self.latent_queries = nn.Parameter(torch.randn(heads, dk, latents) * dk**-0.5)
        # Self-attention among latents and the keys the positions read them by: per-head linear maps d_v -> d.
        self.latent_qkv = nn.ParameterList(
            [nn.Parameter(torch.randn(heads, 2 * dk + dv, dv) * dv**-0.5) for _ in range(latent_layers)]
        )
        self.latent_keys = nn.Parameter(torch.randn(heads, dk, dv) * dv**-0.5)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, latents={self.latents}, latent_layers={self.latent_layers}"

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        dk = q.shape[2]
        scale = dk**-0.5
        lq = self.latent_queries.to(q.dtype)  # (heads, dk, M)
        enc = _softmax((lq.transpose(-1, -2) * scale) @ k, dim=-1)  # (B, heads, M, n)
        z = v @ enc.transpose(-1, -2)  # (B, heads, d_v/h, M)
        for w in self.latent_qkv:
            zq, zk, zv = (w.to(z.dtype) @ z).split([dk, dk, z.shape[2]], dim=2)
            z = z + zv @ _softmax((zq.transpose(-1, -2) * scale) @ zk, dim=-1).transpose(-1, -2)
        zk = self.latent_keys.to(z.dtype) @ z  # (B, heads, dk, M)
        dec = _softmax((q.transpose(-1, -2) * scale) @ zk, dim=-1)  # (B, heads, n, M)
        return z @ dec.transpose(-1, -2)  # (B, heads, d_v/h, n)


class MultiResolutionAttention(_AttentionBase):
    """Adaptive multi-resolution attention (Zhang et al., AdaMRA, 2021), linear in n.

    Head h sees keys and values average-pooled by ``scales[h]`` (coarse to fine, e.g. 8, 4, 2, 1) and
    attends with the efficient (kernel) attention of :class:`EfficientAttention` (softmax over the
    pooled positions for keys, over channels for queries), so each head costs O(n d^2); a learned gate
    (1x1 conv, softmax over heads) lets every query choose how much of each head's resolution it takes.
    ``heads`` must equal ``len(scales)``. Extra key: ``scales``.
    """

    def __init__(self, in_channels, key_channels, value_channels, heads=4, normalization="softmax",
                 scales: Sequence[int] = (1, 2, 4, 8)) -> None:  # fmt: skip
        if normalization != "softmax":
            raise ValueError("attention kind 'multires' uses kernel (softmax) normalisation; leave it at softmax")
        scales = [int(s) for s in scales]
        if len(scales) != heads or min(scales) < 1:
            raise ValueError(f"multires needs one scale >= 1 per head: heads={heads}, scales={scales}")
        super().__init__(in_channels, key_channels, value_channels, heads, normalization)
        self.scales = scales
        self.gate = nn.Conv2d(in_channels, heads, 1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scales={self.scales}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W): ``x + reprojection(sum_h gate_h * head_h(x))``."""
        self._check_input(x)
        b, _, h, w = x.shape
        q, k, v = self._project(x)
        gate = _softmax(self.gate(x), dim=1).flatten(2).unsqueeze(2)  # (B, heads, 1, n)
        q = _softmax(q, dim=2)
        outs = []
        for i, s in enumerate(self.scales):
            ki, vi = k[:, i], v[:, i]  # (B, d, n)
            if s > 1:
                ki = F.avg_pool2d(ki.unflatten(-1, (h, w)), s, ceil_mode=True).flatten(2)
                vi = F.avg_pool2d(vi.unflatten(-1, (h, w)), s, ceil_mode=True).flatten(2)
            context = _softmax(ki, dim=2) @ vi.transpose(-1, -2)  # (B, d_k/h, d_v/h)
            outs.append(context.transpose(-1, -2) @ q[:, i])  # (B, d_v/h, n)
        out = (torch.stack(outs, 1) * gate.to(q.dtype)).reshape(b, self.value_channels, h, w)
        return x + self.reprojection(out)


# The registry behind ``kind:`` in model configs; ``none`` places nothing.
ATTENTION_KINDS: dict[str, type[nn.Module] | None] = {
    "efficient": EfficientAttention,
    "dot_product": DotProductAttention,
    "linear": LinearAttention,
    "latent": LatentAttention,
    "multires": MultiResolutionAttention,
    "none": None,
}


def _kind_keys(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "in_channels"}


def build_attention(
    kind: str,
    in_channels: int,
    key_channels: int | None = None,
    value_channels: int | None = None,
    heads: int | None = None,
    normalization: Normalization | None = None,
    *,
    ignore_unused: bool = False,
    **extra: Any,
) -> nn.Module:
    """An attention module by name (a key of :data:`ATTENTION_KINDS`; ``"none"`` gives the identity).

    ``keys`` are the module's arguments (``key_channels``, ``value_channels``, ``heads``,
    ``normalization`` and the kind's own, e.g. ``latents``). A key no kind knows is an error listing the
    valid ones; with ``ignore_unused`` (configs, which carry every kind's keys) keys of other kinds are
    dropped.
    """
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"attention kind must be one of {list(ATTENTION_KINDS)}, got {kind!r}")
    keys = {"key_channels": key_channels, "value_channels": value_channels, "heads": heads,
            "normalization": normalization, **extra}  # fmt: skip
    cls = ATTENTION_KINDS[kind]
    known = set().union(*(_kind_keys(c) for c in ATTENTION_KINDS.values() if c is not None))
    unknown = sorted(set(keys) - known)
    own = _kind_keys(cls) if cls is not None else set()
    if not ignore_unused:
        unknown += sorted(set(extra) & known - own)
    if unknown:
        raise ValueError(f"attention kind {kind!r} takes {sorted(own)}; unknown or unused keys {unknown}")
    if cls is None:
        return nn.Identity()
    # heads and normalization left at None take the kind's own defaults (multires has 4 heads, the others 1).
    defaulted = {k for k in ("heads", "normalization") if keys[k] is None}
    return cls(in_channels, **{k: v for k, v in keys.items() if k in own and k not in defaulted})
