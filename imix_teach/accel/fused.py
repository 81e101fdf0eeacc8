"""Batch norm -> ReLU -> 2x2 max-pool as one CPU kernel pair, a ``torch.library`` custom op.

PyTorch runs the three layers as separate full passes over memory, forward and backward: about
40 % of the small ConvNet's channels_last training step on a CPU (32 px images, one thread), most
of it in the first block's (N, 32, 32, 32) activation. The C kernels (``bn_relu_pool.c``) compute
the same function with the same formulas (to float rounding: the batch-norm statistics are summed
in double) in fewer passes. ``imix_teach::bn_relu_pool`` is a custom op with a fake kernel (shapes
for torch.compile and meta tensors) and an autograd formula, itself the custom op
``imix_teach::bn_relu_pool_backward``, which has no derivative: a double backward raises.
:class:`FusedBNReLUPool` is the module :func:`imix_teach.accel.speed_path` puts in a network's
place of the three layers while it trains.
"""
from __future__ import annotations

import torch
from torch import nn

from . import kernel

_CL = torch.channels_last


def _channels_last_like(x: torch.Tensor, n: int, c: int, h: int, w: int) -> torch.Tensor:
    """An uninitialised (n, c, h, w) tensor of x's dtype and device in the channels_last layout."""
    return x.new_empty((n, h, w, c)).permute(0, 3, 1, 2)


def _scale_shift(weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, invstd, scale, shift) in float32, from the float64 statistics: y = x * scale + shift."""
    invstd = (var + eps).rsqrt().float()
    mean = mean.float()
    scale = invstd * weight
    return mean, invstd, scale, bias - mean * scale


def _check(x: torch.Tensor) -> None:
    if x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4 or not x.is_contiguous(memory_format=_CL):
        raise ValueError(f"x must be a float32 CPU (N, C, H, W) tensor in the channels_last layout, got {x.dtype} "
                         f"{tuple(x.shape)} on {x.device}; use x.contiguous(memory_format=torch.channels_last)")
    if x.shape[0] == 0 or x.shape[2] % 2 or x.shape[3] % 2:
        raise ValueError(f"x must hold images of even height and width, got shape {tuple(x.shape)}")


@torch.library.custom_op("imix_teach::bn_relu_pool", mutates_args=(), device_types="cpu")
def bn_relu_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """max_pool2d(relu(batch_norm(x)), 2) with batch statistics: (N, C, H, W) -> (N, C, H/2, W/2).

    Returns (out, xsel, mean, var): the output, each window's x at its maximum (for the backward),
    and the batch's per-channel mean and biased variance in float64 (for the running statistics).
    """
    _check(x)
    lib, (n, c, h, w) = kernel.library(), x.shape
    if lib is None:
        raise RuntimeError("the fused kernels are not built here (no C compiler, or IMIX_FUSED_CPU=0)")
    total, sumsq = kernel.chunks(lib.bnp_stats, n, x, h * w, c, work=x.numel(), like=x, sums=2, channels=c)
    count = n * h * w
    mean = total / count
    var = (sumsq / count - mean * mean).clamp_(min=0)  # biased, as the batch norm normalises with
    _, _, scale, shift = _scale_shift(weight.detach(), bias.detach(), mean, var, eps)
    out, xsel = _channels_last_like(x, n, c, h // 2, w // 2), _channels_last_like(x, n, c, h // 2, w // 2)
    kernel.chunks(lib.bnp_forward, n, x, h, w, c, scale, shift, out, xsel, work=x.numel(), like=x)
    return out, xsel, mean, var


@bn_relu_pool.register_fake
def _(x, weight, bias, eps):
    n, c, h, w = x.shape
    stats = x.new_empty((c,), dtype=torch.float64)
    return _channels_last_like(x, n, c, h // 2, w // 2), _channels_last_like(x, n, c, h // 2, w // 2), stats, \
        torch.empty_like(stats)


@torch.library.custom_op("imix_teach::bn_relu_pool_backward", mutates_args=(), device_types="cpu")
def bn_relu_pool_backward(grad: torch.Tensor, x: torch.Tensor, out: torch.Tensor, xsel: torch.Tensor,
                          weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                          eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dweight, dbias) of :func:`bn_relu_pool`'s ``out`` for its gradient ``grad`` (N, C, H/2, W/2)."""
    lib, (n, c, h, w) = kernel.library(), x.shape
    mean32, invstd, scale, shift = _scale_shift(weight, bias, mean, var, eps)
    g = grad.contiguous(memory_format=_CL)
    sum_dy, dot = kernel.chunks(lib.bnp_backward_sums, n, g, out, xsel, h * w // 4, c, mean32,
                                work=x.numel(), like=x, sums=2, channels=c)
    count = n * h * w
    kk = (dot * invstd.double() ** 2 / count).float()
    grad_mean = (sum_dy / count).float()
    dx = _channels_last_like(x, n, c, h, w)
    kernel.chunks(lib.bnp_backward_dx, n, g, out, x, h, w, c, scale, shift, mean32, kk, grad_mean, dx,
                  work=x.numel(), like=x)
    return dx, (dot * invstd.double()).float(), sum_dy.float()


