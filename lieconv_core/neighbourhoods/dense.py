"""The all-pairs neighbourhood (k >= n): which (query, point) pairs count, no indices."""

from __future__ import annotations

from typing import Any

from .search import pair_distances


def dense_neighbourhood(adapter: Any, xp: Any, group: Any, query: tuple, points: tuple, r: Any,
                        knn: bool, pair_dist: Any = None) -> tuple[Any, Any]:
    """The neighbourhoods when k >= n, i.e. every point is a candidate of every query: no
    indices, only which (query, point) pairs count.

    query, points as in :func:`.search.chunked_neighbourhood`. Returns mask (bs, m, n) bool —
    kNN: both valid; ball: both valid and d < r, with d computed exactly as in the chunked
    search — and the in-ball counts (bs, m) (None in kNN mode): the pairs that the chunked
    search with k >= n selects, in point order instead of its slot order. ``pair_dist`` as in
    :func:`.search.neighbourhood`.
    """
    qe, qq, qmask = query
    pe, pq, pmask = points
    valid = qmask[:, :, None] & pmask[:, None, :]
    if knn:
        return valid, None
    if pair_dist is None:
        qarrays, dist = pair_distances(xp, group, (qe, qq), (pe, pq))
        d = dist(*qarrays)
    else:
        d = pair_dist
    sel = valid & (d < r)
    return sel, xp.sum(xp.astype(sel, d.dtype), axis=-1)
