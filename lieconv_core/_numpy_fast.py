"""numpy fast paths of reference operations: the same arithmetic as the array-API version (so the
same results, bit for bit), written with in-place ufuncs on preallocated buffers where the
array-API version allocates a new array per operation. Used by :class:`ReferenceAdapter` for
numpy arrays and by the torch adapter for CPU tensors (zero-copy views)."""

from __future__ import annotations

import numpy as np


def euclidean_fps(elems: np.ndarray, mask: np.ndarray, m: int, start: np.ndarray,
                  scale: float) -> np.ndarray:
    """Farthest point sampling under ‖u − v‖ (T(d), Trivial(d)): the reference loop of
    :meth:`lieconv_core.adapter.ReferenceAdapter.fps` for Euclidean groups.

    elems (bs, n, E) float, mask (bs, n) bool, start (bs,) first indices (:func:`fps_start`),
    scale the distance quantum (QUANT). Returns (bs, m) int64. Per step: squared differences
    added left to right (no FMA), sqrt, quantize, running minimum, argmax (ties to the lower
    index) — the reference's operations, ~12 in-place ufunc calls on (bs, n) buffers.
    Padding starts at −inf in the running minimum and stays there (min(−inf, d) = −inf), so it
    is never chosen and the per-step mask of the reference is a no-op here.
    """
    bs, n, dim = elems.shape
    dt = elems.dtype
    comps = [np.ascontiguousarray(np.where(mask, elems[..., i], dt.type(0))) for i in range(dim)]
    dmin = np.where(mask, dt.type(np.inf), dt.type(-np.inf))
    out = np.empty((bs, m), dtype=np.int64)
    rows = np.arange(bs)
    d2, diff = np.empty((bs, n), dt), np.empty((bs, n), dt)
    cur = np.asarray(start, dtype=np.int64)
    sc, half = dt.type(scale), dt.type(0.5)
    for t in range(m):
        out[:, t] = cur
        c = elems[rows, cur]  # (bs, E)
        for i, x in enumerate(comps):
            np.subtract(x, c[:, i:i + 1], out=diff)
            if i == 0:
                np.multiply(diff, diff, out=d2)
            else:
                np.multiply(diff, diff, out=diff)
                np.add(d2, diff, out=d2)
        np.sqrt(d2, out=d2)
        np.multiply(d2, sc, out=d2)
        np.add(d2, half, out=d2)
        np.floor(d2, out=d2)
        np.minimum(dmin, d2, out=dmin)
        cur = np.argmax(dmin, axis=1)
    return out
