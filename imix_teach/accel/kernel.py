"""The C kernels of ``bn_relu_pool.c``: built once per machine into the user's cache, loaded with ctypes.

Built on first use with the system's C compiler (about a second) into
``config.cache_home() / "kernels"``, never into the current folder (a library loaded from there could
be one a stranger left in a folder a notebook was opened in). Every C function is declared with its
``argtypes`` and ``restype``, so a wrong argument is a Python error, not memory corruption.
:func:`chunks` splits a batch over threads inside the C call: built with ``-fopenmp``, the library
uses the OpenMP runtime PyTorch has loaded (the same ``libgomp.so.1``), so its chunks run on the
threads PyTorch's own CPU kernels run on, which wait, spinning, right after each of them; a second
pool of threads would wait its turn behind them.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import cache_home

SOURCE = Path(__file__).with_name("bn_relu_pool.c")
FLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fno-trapping-math", "-fPIC", "-shared"]
OPTIONAL = ("-march=native", "-fopenmp")  # flags a compiler may refuse (Apple's clang both): tried without
PER_THREAD = 1 << 18  # activation elements per thread, at least (256K: 1 MB of float32)

_I, _P = ctypes.c_int64, ctypes.c_void_p
# Each function's arguments after its first two (the batch's images and the threads), as in the C file.
SIGNATURES = {
    "bnp_stats": (_P, _I, _I, _P),  # x, hw, C, acc (sum, sumsq per chunk)
    "bnp_forward": (_P, _I, _I, _I, _P, _P, _P, _P),  # x, H, W, C, scale, shift, o, xsel
    "bnp_backward_sums": (_P, _P, _P, _I, _I, _P, _P),  # g, o, xsel, ohw, C, mean, acc (sum_dy, dot per chunk)
    "bnp_backward_dx": (_P, _P, _P, _I, _I, _I, _P, _P, _P, _P, _P, _P),  # g, o, x, H, W, C, scale, shift,
}                                                                         # mean, kk, grad_mean, dx

_lib: ctypes.CDLL | None | bool = False  # False: not tried yet; None: unavailable here
_threaded = False  # whether the loaded library runs its chunks on PyTorch's OpenMP threads


def _forked() -> None:
    """In a forked child (a DataLoader worker): one thread. libgomp's team does not survive a fork, and a
    parallel region there waits forever for the parent's threads (PyTorch's own kernels hang there too)."""
    global _threaded
    _threaded = False


os.register_at_fork(after_in_child=_forked)


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
        tries = [[f for f in FLAGS if f not in drop] for drop in ((), OPTIONAL[1:], OPTIONAL[:1], OPTIONAL)]
        try:
            for flags in tries:
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
    cdll.bnp_openmp.argtypes, cdll.bnp_openmp.restype = (), ctypes.c_int
    return cdll


def openmp_runtimes() -> set[str] | None:
    """The OpenMP runtimes this process has loaded (their files), or None where it cannot tell (no /proc)."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "/" in line}  # mapped files, not [heap] or [stack]
    except OSError:
        return None
    return {p for p in paths if re.match(r"lib[gi]?omp", os.path.basename(p))}


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None where they cannot be built (no C compiler, Windows, ``IMIX_FUSED_CPU=0``)."""
    global _lib, _threaded
    if _lib is False:
        _lib = None
        if os.environ.get("IMIX_FUSED_CPU", "1") != "0" and sys.platform != "win32":
            before = openmp_runtimes()
            try:
                _lib = _compile()
            except (OSError, RuntimeError, subprocess.SubprocessError):  # RuntimeError: no home folder
                _lib = None
            # threads only on the runtime PyTorch loaded: one the library brought along (PyTorch built
            # with another OpenMP) would be a second team of threads, each waiting behind the other's spinning
            _threaded = _lib is not None and bool(_lib.bnp_openmp()) and bool(before) and openmp_runtimes() == before
    return _lib


def chunks(fn: Callable, n: int, *args: int | torch.Tensor, work: int, like: torch.Tensor, sums: int = 0,
           channels: int = 0) -> list[torch.Tensor]:
    """fn(n, threads, *args, accumulators): the C function over chunks of the n images, one per thread.

    Tensors in ``args`` are passed as pointers to their data. Up to torch's thread count, at most
    one thread per ``PER_THREAD`` of the ``work`` (elements of the activation): below that, handing
    a chunk to another thread costs more than it saves. Returns the ``sums`` per-channel float64
    accumulators (``like.new_zeros``, one set per chunk), added over the chunks in order.
    """
    threads = max(1, min(torch.get_num_threads(), n, work // PER_THREAD)) if _threaded else 1
    acc = like.new_zeros((threads, sums, channels), dtype=torch.float64)
    fn(n, threads, *(a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args),
       *([acc.data_ptr()] if sums else []))
    return list(acc.sum(0))