@bn_relu_pool_backward.register_fake
def _(grad, x, out, xsel, weight, bias, mean, var, eps):
    n, c, h, w = x.shape
    return _channels_last_like(x, n, c, h, w), torch.empty_like(weight), torch.empty_like(bias)


def _setup(ctx, inputs, output) -> None:
    x, weight, bias, eps = inputs
    out, xsel, mean, var = output
    ctx.save_for_backward(x, out, xsel, weight, bias, mean, var)
    ctx.eps = eps
    ctx.mark_non_differentiable(xsel, mean, var)


def _backward(ctx, grad, _xsel, _mean, _var):
    x, out, xsel, weight, bias, mean, var = ctx.saved_tensors
    dx, dweight, dbias = bn_relu_pool_backward(grad, x, out, xsel, weight, bias, mean, var, ctx.eps)
    return dx, dweight, dbias, None


def _no_double_backward(ctx, *grads):
    raise RuntimeError("imix_teach::bn_relu_pool has no second derivative (a double backward, e.g. a gradient "
                       "penalty with create_graph=True): train without imix_teach.accel.speed_path, or with "
                       "IMIX_FUSED_CPU=0, to run PyTorch's layers")


bn_relu_pool.register_autograd(_backward, setup_context=_setup)
bn_relu_pool_backward.register_autograd(_no_double_backward, setup_context=lambda ctx, inputs, output: None)


def fusable(bn: nn.Module, relu: nn.Module, pool: nn.Module) -> bool:
    """Whether three layers are a training batch norm -> ReLU -> 2x2 max-pool the kernels compute, with no hooks."""
    if any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
           for m in (bn, relu, pool)):  # a hook must see its layer run
        return False
    return (type(bn) is nn.BatchNorm2d and bn.affine and bn.track_running_stats and bn.momentum is not None
            and type(relu) is nn.ReLU and type(pool) is nn.MaxPool2d and pool.kernel_size in (2, (2, 2))
            and pool.stride in (2, (2, 2)) and pool.padding in (0, (0, 0)) and pool.dilation in (1, (1, 1))
            and not pool.return_indices)


class FusedBNReLUPool(nn.Module):
    """A batch norm -> ReLU -> 2x2 max-pool run by :func:`bn_relu_pool` where it applies, by the layers elsewhere.

    It holds the batch norm's own parameter and buffer dicts: the same tensors under the same
    names, so the network's ``state_dict``, its parameters (and the optimiser's) and ``.to()`` see
    one set, and the three layers can be put back as they were. Applies to float32 channels_last
    CPU batches of even size in training mode; updates the running statistics as the batch norm does.
    """

    _version = nn.BatchNorm2d._version  # state_dict metadata as the batch norm's

    def __init__(self, bn: nn.BatchNorm2d, relu: nn.ReLU, pool: nn.MaxPool2d):
        super().__init__()
        self._parameters, self._buffers = bn._parameters, bn._buffers
        self.layers = (bn, relu, pool)  # a tuple: not submodules, whose tensors would be listed twice
        self.eps, self.momentum = bn.eps, bn.momentum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, ceil(H/2), ceil(W/2)), as pool(relu(bn(x)))."""
        bn, relu, pool = self.layers
        if not (self.training and x.device.type == "cpu" and x.dtype == self.weight.dtype == torch.float32
                and x.dim() == 4 and x.shape[0] > 0 and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0
                and x.is_contiguous(memory_format=_CL) and not torch.compiler.is_compiling()
                and kernel.library() is not None):
            bn.train(self.training)
            return pool(relu(bn(x)))
        out, _, mean, var = bn_relu_pool(x, self.weight, self.bias, self.eps)
        count = x.numel() // x.shape[1]
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_((var * count / max(count - 1, 1)).to(self.running_var.dtype), self.momentum)
        return out
