"""Neighbour searches and farthest point sampling in array-API code, written against the adapter
primitives (gather, top-k, row searches, query chunks) that every backend supplies.

:func:`neighbourhood` picks the cell-list search of :mod:`.cell_list` where it pays and applies,
else :func:`chunked_neighbourhood` over all (query, point) pairs. Adapters expose these as
methods (``adapter.neighbourhood(...)``), which kernel backends override.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import device as _device

from ..groups.base import sqrt_sum_squares
from .primitives import first_k_then_rest, fps_start, quantize


def fps(adapter: Any, xp: Any, group: Any, elems: Any, q: Any, mask: Any, m: int, u: Any) -> Any:
    """Farthest point sampling under the group distance.

    elems (bs, n, E), q (bs, n, dq) or None, mask (bs, n) bool, u (bs,) uniform draws that pick
    the start among the valid points. Returns indices (bs, m) of the default integer dtype.
    Padding is never chosen; ties (after :func:`quantize`) go to the lowest index.
    """
    cur, dmin = fps_start(xp, mask, u, elems.dtype)
    dist = adapter.fps_distance(xp, group, elems, q, mask)
    chosen = []
    for _ in range(m):
        chosen.append(cur)
        dmin = xp.minimum(dmin, dist(cur))
        cur = xp.argmax(dmin, axis=1)
    return xp.stack(chosen, axis=1)


def fps_distance(adapter: Any, xp: Any, group: Any, elems: Any, q: Any, mask: Any) -> Callable:
    """cur (bs,) -> quantised distances (bs, n) of every point to point ``cur`` of its cloud,
    -inf at padding (so ``minimum`` keeps padding at -inf and ``argmax`` never picks it).

    For groups whose distance is ‖u − v‖ on the elements (T(d), Trivial(d)) the coordinates
    are split into contiguous (bs, n) components once, and each step computes
    sqrt(((x0 − c0)² + (x1 − c1)²) + ...) on them: the same arithmetic as the generic path
    (:func:`lieconv_core.groups.base.norm`), without a (bs, n, E) broadcast per step, which in
    numpy runs an inner loop of length E (~10x slower at E = 3)."""
    neg = xp.full(mask.shape, -math.inf, dtype=elems.dtype, device=_device(elems))
    if group.euclidean_distance and elems.shape[-1] <= 4:
        zero = xp.zeros(mask.shape, dtype=elems.dtype, device=_device(elems))
        # padded coordinates may be NaN: zero them once, the -inf mask does the rest
        comps = [xp.where(mask, elems[..., i], zero) for i in range(elems.shape[-1])]

        def dist(cur: Any) -> Any:
            c = adapter.gather(xp, elems, cur[:, None])  # (bs, 1, E)
            d = sqrt_sum_squares(xp, (x - c[:, :, i] for i, x in enumerate(comps)))
            return xp.where(mask, quantize(xp, d), neg)

        return dist

    feats = group.distance_features(xp, elems)  # once, not once per step

    def dist(cur: Any) -> Any:
        f_cur = adapter.gather(xp, feats, cur[:, None])
        q_cur = None if q is None else adapter.gather(xp, q, cur[:, None])
        return xp.where(mask, quantize(xp, group.feature_distance(xp, feats, q, f_cur, q_cur)),
                        neg)

    return dist


def neighbourhood(
    adapter: Any, xp: Any, group: Any, query: tuple, points: tuple, k: int, r: Any,
    priorities: Any, knn: bool, chunk_pairs: int | None = None, grid: bool | None = None,
    pair_dist: Any = None,
) -> tuple[Any, Any, Any]:
    """Neighbour search: the contract is :meth:`chunked_neighbourhood`'s.

    Dispatch: for Euclidean-distance groups (T(d), Trivial(d), Tx/Ty; d <= 3) on large clouds
    the cell-list search of :mod:`lieconv_core.neighbourhoods.cell_list` returns exactly the
    same indices, masks and counts with O(m·W) work, W ≈ 3^d · (points per cell), instead of O(m·n);
    ``grid=None`` (default) uses it when
    :func:`lieconv_core.neighbourhoods.cell_list.grid_neighbourhood` judges it pays (more than
    ``GRID_MIN_PAIRS`` = 2^22 dense pairs, candidates per query <= n/4, not jax, scalar r),
    ``grid=True`` whenever it applies at all (tests), ``grid=False`` never.

    ``pair_dist``: the group distances (bs, m, n) of every (query, point) pair, when the caller
    already has them (:meth:`lieconv_core.LieConv.pairs`); used instead of recomputing them
    (chunked search). Kernel overrides may ignore it. ``chunk_pairs`` None: the adapter's
    :meth:`chunk_pairs` for the points' device.
    """
    if k > points[2].shape[1]:  # the searches take k of the n columns
        raise ValueError(f"k must be at most the number of points ({points[2].shape[1]}), "
                         f"got {k}")
    if chunk_pairs is None:
        chunk_pairs = adapter.chunk_pairs(points[2])
    if pair_dist is not None:
        return adapter.chunked_neighbourhood(xp, group, query, points, k, r, priorities, knn,
                                          chunk_pairs, pair_dist)
    if grid is not False:
        from .cell_list import grid_neighbourhood

        out = grid_neighbourhood(xp, adapter, group, query, points, k, r, priorities, knn,
                                 force=bool(grid), fallback_chunk_pairs=chunk_pairs)
        if out is not None:
            return out
    return adapter.chunked_neighbourhood(xp, group, query, points, k, r, priorities, knn,
                                      chunk_pairs)


def chunked_neighbourhood(
    adapter: Any, xp: Any, group: Any, query: tuple, points: tuple, k: int, r: Any,
    priorities: Any, knn: bool, chunk_pairs: int | None = None, pair_dist: Any = None,
) -> tuple[Any, Any, Any]:
    """Neighbour search over all (query, point) pairs, chunked over queries so that at most
    ``chunk_pairs`` pair distances exist at a time (``pair_dist`` (bs, m, n): precomputed
    distances of all pairs, read instead of computed).

    query = (elems (bs, m, E), q or None, mask (bs, m)); points likewise with n entries.
    Ball mode: each query takes the k in-ball points (d < r, valid) of smallest priority
    (``priorities`` (bs, n) ints, a random permutation per cloud: a uniform random subset of
    the ball); slots beyond the in-ball count are masked off. kNN mode: the k nearest valid
    points, ties (after :func:`quantize`) to the lower index.

    Returns idx (bs, m, k) ints, nbr_mask (bs, m, k) bool, inball (bs, m) in-ball counts
    (float, zero for invalid queries; None in kNN mode).
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
