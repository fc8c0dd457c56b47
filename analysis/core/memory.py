"""Giving memory the process has freed back to the operating system, between tiles.

glibc's malloc keeps freed memory in its heap for reuse and can shrink the heap only from its
top. A whole-slide analysis interleaves large short-lived buffers (network activations, maps,
label images of each tile) with small long-lived objects (cell tables, job state), which pin
the heap's top: the freed space stays resident. Measured in the whole-slide benchmark
(20,000² px pair, PyTorch runtime): the worker's heap held 4.1 GB during the IHC stage, and one
`malloc_trim(0)` returned 2.8 GB of it at once (`benchmarks/results/wsi_throughput*.json`).

`release_free_memory()` calls glibc's `malloc_trim(0)`, which also returns free pages in the
middle of the heap (glibc >= 2.8), not only at its top; it costs tens of milliseconds for
hundreds of MB freed. Where the C library is not glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc: musl and macOS have no malloc_trim
        return None


def release_free_memory() -> bool:
    """Return the heap's free pages to the operating system; False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
