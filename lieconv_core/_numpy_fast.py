"""numpy fast paths of reference operations: the same arithmetic as the array-API version (so the
same results, bit for bit), written with in-place ufuncs on preallocated buffers where the
array-API version allocates a new array per operation. Used by :class:`ReferenceAdapter` for
numpy arrays and by the torch adapter for CPU tensors (zero-copy views; :func:`blocked_contract`
takes the tensors themselves, with torch's gather and products)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def euclidean_fps(elems: np.ndarray, mask: np.ndarray, m: int, start: np.ndarray,
                  scale: float) -> np.ndarray:
    """Farthest point sampling under ‖u − v‖ (T(d), Trivial(d)): the reference loop of
    :func:`lieconv_core.neighbourhoods.fps` for Euclidean groups.

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


#: :func:`blocked_contract` gathers about this many bytes of neighbour values per block: the block
#: is multiplied while it is still in the L2 cache (512 KiB–1 MiB per core on current x86 CPUs)
CONTRACT_BLOCK_BYTES = 1 << 20


def contract_block(k: int, c: int, itemsize: int) -> int:
    """Queries per block of :func:`blocked_contract` (k neighbours, c channels)."""
    return max(1, CONTRACT_BLOCK_BYTES // max(1, k * c * itemsize))


def blocked_contract(w: Any, src: Any, flat: Any, weight_major: bool,
                     empty: Callable, take_rows: Callable, matmul: Callable) -> Any:
    """The contraction of :meth:`lieconv_core.adapter.ReferenceAdapter.contract` with w already
    zero at invalid slots, for host arrays without autograd: the neighbour values of a block of
    queries are gathered into one reused buffer of about :data:`CONTRACT_BLOCK_BYTES` and
    multiplied into the block's rows of the result at once.

    w (rows, k, cm) (rows = bs·m queries of all clouds), src (bs·n, c) the values of all clouds'
    points, flat (rows, k) neighbour rows of src (indices offset by cloud) -> (rows, cm, c) with
    ``weight_major``, else (rows, c, cm); the same per-query products as the reference. Blocks
    run across clouds, so a batch of small clouds takes a few large products. The reference
    gathers all (bs, m, k, c) values first: at k = 32, C = 256 a fresh 16 MiB array per
    512-query chunk, which glibc often returns to the kernel after each call, so that every call
    page-faults it in again (thousands of faults per chunk, a visible share of a layer forward),
    and the product then reads it from memory instead of cache.

    Written once for numpy arrays and CPU torch tensors (both have ``reshape``, ``swapaxes`` and
    slicing): ``empty(shape)`` allocates in w's dtype, ``take_rows(src, idx, out)`` gathers rows
    of src into out, ``matmul(a, b, out)`` multiplies stacks of matrices into out.
    """
    rows, k, cm = w.shape
    c = src.shape[1]
    out = empty((rows, cm, c) if weight_major else (rows, c, cm))
    step = contract_block(k, c, w.itemsize)
    buf = empty((min(step, rows) * k, c))
    for a in range(0, rows, step):
        b = min(rows, a + step)
        vals = buf[:(b - a) * k]
        take_rows(src, flat[a:b].reshape(-1), vals)
        vals = vals.reshape(b - a, k, c)
        if weight_major:
            matmul(w[a:b].swapaxes(1, 2), vals, out[a:b])
        else:
            matmul(vals.swapaxes(1, 2), w[a:b], out[a:b])
    return out


def weightnet(layers: list, emb: np.ndarray) -> np.ndarray:
    """:meth:`lieconv_core.adapter.ReferenceAdapter.weightnet` on numpy arrays: per layer
    swish(h @ W + b) with swish(x) = x·(1 + tanh(x/2))·0.5, evaluated in the reference's order
    (bit-identical) but with the bias and swish applied in place — one temporary per layer
    instead of five new arrays."""
    h = np.reshape(emb, (-1, emb.shape[-1]))  # one GEMM, not one per leading index
    for w, b in layers:
        h = np.matmul(h, w)
        np.add(h, b, out=h)
        t = np.multiply(h, h.dtype.type(0.5))
        np.tanh(t, out=t)
        np.add(1, t, out=t)
        np.multiply(h, t, out=h)
        np.multiply(h, h.dtype.type(0.5), out=h)
    return np.reshape(h, (*emb.shape[:-1], h.shape[-1]))
