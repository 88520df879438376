"""Array-API building blocks of the searches: distance quantisation, the FPS start and the
"first k in-ball, then the rest" slot selection. Pure functions of arrays; the searches use them,
and kernel backends use :data:`QUANT` and :func:`fps_start` to reproduce the searches exactly."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import device as _device

from .._backend import index_dtype
from ..rows import count_true, search_rows

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
