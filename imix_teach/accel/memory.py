"""Freed CPU memory kept for reuse, as PyTorch's caching allocator does on a GPU."""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_MMAP_BELOW = 32 << 20  # glibc's largest mmap threshold: blocks up to 32 MiB come from the reusable heap
_TRIM_ABOVE = 512 << 20  # give memory back to the OS only when over 512 MiB of the heap's top is free


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks of up to 32 MiB for the next step instead of unmapping them.

    A training step frees its activations (a few MiB to 16 MiB each for the small ConvNet at batch
    128) and allocates the same sizes again in the next step. By default glibc hands blocks that big
    back to the kernel, so every step page-faults its activations in again: on a 2-core machine that
    was 10-30 % of the step's CPU time. Process-wide, idempotent, at most 512 MiB kept free; returns
    False where the C library is not glibc (macOS, Windows, musl), which it leaves as it is.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # only glibc has it (and mallopt with these meanings)
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_BELOW)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_ABOVE))
