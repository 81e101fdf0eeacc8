"""Pools that keep to the faster CPU kernel or memory layout, bit for bit what torch's pools compute.

- :class:`NCHWMaxPool`: ``nn.MaxPool2d`` whose forward on an NCHW CPU batch runs PyTorch's
  channels_last kernel (several times faster there), the backward PyTorch's NCHW one.
- :class:`LayoutKeepingAvgPool`: ``nn.AdaptiveAvgPool2d(1)`` whose backward on a channels_last
  batch returns a channels_last gradient (PyTorch's is NCHW, and the ReLU and batch-norm backward
  passes below it would then mix layouts, a slow path on a CPU).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ChannelsLastMaxPool(torch.autograd.Function):
    """max_pool2d of an NCHW CPU tensor: the forward by the channels_last kernel, the backward by the NCHW one.

    The argmax indices (ih * W + iw within each image plane) do not depend on the memory layout, so
    PyTorch's own NCHW backward kernel takes them as they are.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, pool: nn.MaxPool2d) -> torch.Tensor:
        args = (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
        out, idx = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last), *args)
        ctx.save_for_backward(x, idx.contiguous())
        ctx.args = args
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, idx = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, *ctx.args, idx), None


class NCHWMaxPool(nn.MaxPool2d):
    """``nn.MaxPool2d`` that pools NCHW CPU batches with PyTorch's channels_last kernel.

    Bit for bit the same: a max is exact and both kernels pick the first maximum of a window in the
    same scan order, so the output and the argmax indices are the same, and the backward pass is
    PyTorch's own NCHW one on those indices. Only the forward's memory layout differs; the output is NCHW.
    """

    @classmethod
    def like(cls, pool: nn.MaxPool2d) -> NCHWMaxPool:
        """The same pool (kernel, stride, padding, dilation, ceil_mode) as this class."""
        return cls(pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.return_indices, pool.ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H', W'), as ``nn.MaxPool2d``."""
        if (x.device.type != "cpu" or x.dim() != 4 or self.return_indices or torch.compiler.is_compiling()
                or x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x)
        return _ChannelsLastMaxPool.apply(x, self)


class _LayoutKeepingAvgPool(torch.autograd.Function):
    """adaptive_avg_pool2d(x, 1) whose input gradient keeps x's channels_last layout (PyTorch's is NCHW)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return F.adaptive_avg_pool2d(x, 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # PyTorch's kernel zero-fills, then adds grad / H / W: the same floats written in one pass
        n, c, h, w = ctx.shape
        return (grad / h / w).expand(n, c, h, w).contiguous(memory_format=torch.channels_last)


class LayoutKeepingAvgPool(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d(1)``; on a channels_last batch its backward returns a channels_last gradient."""

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, 1, 1)."""
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            return _LayoutKeepingAvgPool.apply(x)
        return super().forward(x)
