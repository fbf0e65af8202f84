"""converter.memory: giving freed heap back is harmless, and RSS can be read."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from nrconvert.memory import release, status_mib


def test_release_is_harmless_and_keeps_live_arrays():
    keep = np.arange(1 << 20, dtype=np.float64)
    garbage = [np.ones(1 << 16) for _ in range(64)]
    del garbage
    released = release()
    assert isinstance(released, bool)
    assert release(collect=False) == released
    assert keep[-1] == (1 << 20) - 1 and keep.sum() == keep.size * (keep.size - 1) / 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and glibc are Linux's")
def test_release_gives_freed_pages_back_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    # many medium blocks below the mmap threshold live in the heap; freed, glibc keeps them
    piece = b"\x01" * (64 << 10)
    blocks = [bytearray(piece) for _ in range(2000)]  # 125 MiB in 64 KiB pieces, every page written
    del blocks[:-1]  # all but the last freed; it keeps the heap's top in place, so only trim frees
    before = status_mib("VmRSS")
    assert release()
    after = status_mib("VmRSS")
    assert before - after > 50, (before, after)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_status_mib_reads_proc():
    rss, hwm = status_mib("VmRSS"), status_mib("VmHWM")
    assert 0 < rss <= hwm
    assert status_mib("NoSuchLine") is None
