"""Farthest point sampling and the neighbour search: which implementation answers.

Both ask the adapter's native-kernel capability first (``adapter.native_kernels(group)``, a
:class:`~lieconv_core.neighbourhoods.kernels.NativeKernels` or None): a kernel that applies to
the arrays answers. Otherwise the array-API code here runs on the adapter's primitives (gather,
top-k, row searches, query chunks): :func:`neighbourhood` picks the cell-list search of
:mod:`.cell_list` where it pays and applies, else :func:`.chunked.chunked_neighbourhood` over all
(query, point) pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from array_api_compat import device as _device

from ..groups.base import sqrt_sum_squares
from .chunked import chunked_neighbourhood
from .primitives import fps_start, quantize


def fps(adapter: Any, xp: Any, group: Any, elems: Any, q: Any, mask: Any, m: int, u: Any) -> Any:
    """Farthest point sampling under the group distance.

    Padding is never chosen; ties (after :func:`~lieconv_core.neighbourhoods.primitives.quantize`)
    go to the lowest index. The adapter's native kernels for ``group`` answer where they apply.

    Parameters
    ----------
    adapter : ReferenceAdapter
        The adapter of the arrays' backend.
    xp : module
        The array namespace.
    group : Group
        The group whose distance is used.
    elems : array
        Group elements ``(bs, n, E)`` of the points.
    q : array or None
        Orbit identifiers ``(bs, n, dq)``, or None.
    mask : array
        Bool ``(bs, n)``, True at valid points.
    m : int
        Number of points to sample per cloud.
    u : array
        Uniform draws in ``[0, 1)``, shape ``(bs,)``, that pick the start among the valid points.

    Returns
    -------
    array
        Indices ``(bs, m)`` of the default integer dtype.
    """
    kernels = adapter.native_kernels(group)
    if kernels is not None:
        out = kernels.fps(xp, elems, q, mask, m, u)
        if out is not None:
            return out
    cur, dmin = fps_start(xp, mask, u, elems.dtype)
    dist = fps_distance(adapter, xp, group, elems, q, mask)
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
    """Neighbour search: the contract is :func:`.chunked.chunked_neighbourhood`'s.

    The adapter's native kernels for ``group`` answer where they apply (they ignore ``grid``
    and ``pair_dist``). Otherwise, for Euclidean and position-bounded distances on large clouds
    the cell-list search of :mod:`lieconv_core.neighbourhoods.cell_list` returns exactly the same
    indices, masks and counts with O(m·W) work, W ≈ 3^d · (points per cell), instead of O(m·n):
    ``grid=None`` (default) uses it when
    :func:`lieconv_core.neighbourhoods.cell_list.grid_neighbourhood` judges it pays,
    ``grid=True`` whenever it applies at all (tests), ``grid=False`` never.

    Parameters
    ----------
    adapter : ReferenceAdapter
        The adapter of the arrays' backend.
    xp : module
        The array namespace.
    group : Group
        The group whose distance is used.
    query : tuple
        ``(elems (bs, m, E), q (bs, m, dq) or None, mask (bs, m) bool)`` of the queries.
    points : tuple
        The same for the ``n`` candidate points.
    k : int
        Neighbours per query, at most ``n``.
    r : float or array
        Ball radius (group distance units); unused in kNN mode.
    priorities : array or None
        Integers ``(bs, n)``, a random permutation per cloud (ball mode); None in kNN mode.
    knn : bool
        True: the k nearest points; False: k random points in the ball.
    chunk_pairs : int or None
        Bound on the pair distances held at once; None: the adapter's ``chunk_pairs`` for the
        points' device.
    grid : bool or None
        Cell list use: None where it pays, True whenever it applies (tests), False never.
    pair_dist : array or None
        Group distances ``(bs, m, n)`` of every (query, point) pair, when the caller already has
        them (:meth:`lieconv_core.LieConv.pairs`); used instead of recomputing them (chunked
        search).

    Returns
    -------
    idx : array
        Neighbour indices ``(bs, m, k)``, integers.
    nbr_mask : array
        Bool ``(bs, m, k)``, True at valid neighbour slots.
    inball : array or None
        Float in-ball counts ``(bs, m)`` (zero for invalid queries); None in kNN mode.

    Raises
    ------
    ValueError
        When ``k`` exceeds the number of points and no kernel answers.
    """
    kernels = adapter.native_kernels(group)
    if kernels is not None:
        out = kernels.neighbourhood(xp, query, points, k, r, priorities, knn)
        if out is not None:
            return out
    if k > points[2].shape[1]:  # the searches take k of the n columns
        raise ValueError(f"k must be at most the number of points ({points[2].shape[1]}), "
                         f"got {k}")
    if chunk_pairs is None:
        chunk_pairs = adapter.chunk_pairs(points[2])
    if pair_dist is not None:
        return chunked_neighbourhood(adapter, xp, group, query, points, k, r, priorities, knn,
                                     chunk_pairs, pair_dist)
    if grid is not False:
        from .cell_list import grid_neighbourhood  # looked up per call: tests spy on it

        out = grid_neighbourhood(xp, adapter, group, query, points, k, r, priorities, knn,
                                 force=bool(grid), fallback_chunk_pairs=chunk_pairs)
        if out is not None:
            return out
    return chunked_neighbourhood(adapter, xp, group, query, points, k, r, priorities, knn,
                                 chunk_pairs)
