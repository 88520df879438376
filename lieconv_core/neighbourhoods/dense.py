"""The all-pairs neighbourhood (k >= n): which (query, point) pairs count, no indices."""

from __future__ import annotations

from typing import Any

from .chunked import pair_distances


def dense_neighbourhood(adapter: Any, xp: Any, group: Any, query: tuple, points: tuple, r: Any,
                        knn: bool, pair_dist: Any = None) -> tuple[Any, Any]:
    """The neighbourhoods when k >= n: every point is a candidate of every query.

    No indices, only which (query, point) pairs count: the same pairs as
    :func:`.chunked.chunked_neighbourhood` with k >= n selects, in point order instead of its
    slot order.

    Parameters
    ----------
    adapter : ReferenceAdapter
        The adapter of the arrays' backend (the same signature as the other searches; the
        all-pairs test needs none of its primitives).
    xp : module
        The array namespace.
    group : Group
        The group whose distance is used.
    query : tuple
        ``(elems (bs, m, E), q or None, mask (bs, m))``, as in the chunked search.
    points : tuple
        The same for the ``n`` points.
    r : float or array
        Ball radius (group distance units); unused in kNN mode.
    knn : bool
        True: kNN mode; False: ball mode.
    pair_dist : array or None
        Precomputed distances ``(bs, m, n)``, read instead of computed.

    Returns
    -------
    mask : array
        Bool ``(bs, m, n)``: kNN, both valid; ball, both valid and d < r, with d computed exactly
        as in the chunked search.
    inball : array or None
        Float in-ball counts ``(bs, m)``; None in kNN mode.
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
