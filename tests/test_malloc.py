"""lieconv_core.malloc.keep_freed_memory: after it, a loop that allocates the same large array on
every call stops page-faulting it in again (glibc keeps the freed block); without it every call
faults (control). Each case runs in its own interpreter, since the setting is process-wide."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
import numpy as np
from lieconv_core.malloc import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(1 << 24, np.float32)  # 64 MiB: above glibc's largest mmap threshold
    float(a.sum())
    del a
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(applied, max(faults[1:]))
"""


def _run(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], int(out[1])


def test_keep_freed_memory_stops_refaulting_large_blocks():
    pytest.importorskip("resource")
    from lieconv_core.malloc import _glibc

    if _glibc() is None:
        pytest.skip("the C library is not glibc: keep_freed_memory returns False there")
    applied, kept = _run("keep")
    assert applied == "True"
    assert kept <= 64  # the 64 MiB block comes back from the heap: no fresh pages
    _, fresh = _run("default")
    assert fresh >= (1 << 26) // (2 << 20)  # control: a fresh mmap per call (>= one per 2 MiB)
