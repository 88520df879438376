"""tools.malloc.keep_freed_memory: after it, a loop that allocates the same large array on
every call stops page-faulting it in again (glibc keeps the freed block), also in worker threads;
without it every call faults (control). Each case runs in its own interpreter, since the setting
is process-wide."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, threading
import numpy as np
from lieconv_core.tools.malloc import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []

def loop():
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a = np.ones(1 << 24, np.float32)  # 64 MiB: above glibc's largest mmap threshold
        float(a.sum())
        del a
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

if sys.argv[2] == "thread":  # a worker thread started afterwards, as XLA's and torch's are
    t = threading.Thread(target=loop)
    t.start()
    t.join()
else:
    loop()
print(applied, max(faults[1:]))
"""


def _run(mode: str, where: str = "main") -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode, where], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.parametrize("where", ["main", "thread"])
def test_keep_freed_memory_stops_refaulting_large_blocks(where):
    """In the main thread and in a thread started afterwards (whose own arena would map a
    64 MiB block fresh every time whatever M_MMAP_MAX says: M_ARENA_MAX = 1 is what fixes it)."""
    pytest.importorskip("resource")
    from lieconv_core.tools.malloc import _glibc

    if _glibc() is None:
        pytest.skip("the C library is not glibc: keep_freed_memory returns False there")
    applied, kept = _run("keep", where)
    assert applied == "True"
    # the 64 MiB block comes back from the heap: no fresh pages (a fresh block takes >= 32
    # faults even with transparent huge pages; without M_ARENA_MAX = 1 the thread takes 33)
    assert kept <= 4
    _, fresh = _run("default", where)
    assert fresh >= (1 << 26) // (2 << 20)  # control: a fresh mmap per call (>= one per 2 MiB)
