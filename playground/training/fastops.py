"""Drop-in modules that compute the same function as their torch counterparts, faster on CPU.

Two kernels dominated a seed-004 training step on a 2-core CPU (torch profiler): the
backward pass of dilated depthwise convolutions (a slow generic path, ~60% of the step)
and ``bernoulli_`` inside nn.Dropout (~30%); a third, smaller one is a padded conv on a map
smaller than its kernel. Each module here subclasses the torch module it replaces, so state
dicts, summaries and isinstance checks are unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16  # above _SCATTER_MAX_P the mask is drawn from 16 random bits per element
_SCATTER_MAX_P = 0.2  # below, drawing dropped positions costs fewer random numbers and passes


def zero_padded_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride, padding,
                     dilation, groups: int) -> torch.Tensor:
    """``F.conv2d`` with zero padding; a map smaller than the kernel's reach is padded first and
    convolved unpadded (the same function), since on CPU such a map leaves oneDNN's fast kernels:
    a 3x3 depthwise conv on a 2x2 channels_last map took 11 ms forward and backward, padded 0.7 ms."""
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    if (ph or pw) and (x.shape[-2] < dh * (weight.shape[-2] - 1) + 1 or x.shape[-1] < dw * (weight.shape[-1] - 1) + 1):
        x, padding = F.pad(x, (pw, pw, ph, ph)), 0
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


class ZeroPadConv2d(nn.Conv2d):
    """nn.Conv2d with zero padding, run by ``zero_padded_conv``."""

    @staticmethod
    def applies(padding: int, padding_mode: str) -> bool:
        return padding > 0 and padding_mode == "zeros"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return zero_padded_conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class SubsampledConv2d(nn.Conv2d):
    """A conv with stride == dilation == s and padding divisible by s.

    Every tap then lands on a multiple of s, so the conv equals a dense stride-1 conv
    over ``x[..., ::s, ::s]`` with padding p/s: identical outputs and gradients, but it
    takes the fast dense kernels instead of the dilated-strided fallback.
    """

    @staticmethod
    def applies(stride: int, dilation: int, padding: int, padding_mode: str) -> bool:
        return stride == dilation > 1 and padding % stride == 0 and padding_mode == "zeros"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride[0]
        return zero_padded_conv(_Subsample.apply(x, s), self.weight, self.bias, 1, self.padding[0] // s, 1, self.groups)


class PolyphaseConv2d(nn.Conv2d):
    """A stride-1 conv with dilation d and "same" padding d(k-1)/2 and an odd kernel, run as a dense conv.

    Output pixel (d*i + a, d*j + b) only reads pixels of the same phase (a, b), so the conv
    equals a dense conv over each of the d*d phase sub-images (space-to-batch, as in
    atrous convolution). Identical outputs and gradients; it avoids PyTorch's slow CPU
    kernels for dilated depthwise convs. Maps not divisible by d take the plain path.
    """

    @staticmethod
    def applies(kernel: int, stride: int, dilation: int, padding: int, padding_mode: str) -> bool:
        # An odd kernel keeps the padding a whole number of phases, so phases stay aligned.
        same = kernel % 2 == 1 and 2 * padding == dilation * (kernel - 1)
        return stride == 1 and dilation > 1 and same and padding_mode == "zeros"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dilation[0]
        n, c, h, w = x.shape
        if h % d or w % d:
            return super().forward(x)
        layout = _layout(x)
        phases = (x.permute(0, 2, 3, 1).reshape(n, h // d, d, w // d, d, c).permute(0, 2, 4, 1, 3, 5)
                  .reshape(n * d * d, h // d, w // d, c).permute(0, 3, 1, 2))
        y = zero_padded_conv(phases, self.weight, self.bias, 1, self.padding[0] // d, 1, self.groups)
        co = y.shape[1]
        y = (y.permute(0, 2, 3, 1).reshape(n, d, d, h // d, w // d, co).permute(0, 3, 1, 4, 2, 5)
             .reshape(n, h, w, co).permute(0, 3, 1, 2))
        return y.contiguous(memory_format=layout)


def _layout(x: torch.Tensor) -> torch.memory_format:
    channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last and not x.is_contiguous() else torch.contiguous_format


class _Subsample(torch.autograd.Function):
    """``x[..., ::s, ::s]`` whose gradient keeps the input's memory layout (slicing's own
    backward returns NCHW, which sends every later channels_last kernel to a slow path)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, s: int) -> torch.Tensor:
        ctx.shape, ctx.s, ctx.layout = x.shape, s, _layout(x)
        return x[..., ::s, ::s].contiguous(memory_format=ctx.layout)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        full = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.layout).zero_()
        full[..., ::ctx.s, ::ctx.s] = grad
        return full, None


