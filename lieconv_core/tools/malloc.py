"""Opt-in tuning of glibc's malloc for host (CPU) runs: keep freed memory for reuse.

glibc returns large freed blocks to the kernel (blocks above its mmap threshold, at most 32 MiB,
are unmapped; the heap top is trimmed), so a function that allocates the same large temporaries
on every call page-faults them in again on every call — each fault a kernel entry and a zeroed
4 KiB page. XLA's CPU buffers can do this: a jitted LieConv layer maps tens of MB fresh per
call, thousands of minor page faults, a noticeable share of the call's time that keeping freed
memory removes (``benchmarks.layer.Layer.track_page_faults`` counts them). lieconv's own host
paths avoid such temporaries where they can; this module is for the rest (jax, large batches).

Process-wide, so lieconv never does it on its own: call :func:`keep_freed_memory` yourself,
before the heavy work (or start the process with the equivalent environment variables).
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
#: trim threshold: the heap top goes back to the kernel only when more than this much of it is
#: free (mallopt takes an int: 2 GiB − 1 is its largest value)
NEVER_TRIM = 2**31 - 1


def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc (has mallopt and gnu_get_libc_version)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # pragma: no cover - Windows
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse, for the rest of the process: large blocks
    come from the heap instead of fresh mmaps (``M_MMAP_MAX = 0``), the heap top is trimmed
    only when more than 2 GiB of it is free (``M_TRIM_THRESHOLD`` = :data:`NEVER_TRIM`), and
    threads started from now on allocate from the main heap (``M_ARENA_MAX = 1``) — as when the
    process starts with ``MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=2147483647``.

    The arena limit matters for worker threads (XLA runs jitted calls on its own threads): a
    thread's own arena grows in heaps of at most 64 MiB, and glibc maps a larger block fresh
    whatever ``M_MMAP_MAX`` says — the springs training step on jax maps a 727 MiB temporary
    buffer, 195,000 page faults, on every call without it. Threads that already hold an arena
    keep it, so call this first thing in the process (before torch or jax start their thread
    pools), or use the environment variables.

    Cost: the process's resident memory stays at its peak (freed memory goes back to the kernel
    only at exit), and all threads share one allocator lock.

    Returns
    -------
    bool
        True when applied, False where the C library is not glibc (macOS, Windows, musl).

    Raises
    ------
    RuntimeError
        If glibc rejects a setting.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    for param, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, NEVER_TRIM), (_M_ARENA_MAX, 1)):
        if libc.mallopt(param, value) != 1:
            raise RuntimeError(f"glibc mallopt({param}, {value}) failed")
    return True
