"""The C kernels of ``bn_relu_pool.c``: built once per machine into the user's cache, loaded with ctypes.

Built on first use with the system's C compiler (about a second) into
``config.cache_home() / "kernels"``, never into the current folder (a library loaded from there could
be one a stranger left in a folder a notebook was opened in). Every C function is declared with its
``argtypes`` and ``restype``, so a wrong argument is a Python error, not memory corruption.
:func:`chunks` splits a batch over threads: ctypes releases the GIL during a call, so the chunks
run in parallel, as PyTorch's own CPU kernels do.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from ..config import cache_home

SOURCE = Path(__file__).with_name("bn_relu_pool.c")
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-trapping-math", "-fPIC", "-shared"]
PER_THREAD = 1 << 21  # activation elements per thread, at least (2M: 8 MB of float32)

_I, _P = ctypes.c_int64, ctypes.c_void_p
# Each function's arguments after its first two (the images [n0, n1) it works on), as in the C file.
SIGNATURES = {
    "bnp_stats": (_P, _I, _I, _P, _P),  # x, hw, C, sum, sumsq
    "bnp_forward": (_P, _I, _I, _I, _P, _P, _P, _P),  # x, H, W, C, scale, shift, o, xsel
    "bnp_backward_sums": (_P, _P, _P, _I, _I, _P, _P, _P),  # g, o, xsel, ohw, C, mean, sum_dy, dot
    "bnp_backward_dx": (_P, _P, _P, _I, _I, _I, _P, _P, _P, _P, _P, _P),  # g, o, x, H, W, C, scale, shift,
}                                                                         # mean, kk, grad_mean, dx

_lib: ctypes.CDLL | None | bool = False  # False: not tried yet; None: unavailable here
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


def folder() -> Path:
    """Where the library is built and loaded from: ``config.cache_home() / "kernels"``, an absolute path.

    A relative ``XDG_CACHE_HOME`` is ignored (the XDG spec says so) and so is an empty or relative
    home (``HOME=""``): either would put the library under the current folder. Raises OSError then.
    """
    cache = cache_home() / "kernels"
    if not cache.is_absolute():
        cache = Path.home() / ".cache" / "imix_teach" / "kernels"
    if not cache.is_absolute():
        raise OSError(f"no absolute cache folder for the kernels (got {cache}); set XDG_CACHE_HOME or HOME")
    return cache


def _compile() -> ctypes.CDLL:
    """The kernels' shared library, built once per source, flags and CPU into the user's cache."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS + [sys.platform, _cpu()]).encode()).hexdigest()[:16]
    cache = folder()
    lib = cache / f"bn_relu_pool-{key}.so"
    if not lib.exists():
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
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
    cdll = ctypes.CDLL(str(lib))
    for name, args in SIGNATURES.items():
        fn = getattr(cdll, name)
        fn.argtypes, fn.restype = (_I, _I, *args), None
    return cdll


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None where they cannot be built (no C compiler, Windows, ``IMIX_FUSED_CPU=0``)."""
    global _lib
    if _lib is False:
        _lib = None
        if os.environ.get("IMIX_FUSED_CPU", "1") != "0" and sys.platform != "win32":
            try:
                _lib = _compile()
            except (OSError, RuntimeError, subprocess.SubprocessError):  # RuntimeError: no home folder
                _lib = None
    return _lib


def chunks(fn: Callable, n: int, *args: int | torch.Tensor, work: int, like: torch.Tensor, sums: int = 0,
           channels: int = 0) -> list[torch.Tensor]:
    """fn(n0, n1, *args, *sum buffers) over chunks [n0, n1) of the n images, one chunk per thread.

    Tensors in ``args`` are passed as pointers to their data. Up to torch's thread count, at most
    one thread per ``PER_THREAD`` of the ``work`` (elements of the activation): below that, handing
    a chunk to another thread costs more than it saves. Returns the ``sums`` per-channel float64
    accumulators (``like.new_zeros``), added over the chunks.
    """
    threads = max(1, min(torch.get_num_threads(), n, work // PER_THREAD))
    acc = like.new_zeros((threads, sums, channels), dtype=torch.float64)
    cuts = [n * t // threads for t in range(threads + 1)]
    plain = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]

    def chunk(t: int) -> None:
        fn(cuts[t], cuts[t + 1], *plain, *(a.data_ptr() for a in acc[t]))

    if threads == 1:
        chunk(0)
    else:
        pool = _pools.get(threads) or _pools.setdefault(threads, ThreadPoolExecutor(threads - 1, "imix-bn-relu-pool"))
        others = [pool.submit(chunk, t) for t in range(1, threads)]
        chunk(0)  # this thread takes the first chunk
        for job in others:
            job.result()
    return list(acc.sum(0))
