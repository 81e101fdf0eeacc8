"""Batch norm -> 2x2 max-pool -> ReLU as one CPU kernel pair (``_bn_pool_relu.c``), for channels_last batches.

PyTorch runs the three layers as separate full passes over memory, forward and backward: about
40 % of the small ConvNet's channels_last training step on a CPU (32 px images, one thread), most
of it in the first block's (N, 32, 32, 32) activation. The fused kernels compute the same function
with the same formulas (to float rounding: the batch-norm statistics are summed in double) in fewer
passes, 2.4-2.7x faster on one thread (a step 1.25x); on small activations with several threads
they gain less, as they keep to one thread there. They are compiled on first use with the system's
C compiler (about a second; the library is cached per machine) and loaded with ctypes; without a
compiler, on another device or dtype, in eval mode, or with ``IMIX_FUSED_CPU=0``, the model runs
PyTorch's layers instead. ``tests/test_bn_pool_relu.py`` checks values and gradients against them.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import nn

SOURCE = Path(__file__).with_suffix(".c")
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", "-fPIC", "-shared"]
_lib: ctypes.CDLL | None | bool = False  # False: not tried yet; None: unavailable here
PER_THREAD = 1 << 21  # activation elements per thread, at least (2M: 8 MB of float32)
_pools: dict[int, ThreadPoolExecutor] = {}  # threads for a batch's chunks, by their number, made on first use

# A forked child (a DataLoader worker) would inherit the pools but not their threads.
os.register_at_fork(after_in_child=_pools.clear)


def _cpu() -> str:
    """What -march=native builds for: a library built on one CPU may not run on another (a shared home)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line for line in fh if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        return f"{platform.machine()} {platform.processor()} {torch.backends.cpu.get_cpu_capability()}"


def _compile() -> ctypes.CDLL:
    """The kernels' shared library, built once per source, flags and CPU into the user's cache."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS + [sys.platform, _cpu()]).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "imix_teach" / "kernels"
    lib = cache / f"bn_pool_relu-{key}.so"
    if not lib.exists():
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)  # built aside, then renamed: ranks may race
        os.close(fd)
        cc = os.environ.get("CC", "cc")
        try:
            for flags in (FLAGS, [f for f in FLAGS if f != "-march=native"]):  # some compilers lack the first
                build = subprocess.run([cc, *flags, str(SOURCE), "-o", tmp], capture_output=True, timeout=120)
                if build.returncode == 0:
                    os.replace(tmp, lib)
                    break
            else:
                raise OSError(f"{cc} could not build {SOURCE.name}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return ctypes.CDLL(str(lib))


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None where they cannot be built (no C compiler, not Linux/macOS, opted out)."""
    global _lib
    if _lib is False:
        _lib = None
        if os.environ.get("IMIX_FUSED_CPU", "1") != "0" and sys.platform != "win32":
            try:
                _lib = _compile()
            except (OSError, RuntimeError, subprocess.SubprocessError):  # RuntimeError: no home folder
                _lib = None
    return _lib


