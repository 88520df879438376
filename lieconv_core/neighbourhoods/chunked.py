"""The neighbour search over all (query, point) pairs, chunked over queries, and the group
distances of those pairs. The reference every other search path (the cell list, the kernels) must
reproduce exactly."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..groups.base import sqrt_sum_squares
from .primitives import first_k_then_rest, quantize


def chunked_neighbourhood(
    adapter: Any, xp: Any, group: Any, query: tuple, points: tuple, k: int, r: Any,
    priorities: Any, knn: bool, chunk_pairs: int | None = None, pair_dist: Any = None,
) -> tuple[Any, Any, Any]:
    """Neighbour search over all (query, point) pairs, chunked over queries.

    At most ``chunk_pairs`` pair distances exist at a time. Ball mode: each query takes the k
    in-ball points (d < r, valid) of smallest priority (a uniform random subset of the ball);
    slots beyond the in-ball count are masked off. kNN mode: the k nearest valid points, ties
    (after :func:`~lieconv_core.neighbourhoods.primitives.quantize`) to the lower index.

    Parameters
    ----------
    adapter : ReferenceAdapter
        The adapter whose primitives (gather, top-k, row searches, query chunks) run the search.
    xp : module
        The array namespace.
    group : Group
        The group whose distance is used.
    query : tuple
        ``(elems (bs, m, E), q (bs, m, dq) or None, mask (bs, m) bool)`` of the queries.
    points : tuple
        The same for the ``n`` candidate points.
    k : int
        Neighbours per query.
    r : float or array
        Ball radius (group distance units); unused in kNN mode.
    priorities : array or None
        Integers ``(bs, n)``, a random permutation per cloud (ball mode); None in kNN mode.
    knn : bool
        True: k nearest neighbours; False: ball mode.
    chunk_pairs : int or None
        Bound on the pair distances held at once; None: the adapter's ``chunk_pairs`` for the
        points' device.
    pair_dist : array or None
        Precomputed distances ``(bs, m, n)`` of all pairs, read instead of computed.

    Returns
    -------
    idx : array
        Neighbour indices ``(bs, m, k)``, integers.
    nbr_mask : array
        Bool ``(bs, m, k)``, True at valid neighbour slots.
    inball : array or None
        Float in-ball counts ``(bs, m)`` (zero for invalid queries); None in kNN mode.
    """
    qe, qq, qmask = query
    pe, pq, pmask = points
    bs, m = qmask.shape
    n = pmask.shape[1]
    chunk_pairs = adapter.chunk_pairs(pmask) if chunk_pairs is None else chunk_pairs
    step = max(1, chunk_pairs // max(1, bs * n))
    if not knn:
        # Ball mode wants the stable order of key = (prio if in ball else prio + n): in-ball
        # points by priority, then the others by priority. With the points' columns put in
        # priority order once, that is "the first k in-ball columns, then the first others",
        # found by cumulative counts and one searchsorted: O(m·n), no per-row sort.
        order = xp.argsort(priorities, axis=-1, stable=True)  # (bs, n) columns by priority
        pe = adapter.gather(xp, pe, order)
        pq = None if pq is None else adapter.gather(xp, pq, order)
        pmask = adapter.take_along_last(xp, pmask, order)
        if pair_dist is not None:
            pair_dist = adapter.take_along_last(
                xp, pair_dist, xp.broadcast_to(order[:, None, :], tuple(pair_dist.shape)))
    if pair_dist is None:
        qarrays, dist = pair_distances(xp, group, (qe, qq), (pe, pq))
    else:
        qarrays, dist = (pair_dist,), lambda d: d
    # all points and queries valid (host-checked where cheap): the ball test alone decides
    all_valid = not knn and adapter.all_true(xp, pmask) and adapter.all_true(xp, qmask)

    def chunk(qm, *qa):
        """One chunk of queries (mask (bs, s) and the distance inputs, sliced along the query
        axis) -> idx (bs, s, k), valid (bs, s, k), in-ball counts (bs, s) or None."""
        d = dist(*qa)
        if knn:
            valid = pmask[:, None, :] & qm[:, :, None]
            score = xp.where(valid, quantize(xp, d), xp.full_like(d, math.inf))
            pos = adapter.topk_smallest(xp, score, k)
            return pos, adapter.take_along_last(xp, valid, pos), None
        sel = d < r  # columns in priority order
        if not all_valid:
            sel = (pmask[:, None, :] & qm[:, :, None]) & sel
        pos, inball = first_k_then_rest(xp, sel, k, adapter.search_rows, adapter.all_true,
                                        counts=True, cumsum=adapter.count_true)
        idx = adapter.gather(xp, order[..., None], pos)[..., 0]  # back to point indices
        return idx, adapter.take_along_last(xp, sel, pos), xp.astype(inball, d.dtype)

    return adapter.map_query_chunks(xp, chunk, (qmask, *qarrays), step)


def pair_distances(xp: Any, group: Any, query: tuple, points: tuple) -> tuple[tuple, Callable]:
    """(per-query arrays (bs, m, ·), f): f(*those arrays, or their slices along the query axis)
    -> group distances (bs, s, n) of those queries to every point.

    query = (elems (bs, m, E), q or None), points likewise. For Euclidean groups the coordinates
    are used as contiguous (bs, ·) components, so the distances are a few elementwise ops on
    (bs, s, n) arrays — the same arithmetic as group.pair_distance (norm adds the squares left
    to right), without the (bs, s, n, E) difference array (numpy runs that with an inner loop of
    length E)."""
    (qe, qq), (pe, pq) = query, points
    if group.euclidean_distance and pe.shape[-1] <= 4:
        pcomps = [pe[..., i] for i in range(pe.shape[-1])]
        return tuple(qe[..., i] for i in range(pe.shape[-1])), lambda *qcomps: sqrt_sum_squares(
            xp, (qc[:, :, None] - pc[:, None, :] for qc, pc in zip(qcomps, pcomps)))
    pf = group.distance_features(xp, pe)  # features once per search
    return (group.distance_features(xp, qe), qq), lambda qf, qqs: group.feature_distance(
        xp, qf[:, :, None, :], None if qqs is None else qqs[:, :, None, :],
        pf[:, None, :, :], None if pq is None else pq[:, None, :, :])
