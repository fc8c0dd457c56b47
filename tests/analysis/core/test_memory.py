"""Freed heap memory goes back to the operating system (analysis/core/memory.py)."""
import sys

import pytest

from analysis.core.memory import release_free_memory


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim; /proc")
def test_freed_heap_is_returned_to_the_system():
    # 1 KB objects come from malloc's heap (not Python's small-object arenas); keeping every
    # 50th pins the heap, so freeing the rest leaves ~300 MB resident until trimmed.
    kept, freed = [], []
    for i in range(300_000):
        (kept if i % 50 == 0 else freed).append(bytes(1024))
    del freed
    before = _rss_bytes()
    assert release_free_memory() is True
    assert before - _rss_bytes() > 150e6
    assert len(kept) == 6_000