def usable(layers: list[nn.Module], x: torch.Tensor) -> bool:
    """Whether ``layers`` are batch norm -> 2x2 max-pool -> ReLU that the fused kernels can run on ``x``."""
    if len(layers) != 3 or any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                               or m._backward_pre_hooks for m in layers):  # a hook must see its layer run
        return False
    bn, pool, relu = layers
    return (type(bn) is nn.BatchNorm2d and bn.training and bn.affine and bn.track_running_stats
            and bn.momentum is not None and isinstance(pool, nn.MaxPool2d) and isinstance(relu, nn.ReLU)
            and pool.kernel_size in (2, (2, 2)) and pool.stride in (2, (2, 2)) and pool.padding in (0, (0, 0))
            and pool.dilation in (1, (1, 1)) and not pool.return_indices and x.device.type == "cpu"
            and x.dtype == bn.weight.dtype == torch.float32 and x.dim() == 4 and x.shape[0] > 0
            and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0 and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.compiler.is_compiling() and library() is not None)


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _run(fn, n: int, *args, work: int, sums: int = 0, channels: int = 0) -> list[torch.Tensor]:
    """fn(n0, n1, *args, *sum buffers) over chunks [n0, n1) of the n images, one chunk per thread.

    Up to torch's thread count, at most one thread per ``PER_THREAD`` of the ``work`` (elements of
    the activation): below that, handing a chunk to another thread costs more than it saves. ctypes
    releases the GIL during the call, so the chunks run in parallel like PyTorch's own CPU kernels.
    Returns the ``sums`` per-channel double accumulators, added over the chunks.
    """
    threads = max(1, min(torch.get_num_threads(), n, work // PER_THREAD))
    acc = torch.zeros(threads, sums, channels, dtype=torch.float64)
    cuts = [n * t // threads for t in range(threads + 1)]

    def chunk(t: int) -> None:
        ints = [ctypes.c_int64(v) if isinstance(v, int) else v for v in args]
        fn(ctypes.c_int64(cuts[t]), ctypes.c_int64(cuts[t + 1]), *ints, *(_ptr(a) for a in acc[t]))

    if threads == 1:
        chunk(0)
    else:
        pool = _pools.get(threads) or _pools.setdefault(threads, ThreadPoolExecutor(threads - 1, "imix-bn-pool-relu"))
        others = [pool.submit(chunk, t) for t in range(1, threads)]
        chunk(0)  # this thread takes the first chunk
        for job in others:
            job.result()
    return list(acc.sum(0))


class BNPoolReLU(torch.autograd.Function):
    """relu(max_pool2d(batch_norm(x), 2)) for a training-mode ``nn.BatchNorm2d``: (N, C, H, W) -> (N, C, H/2, W/2).

    Updates the module's running statistics as it does (momentum, unbiased running variance).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
        lib, (n, c, h, w) = library(), x.shape
        total, sumsq = _run(lib.bnp_stats, n, _ptr(x), h * w, c, work=x.numel(), sums=2, channels=c)
        count = n * h * w
        mean = total / count
        var = (sumsq / count - mean * mean).clamp_(min=0)  # biased, as the batch norm normalises with
        invstd = (var + bn.eps).rsqrt()
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), bn.momentum)
            bn.running_var.lerp_((var * count / max(count - 1, 1)).to(bn.running_var.dtype), bn.momentum)
        mean, invstd = mean.float(), invstd.float()
        scale = invstd * weight.detach()
        shift = bias.detach() - mean * scale
        out = torch.empty(n, c, h // 2, w // 2, memory_format=torch.channels_last)
        xsel = torch.empty_like(out)
        _run(lib.bnp_forward, n, _ptr(x), h, w, c, _ptr(scale), _ptr(shift), _ptr(out), _ptr(xsel), work=x.numel())
        ctx.save_for_backward(x, out, xsel, mean, invstd, scale, shift)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, out, xsel, mean, invstd, scale, shift = ctx.saved_tensors
        lib, (n, c, h, w) = library(), x.shape
        g = grad.contiguous(memory_format=torch.channels_last)
        sum_dy, dot = _run(lib.bnp_backward_sums, n, _ptr(g), _ptr(out), _ptr(xsel), h * w // 4, c, _ptr(mean),
                           work=x.numel(), sums=2, channels=c)
        count = n * h * w
        kk = (dot * invstd.double() ** 2 / count).float()
        grad_mean = (sum_dy / count).float()
        dx = torch.empty_like(x, memory_format=torch.channels_last)
        _run(lib.bnp_backward_dx, n, _ptr(g), _ptr(out), _ptr(x), h, w, c, _ptr(scale), _ptr(shift), _ptr(mean),
             _ptr(kk), _ptr(grad_mean), _ptr(dx), work=x.numel())
        return dx, (dot * invstd.double()).float(), sum_dy.float(), None
