"""Array-API building blocks of the searches: distance quantisation, the FPS start, row-wise
searches of running counts, and the query-chunk helpers. Pure functions of arrays; adapters
and the neighbourhood searches use them."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import device as _device

from .._backend import index_dtype


def count_true(xp: Any, sel: Any, dtype: Any) -> Any:
    """Running count of True entries along the last axis of the bool array ``sel``.

    Parameters
    ----------
    xp : module
        The array namespace.
    sel : array of bool, shape (..., n)
        The entries.
    dtype : dtype
        Integer dtype of the counts.

    Returns
    -------
    array, shape (..., n)
    """
    return xp.cumulative_sum(xp.astype(sel, dtype), axis=-1, dtype=dtype)


#: distances are rounded to multiples of 1/QUANT[dtype] before FPS and kNN comparisons, so that
#: mathematically equal distances (grids; SE(2) lift samples exactly π apart) tie exactly on every
#: backend and the tie goes to the lowest index, instead of to whichever backend's rounding of
#: atan2/log happens to come out larger.
QUANT = {"float64": 2.0**26, "float32": 2.0**13}


def quantize(xp: Any, d: Any) -> Any:
    """Round distances to the grid 1/QUANT[d.dtype] (see QUANT); inf stays inf."""
    scale = QUANT["float32" if d.dtype == xp.float32 else "float64"]
    return xp.floor(d * scale + 0.5)


def fps_start(xp: Any, mask: Any, u: Any, dtype: Any) -> tuple[Any, Any]:
    """FPS start index (bs,) — the valid point of rank floor(u · n_valid) — and the initial
    running minimum (bs, n): +inf at valid points, -inf at padding."""
    bs, n = mask.shape
    dev = _device(mask)
    count = xp.cumulative_sum(xp.astype(mask, index_dtype(xp)), axis=1)
    target = xp.astype(xp.floor(u * xp.astype(count[:, -1], u.dtype)), index_dtype(xp))
    cur = xp.argmax(xp.astype(count > target[:, None], xp.int8), axis=1)
    inf = xp.full((bs, n), math.inf, dtype=dtype, device=dev)
    return cur, xp.where(mask, inf, -inf)


def search_rows(xp: Any, counts: Any, targets: Any) -> Any:
    """Per row r and target t = targets[r, i]: the first position j with counts[r, j] >= t (n if
    none), for non-decreasing integer rows counts (rows, n) with values in [0, n] and targets
    (rows, k) in [0, n]. Rows are offset by (n + 1) so that one 1-D ``searchsorted`` over the
    flattened (then globally sorted) counts answers every row at once. Returns counts' dtype."""
    rows, n = counts.shape
    idt = counts.dtype
    row = xp.arange(rows, dtype=idt, device=_device(counts))[:, None]
    offs = row * (n + 1)
    at = xp.searchsorted(xp.reshape(counts + offs, (-1,)), xp.reshape(targets + offs, (-1,)),
                         side="left")
    return xp.reshape(xp.astype(at, idt), tuple(targets.shape)) - row * n


def first_k_then_rest(xp: Any, sel: Any, k: int, search: Callable | None = None,
                      all_true: Callable | None = None, counts: bool = False,
                      cumsum: Callable | None = None) -> Any:
    """Positions (*B, k) of the first k entries of each row of ``sel`` (*B, n) in the order "True
    entries left to right, then False entries left to right" — i.e. ``argsort(where(sel, 0, 1),
    stable=True)[..., :k]`` — in O(n) per row (k <= n).

    a = cumsum(sel) and b = cumsum(~sel) = (1, 2, ..., n) − a are non-decreasing; the j-th True
    entry (1-based) is the first position where a >= j, the j-th False entry the first where
    b >= j. Slot t (1-based) is the t-th True entry while t <= a[-1], else the (t − a[-1])-th
    False one: one row-wise search per half (``search``, default :func:`search_rows`; adapters
    pass a native batched one); int32 counts where they fit (half the memory traffic of int64).

    ``all_true`` (an adapter's ``all_true``): when it finds that every row
    holds at least k True entries, the False half (b and its search) is skipped — the same
    positions. ``counts``: return (positions, a[-1] (*B,): the number of True entries per row).
    ``cumsum`` (an adapter's ``count_true``; default :func:`count_true`) computes a.
    """
    lead = tuple(sel.shape[:-1])
    n = sel.shape[-1]
    rows = math.prod(lead)
    dev = _device(sel)
    idt = xp.int32 if (rows + 1) * (n + 1) < 2**31 else index_dtype(xp)
    a = xp.reshape(count_true(xp, sel, idt) if cumsum is None else cumsum(xp, sel, idt),
                   (rows, n))
    tot = a[:, -1:]
    t = xp.arange(1, k + 1, dtype=idt, device=dev)[None, :]
    search = search_rows if search is None else search
    if all_true is not None and all_true(xp, tot >= k):
        pos = search(xp, a, xp.broadcast_to(t, (rows, k)))  # every slot is a True entry
    else:
        b = xp.arange(1, n + 1, dtype=idt, device=dev)[None, :] - a
        true_slot = t <= tot
        t_true = xp.where(true_slot, t, tot)  # (clipped: the other half answers those slots)
        t_false = xp.where(true_slot, xp.ones_like(t_true), t - tot)
        pos = xp.where(true_slot, search(xp, a, t_true), search(xp, b, t_false))
    pos = xp.reshape(xp.astype(pos, index_dtype(xp)), (*lead, k))
    return (pos, xp.reshape(tot, lead)) if counts else pos


def offset_rows(xp: Any, idx: Any, n: int) -> Any:
    """Indices idx (bs, ...) into each cloud's n points -> rows of the (bs·n, ...) stack of all
    clouds (cloud b's indices shifted by b·n)."""
    bs = idx.shape[0]
    offsets = xp.arange(bs, dtype=idx.dtype, device=_device(idx)) * n
    return idx + xp.reshape(offsets, (bs,) + (1,) * (idx.ndim - 1))


def equal_step(m: int, step: int) -> int:
    """Chunk length for m queries in chunks of at most ``step``: as few chunks as that allows,
    of equal length (the last one no longer)."""
    return -(-m // max(1, -(-m // max(1, step))))


def concat_parts(xp: Any, parts: list) -> Any:
    """Results of consecutive query chunks (each an array (bs, s, ...) or a tuple of arrays and
    Nones) concatenated along axis 1."""
    if isinstance(parts[0], tuple):
        return tuple(None if p[0] is None else concat_parts(xp, list(p)) for p in zip(*parts))
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=1)
