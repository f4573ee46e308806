"""Cost volumes at 1/4 resolution: concatenation (PSMNet) and group-wise correlation (GwcNet).

Both are written slice by slice into one zeroed volume. For training they run as autograd Functions
with a hand-written backward (a sum of shifted slices): autograd's own backward of the slice
assignments copied the whole volume's gradient once per assignment (2 x D/4 copies; 1.9 s of a 13 s
training step at 256x512 on CPU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _zeros(left: torch.Tensor, shape: tuple, memory_format: torch.memory_format) -> torch.Tensor:
    return torch.empty(shape, dtype=left.dtype, device=left.device, memory_format=memory_format).zero_()


def _shifted(views: list[torch.Tensor], max_disp: int) -> torch.Tensor:
    """ONNX export: the (B, C, H, W - d) slices of each disparity d, zero-padded on the left to W and stacked
    along a new disparity axis -> (B, C, max_disp, H, W). Slice assignment into a zeroed volume, which eager
    code uses, exports as ScatterND: a fifth of ONNX Runtime's time for the light network."""
    w = views[0].shape[-1]
    stack = torch.stack([F.pad(v, (w - v.shape[-1], 0)) for v in views], 2)
    return F.pad(stack, (0, 0, 0, 0, 0, max_disp - len(views))) if len(views) < max_disp else stack


def _concat(left: torch.Tensor, right: torch.Tensor, max_disp: int, memory_format) -> torch.Tensor:
    b, c, h, w = left.shape
    if torch.jit.is_tracing():
        shifts = range(min(max_disp, w))
        return torch.cat([_shifted([left[:, :, :, d:] for d in shifts], max_disp),
                          _shifted([right[:, :, :, : w - d] for d in shifts], max_disp)], 1)  # fmt: skip
    volume = _zeros(left, (b, 2 * c, max_disp, h, w), memory_format)
    for d in range(min(max_disp, w)):
        volume[:, :c, d, :, d:] = left[:, :, :, d:]
        volume[:, c:, d, :, d:] = right[:, :, :, : w - d]
    return volume


def _gwc(left: torch.Tensor, right: torch.Tensor, max_disp: int, groups: int, memory_format) -> torch.Tensor:
    b, c, h, w = left.shape
    if torch.jit.is_tracing():
        per = [(left[:, :, :, d:] * right[:, :, :, : w - d]).reshape(b, groups, c // groups, h, w - d).mean(2)
               for d in range(min(max_disp, w))]  # fmt: skip
        return _shifted(per, max_disp)
    volume = _zeros(left, (b, groups, max_disp, h, w), memory_format)
    for d in range(min(max_disp, w)):
        prod = left[:, :, :, d:] * right[:, :, :, : w - d]
        volume[:, :, d, :, d:] = prod.reshape(b, groups, c // groups, h, w - d).mean(2)
    return volume


class _ConcatVolume(torch.autograd.Function):
    @staticmethod
    def forward(ctx, left, right, max_disp, memory_format):
        ctx.max_disp = max_disp
        return _concat(left, right, max_disp, memory_format)

    @staticmethod
    def backward(ctx, grad):
        c, w = grad.shape[1] // 2, grad.shape[-1]
        grad_left = grad.new_zeros((grad.shape[0], c, grad.shape[3], w))
        grad_right = torch.zeros_like(grad_left)
        for d in range(min(ctx.max_disp, w)):
            grad_left[:, :, :, d:] += grad[:, :c, d, :, d:]
            grad_right[:, :, :, : w - d] += grad[:, c:, d, :, d:]
        return grad_left, grad_right, None, None


class _GwcVolume(torch.autograd.Function):
    @staticmethod
    def forward(ctx, left, right, max_disp, groups, memory_format):
        ctx.save_for_backward(left, right)
        ctx.max_disp, ctx.groups = max_disp, groups
        return _gwc(left, right, max_disp, groups, memory_format)

    @staticmethod
    def backward(ctx, grad):
        left, right = ctx.saved_tensors
        c, w = left.shape[1], left.shape[-1]
        grad_left, grad_right = torch.zeros_like(left), torch.zeros_like(right)
        for d in range(min(ctx.max_disp, w)):
            # d mean_k(l_k r_k) / d l_k = r_k / (channels per group), for each channel k of the group
            g = grad[:, :, d, :, d:].repeat_interleave(c // ctx.groups, dim=1) / (c // ctx.groups)
            grad_left[:, :, :, d:] += g * right[:, :, :, : w - d]
            grad_right[:, :, :, : w - d] += g * left[:, :, :, d:]
        return grad_left, grad_right, None, None, None


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def concat_volume(
    left: torch.Tensor, right: torch.Tensor, max_disp: int, memory_format=torch.contiguous_format
) -> torch.Tensor:
    """(B, C, H, W) x2 -> (B, 2C, max_disp, H, W): left features beside right features shifted by d.

    Entries where the shift leaves the image are zero, as in PSMNet. ``memory_format`` may be
    ``torch.channels_last_3d`` (faster 3-D convolutions on CPU).
    """
    if _needs_grad(left, right):
        return _ConcatVolume.apply(left, right, max_disp, memory_format)
    return _concat(left, right, max_disp, memory_format)


def gwc_volume(
    left: torch.Tensor, right: torch.Tensor, max_disp: int, groups: int, memory_format=torch.contiguous_format
) -> torch.Tensor:
    """(B, C, H, W) x2 -> (B, groups, max_disp, H, W): mean correlation within each channel group."""
    if left.shape[1] % groups:
        raise ValueError(f"group-wise correlation: groups={groups} must divide the feature channels {left.shape[1]}")
    if _needs_grad(left, right):
        return _GwcVolume.apply(left, right, max_disp, groups, memory_format)
    return _gwc(left, right, max_disp, groups, memory_format)
