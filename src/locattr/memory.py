"""Long-running processes' malloc: keep freed memory for the next request or batch.

Decoding a graph of a million edges allocates ~30 MB of short-lived buffers; a batched backward
allocates gradient and projection tensors of a few MB each. With glibc's default,
self-adjusting thresholds such buffers went back to the kernel when freed and the next use
faulted every page in again: ~6,500 page faults, about half of a 40 ms API request on the
2-core benchmark machine, and ~9 % of a CPU attribution. Fixed thresholds keep them on the
heap for reuse. The API server and the `locattr-generate` workers set them.
"""

from __future__ import annotations

import ctypes
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20
"""Allocations up to this size come from the heap (glibc's ceiling for this setting)."""
TRIM_THRESHOLD_BYTES = 128 << 20
"""Free memory at the top of a heap beyond this goes back to the kernel."""


def keep_freed_memory() -> bool:
    """Set glibc malloc's mmap and trim thresholds for a long-running server process; returns
    whether they were set (False where the C library is not glibc)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; setting either disables glibc's dynamic thresholds.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
