"""Row-wise array-API helpers shared by the adapter's reference primitives
(:class:`lieconv_core.adapter.ReferenceAdapter`) and the neighbourhood searches: running counts,
row-wise searches of running counts, per-cloud row offsets, and the query-chunk length and
concatenation. Pure functions of arrays; they import neither the adapter nor the searches."""

from __future__ import annotations

from typing import Any

from array_api_compat import device as _device


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