class _Mask(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


class FastDropout(nn.Dropout):
    """Element dropout on CPU with a cheaper mask than ``bernoulli_`` (nn.Dropout as is elsewhere).

    Small p (up to ``_SCATTER_MAX_P``, which covers every preset) draws the dropped positions
    directly: a Poisson(-n log(1 - p)) number of uniform positions, zeroed after scaling. By
    Poisson splitting each element is then hit an independent Poisson(-log(1 - p)) number of
    times, so it is dropped with probability exactly p, independently of every other: the
    same distribution as nn.Dropout, for about n/20 random numbers instead of n, and two
    memory passes instead of five. Larger p splits 64-bit random words into four 16-bit draws,
    which rounds p to a multiple of 1/65536 (0.3 -> 0.299988); survivors are scaled by
    1/(1 - that p), so the expectation is exact either way.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":  # CUDA's dropout is one fused kernel already
            return super().forward(x)
        if self.p <= _SCATTER_MAX_P:
            return _ScatterDrop.apply(x, self.p)
        drop_levels = round(self.p * _LEVELS)
        if drop_levels >= _LEVELS:
            return x * 0
        n = x.numel()
        # the full signed range: a bare random_() leaves the sign bit (one draw in four) at 0
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(1 << 63), None)
        draws = words.view(torch.int16)[:n]
        if _layout(x) == torch.channels_last:  # lay the iid draws out like x
            draws = draws.view(x.permute(0, 2, 3, 1).shape).permute(0, 3, 1, 2)
        else:
            draws = draws.view(x.shape)
        # int16 draws are uniform on [-32768, 32767]; keep the top (LEVELS - drop_levels) values
        scale = torch.tensor(_LEVELS / (_LEVELS - drop_levels), dtype=x.dtype, device=x.device)
        mask = torch.where(draws >= drop_levels - _LEVELS // 2, scale, torch.zeros_like(scale))
        return _Mask.apply(x, mask)


class _ScatterDrop(torch.autograd.Function):
    """Scale by 1/(1 - p), then zero Poisson-many uniform positions (see FastDropout).

    Positions index x's memory order (NCHW or NHWC); as every element is iid, the order is
    immaterial, and the backward pass zeroes the same positions of a gradient laid out alike.
    Only the positions (about n/20 int64) are kept for backward, not an n-element mask.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        ctx.layout, ctx.scale = _layout(x), 1.0 / (1.0 - p)
        y = x.contiguous(memory_format=ctx.layout) * ctx.scale
        n = y.numel()
        rate = torch.tensor([-n * math.log1p(-p)], dtype=torch.float64)
        hits = int(torch.poisson(rate).item()) if n else 0
        positions = torch.randint(0, max(n, 1), (hits,), device=x.device)
        _flat(y).index_fill_(0, positions, 0)
        ctx.save_for_backward(positions)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (positions,) = ctx.saved_tensors
        grad = (grad * ctx.scale).contiguous(memory_format=ctx.layout)
        _flat(grad).index_fill_(0, positions, 0)
        return grad, None


def _flat(x: torch.Tensor) -> torch.Tensor:
    """A 1-D view of a dense tensor in its memory order (NHWC order for channels_last)."""
    if _layout(x) == torch.channels_last:
        return x.permute(0, 2, 3, 1).reshape(-1)
    return x.view(-1)
