"""Handing freed heap back to the operating system, and reading what a process holds.

Why: glibc keeps memory that Python, numpy and torch free in its heap for later reuse instead of
returning it, and after a big array is freed it raises its mmap threshold, so later arrays up to
32 MiB land in that heap too. A farm unit's peak RSS (what a scheduler reserves per block) then
carries the leftovers of every transient before it: the hull prior's distance transform, the
photos decoded while labelling rays. `malloc_trim(0)` at the points where such a transient ends
gives those pages back. It is glibc-only; elsewhere (macOS, Windows, musl) release() does nothing.
"""
from __future__ import annotations

import ctypes
import functools
import gc
import sys
from collections.abc import Callable
from pathlib import Path


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # only glibc has it; musl's malloc has no malloc_trim
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release(collect: bool = True) -> bool:
    """Return the heap's free pages to the OS; True if anything could be asked to do so.

    `collect` runs the garbage collector first, so arrays held only by reference cycles go too.
    Costs a few milliseconds for a heap of a few hundred MiB: call it where a big transient
    ends, not in a hot loop."""
    if collect:
        gc.collect()
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def status_mib(key: str = "VmRSS") -> float | None:
    """A /proc/self/status memory line (VmRSS, VmHWM, ...) in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
