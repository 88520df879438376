"""Cell-list (uniform grid) neighbour search for groups whose distance is Euclidean on the
elements — T(d), Trivial(d) and coordinate subgroups of T(d) (Tx, Ty), with d <= 3 — and, in ball
mode, for groups whose distance is bounded below by c·‖x_u − x_v‖, x the point an element stands
for (:meth:`Group.position_bound`; SE(2) and SE(3), c = 1 − α).

The chunked search of :func:`lieconv_core.neighbourhoods.chunked.chunked_neighbourhood` looks at
every (query, point) pair: O(m·n) work, which caps a layer at tens of thousands of points. Here the
points of every cloud are binned into cubic cells of side h, sorted by cell id (one argsort), and a
query only looks at the points of the 3^d cells around its own (``searchsorted`` on the sorted cell
ids gives each row of 3 consecutive cells as one contiguous range; the rows are padded to the
longest row of the chunk). Work and memory are O(m·W) with W ≈ 3^d · (points per cell), processed
in query chunks of at most ``chunk_pairs`` (query, candidate) pairs.

**Same answer as the chunked search, exactly** (indices, masks and counts, not just the same sets):

* Ball mode (h = (r / c)·(1 + 2⁻¹⁰), c = 1 for Euclidean distances): a point with d < r has
  ‖x − x_query‖ < r / c, so it differs from the query by less than h in every coordinate and lies
  in the 3^d block of cells (elements are binned by their position x); the margin absorbs the
  rounding of the distance (a few ulps) and of the float64 cell coordinates. The distance of each
  candidate is computed by the same ``group.pair_distance`` expression (from the elements'
  :meth:`Group.distance_features`, gathered per candidate), elementwise, so ``d < r``
  decides as in the reference (bit for bit where the expression is correctly rounded, as the
  Euclidean one is; transcendental functions such as SE(2)'s sin may differ by an ulp between a
  library's vector and scalar loops, which can only matter for a pair within an ulp of r).
  The reference picks the k in-ball points of smallest priority, then fills the remaining slots
  with the *not selected* points of smallest priority (masked off). With priorities a permutation
  (checked; otherwise the grid declines), those fill points all have priority < k, i.e. they are
  among ``argsort(prio)[:k]``, which every query also scores. One sort of the W + k scores per query
  reproduces the reference order (scores are distinct).
* kNN mode: the cell side comes from the cloud's density (≈ 2k/V_d points per cell volume h^d);
  any point outside the 3^d block is at distance ≥ h, so if the k-th smallest quantised candidate
  distance is below quantise(h·(1 − 2⁻¹⁰)) the top k (with ties to the lower index: candidates are
  sorted by (quantised distance, index)) equals the reference's. Queries where that does not hold
  retry with blocks of 5^d, 9^d, ... cells; queries still unsettled (fewer than k valid points in
  the cloud, or far outliers) go to the chunked reference.

Padded points (mask False) never enter the cells (their coordinates may be anything, NaN
included). Invalid queries get the reference's answer without a search.

**When it is used** (``grid=None`` in ``neighbourhood``, the default): only when all hold —

* the distance is Euclidean on the elements (:func:`euclidean_distance`) and elements have 1..3
  coordinates, or (ball mode only) the group has a :meth:`Group.position_bound`, positions of
  1..3 coordinates and no orbit ids; queries and points share a floating dtype;
* the namespace is not jax: the grid needs data-dependent shapes (cell occupancy, candidate width)
  and host values (r, bounding boxes), which ``jax.jit`` cannot trace; jax keeps the chunked search
  (or its Pallas kernel on GPU);
* the adapter allows host reads on the points' device (``adapter.compact_pairs``): not on GPUs,
  where each host read is a device sync (the grid's host-side binning then costs more than the
  chunked search saves) and the kernels or the chunked search stay on the device, and not under
  ``torch.compile`` (one graph);
* ball mode: r is a scalar (a host float is read: one device sync on GPUs, where the torch/cupy
  kernels normally take the search anyway), finite and > 0, and the priorities are a permutation;
* the dense search would look at more than :data:`GRID_MIN_PAIRS` pairs (bs·m·n;
  :data:`GRID_MIN_PAIRS_BOUNDED` for bounded, non-Euclidean distances, which cost more per pair)
  — below that the chunked search is a few array operations and cheaper than sorting;
* the estimated candidates per query, 3^d · (mean points per occupied cell), are at most
  n / :data:`GRID_MIN_GAIN` — otherwise (r large relative to the extent of the cloud) the grid
  would scan most of the cloud anyway;
* every valid coordinate is finite and the grid has at most 2³¹ cells per axis.

Otherwise :func:`grid_neighbourhood` returns None and the caller runs the chunked search.

For T(d) and Trivial(d) the distance here is the search metric ‖Δx‖ (``group.pair_distance``);
their group distances are the original's α‖Δx‖ and (1 − α)‖Δx‖, and the LieConv layer passes the
radius as r / α or r / (1 − α) (``Group.search_radius``), so every search path, kernels included,
compares the same ‖Δx‖ with the same rescaled radius.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from array_api_compat import device as _device

from .._backend import index_dtype
from .chunked import chunked_neighbourhood

#: auto dispatch: use the grid only when the dense search would look at more pairs (bs·m·n)
GRID_MIN_PAIRS = 1 << 22
#: ... for groups with a position bound (SE(2), SE(3)), whose distance costs several times the
#: Euclidean one per pair, the grid pays on smaller searches: around a million pairs it starts
#: to beat the chunked search (the later layers of the RotMNIST SE(2) network sit near this
#: threshold)
GRID_MIN_PAIRS_BOUNDED = 1 << 20
#: auto dispatch: use the grid only when the estimated candidates per query are <= n / this
GRID_MIN_GAIN = 4
#: at most this many (query, candidate) pairs are held at once (2^19: cache-sized passes, faster
#: on CPUs than larger chunks)
GRID_CHUNK_PAIRS = 1 << 19
#: largest element dimension handled (3^(d-1) ranges per query)
GRID_MAX_DIM = 3
#: relative margin of the cell side over r (ball) and of the guard distance below h (kNN)
CELL_MARGIN = 2.0**-10
#: kNN: expected points in a ball of radius h, in units of k (2: the k-th neighbour is inside the
#: searched block for most queries; the others retry with a larger block)
KNN_BALL_FILL = 2.0
#: kNN: queries not settled once the block has more than this many cell rows go to the reference
KNN_MAX_ROWS = 729
#: most cells per axis (cell coordinates stay exact in float64, keys fit in int64)
MAX_CELLS_PER_AXIS = 1 << 31


def euclidean_distance(group: Any) -> bool:
    """True when ``group.pair_distance(u, qu, v, qv)`` is ‖u − v‖ on the element arrays and ignores
    q, as the group declares (:attr:`lieconv_core.groups.Group.euclidean_distance`)."""
    return bool(group.euclidean_distance)


def cell_bound(group: Any) -> float | None:
    """c > 0 with distance >= c·‖x_u − x_v‖ for the cell coordinates x of the elements (the elements
    themselves for Euclidean distances, else ``group.position``), or None."""
    if euclidean_distance(group):
        return 1.0
    c = group.position_bound()
    return float(c) if c is not None and c > 0 else None


def grid_neighbourhood(xp: Any, adapter: Any, group: Any, query: tuple, points: tuple, k: int,
                       r: Any, priorities: Any, knn: bool, *, force: bool = False,
                       chunk_pairs: int = GRID_CHUNK_PAIRS,
                       fallback_chunk_pairs: int | None = None) -> tuple[Any, Any, Any] | None:
    """The contract of :func:`lieconv_core.neighbourhoods.neighbourhood` through a cell list,
    or None when the grid does not apply (or, unless ``force``, would not pay; see the module
    docstring). ``adapter`` supplies gathers and ``to_numpy``; kNN queries the grid does not
    settle (fewer than k valid points in the cloud, far outliers) go to
    :func:`.chunked.chunked_neighbourhood` (with ``fallback_chunk_pairs``)."""
    qe, qq, qmask = query
    pe, pq, pmask = points
    euclid = euclidean_distance(group)
    bound = cell_bound(group)
    if not adapter.data_dependent_shapes or bound is None:
        return None
    if not euclid and (knn or qq is not None or pq is not None):
        return None  # bounded distances: ball mode on elements without orbit ids
    if len(qe.shape) != 3 or len(pe.shape) != 3:
        return None
    bs, m, E = qe.shape
    n = pe.shape[1]
    D = E if euclid else group.space_dim
    if not (1 <= D <= GRID_MAX_DIM and pe.shape[2] == E and pe.shape[0] == bs and m >= 1
            and 1 <= k <= n and qe.dtype == pe.dtype and qe.dtype in (xp.float32, xp.float64)):
        return None
    if not force and (bs * m * n <= (GRID_MIN_PAIRS if euclid else GRID_MIN_PAIRS_BOUNDED)
                      or not adapter.compact_pairs(pe)):
        return None
    rf = math.nan
    if not knn:
        if priorities is None or tuple(priorities.shape) != (bs, n):
            return None
        if len(getattr(r, "shape", ())) != 0:
            return None
        rf = float(r)
        if not (math.isfinite(rf) and rf > 0):
            return None
    grid = _Grid.build(xp, adapter, group, pe, pmask, qe, qmask, k, rf, knn)
    if grid is None:
        return None
    if not force and grid.candidates_estimate * GRID_MIN_GAIN > n:
        return None
    if knn:
        return grid.knn(group, k, chunk_pairs, fallback_chunk_pairs, query, points)
    return grid.ball(group, k, r, priorities, chunk_pairs)


class _Grid:
    """Points of all clouds sorted by (cloud, cell); queries' cell coordinates."""

    def __init__(self, **kw: Any):
        self.__dict__.update(kw)

    @classmethod
    def build(cls, xp, adapter, group, pe, pmask, qe, qmask, k, rf, knn):
        """Cells over the elements themselves (Euclidean distances) or over ``group.position``;
        ball mode: cell side (r / c)·(1 + margin), c = :func:`cell_bound`."""
        bs, n = pmask.shape
        m = qe.shape[1]
        dev = _device(pmask)
        it = index_dtype(xp)
        f64 = xp.float64
        position = (lambda xp_, e: e) if euclidean_distance(group) else group.position
        bound = cell_bound(group)
        pef = xp.astype(position(xp, pe), f64)
        qef = xp.astype(position(xp, qe), f64)
        D = pef.shape[-1]
        # padded points / invalid queries may hold anything (NaN included): zero them
        pef = xp.where(pmask[..., None], pef, xp.zeros_like(pef))
        qef = xp.where(qmask[..., None], qef, xp.zeros_like(qef))
        if not (bool(xp.all(xp.isfinite(pef))) and bool(xp.all(xp.isfinite(qef)))):
            return None
        inf = xp.full_like(pef, math.inf)
        lo = adapter.to_numpy(xp.min(xp.where(pmask[..., None], pef, inf), axis=1))
        hi = adapter.to_numpy(xp.max(xp.where(pmask[..., None], pef, -inf), axis=1))
        nvalid = adapter.to_numpy(xp.sum(xp.astype(pmask, it), axis=1))
        lo, hi, nvalid = (np.asarray(a) for a in (lo, hi, nvalid))
        has = nvalid[:, None] > 0
        lo = np.where(has, lo, 0.0).astype(np.float64)
        ext = np.where(has, hi - lo, 0.0).astype(np.float64)
        if knn:
            h = np.array([_knn_cell_side(ext[b], int(nvalid[b]), k) for b in range(bs)])
        else:
            h = np.full(bs, rf / bound * (1 + CELL_MARGIN))
        if not np.all(np.isfinite(h) & (h > 0)):
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            per_axis = np.floor(ext / h[:, None]) + 1
        if not np.all(per_axis <= MAX_CELLS_PER_AXIS):
            return None
        dims = [int(v) for v in per_axis.max(axis=0)]
        total = math.prod(dims)
        if total * (bs + 1) >= 1 << 62:
            return None
        strides = [math.prod(dims[i + 1:]) for i in range(D)]

        lo_d = adapter.from_host(xp, lo, f64, dev)[:, None, :]
        h_d = adapter.from_host(xp, h, f64, dev)[:, None, None]
        top = adapter.from_host(xp, np.array(dims, dtype=np.float64) - 1, f64, dev)
        pc = xp.floor((pef - lo_d) / h_d)
        pc = xp.astype(xp.minimum(xp.maximum(pc, xp.zeros_like(pc)), top), it)
        qc = xp.floor((qef - lo_d) / h_d)
        qc = xp.astype(xp.minimum(xp.maximum(qc, -xp.ones_like(qc)), top + 1), it)
        cloud = xp.arange(bs, dtype=it, device=dev)
        key = cloud[:, None] * total
        for i in range(D):
            key = key + pc[..., i] * strides[i]
        key = xp.where(pmask, key, xp.full_like(key, bs * total))  # padding: after every cell
        key = xp.reshape(key, (-1,))
        perm = xp.argsort(key, stable=False)
        skeys = xp.take(key, perm, axis=0)
        nv = int(nvalid.sum())
        occupied = 0
        if nv > 0:
            occupied = 1 + int(xp.sum(xp.astype(skeys[1:nv] != skeys[:nv - 1], it)))
        estimate = 3**D * nv / max(1, occupied)
        rows = xp.arange(bs * m, dtype=it, device=dev)
        # the distances need only the elements' distance features (SE(2): angle and translation,
        # 3 of 9 numbers): the candidates gather those
        pf, qf = group.distance_features(xp, pe), group.distance_features(xp, qe)
        F = pf.shape[-1]
        return cls(xp=xp, adapter=adapter, bs=bs, n=n, m=m, F=F, D=D, dev=dev, it=it, dims=dims,
                   total=total, strides=strides, h=h, perm=perm, skeys=skeys,
                   spf=xp.take(xp.reshape(pf, (bs * n, F)), perm, axis=0),
                   sidx=perm % n, qf=xp.reshape(qf, (bs * m, F)),
                   qc=xp.reshape(qc, (bs * m, D)), qvalid=xp.reshape(qmask, (-1,)),
                   qcloud=rows // m, pf=pf, pmask=pmask, candidates_estimate=estimate)

    # --- candidates ------------------------------------------------------------------------------
    def _ranges(self, rows, reach):
        """Sorted-array ranges of the (2·reach+1)^(D−1) rows of cells around each query:
        starts, lengths (c, R) (length 0 outside the grid and for invalid queries)."""
        xp, D, dims = self.xp, self.D, self.dims
        qc = xp.take(self.qc, rows, axis=0)
        ok0 = xp.take(self.qvalid, rows, axis=0)
        base = xp.take(self.qcloud, rows, axis=0) * self.total
        last = qc[:, D - 1]
        a_lo = xp.maximum(last - reach, xp.zeros_like(last))
        a_hi = xp.minimum(last + reach, xp.full_like(last, dims[D - 1] - 1))
        starts, lens = [], []
        for offs in itertools.product(range(-reach, reach + 1), repeat=D - 1):
            ok = ok0
            lin = base
            for i, o in enumerate(offs):
                a = qc[:, i] + o
                ok = ok & (a >= 0) & (a < dims[i])
                lin = lin + a * self.strides[i]
            st = xp.searchsorted(self.skeys, lin + a_lo, side="left")
            en = xp.searchsorted(self.skeys, lin + a_hi, side="right")
            starts.append(st)
            lens.append(xp.where(ok, en - st, xp.zeros_like(st)))
        return xp.stack(starts, axis=1), xp.stack(lens, axis=1)

    def _chunks(self, rows, reach, chunk_pairs):
        """Yield (rows_c, pos (c, W) into the sorted arrays, cvalid (c, W)) in chunks of at most
        ``chunk_pairs`` pairs (a chunk of one query may exceed it)."""
        xp = self.xp
        total_rows = rows.shape[0]
        R = (2 * reach + 1) ** (self.D - 1)
        step = max(1, chunk_pairs // max(1, int(math.ceil(self.candidates_estimate))))
        s = 0
        while s < total_rows:
            c = min(step, total_rows - s)
            rows_c = rows[s:s + c]
            starts, lens = self._ranges(rows_c, reach)
            L = int(xp.max(lens)) if c else 0
            while c > 1 and c * R * L > chunk_pairs:
                c = max(1, c // 2)
                rows_c, starts, lens = rows_c[:c], starts[:c, :], lens[:c, :]
                L = int(xp.max(lens))
            step = max(1, chunk_pairs // max(1, R * L)) if L else max(step, c)
            ar = xp.arange(L, dtype=self.it, device=self.dev)
            pos = starts[:, :, None] + ar
            cvalid = ar < lens[:, :, None]
            pos = xp.where(cvalid, pos, xp.zeros_like(pos))
            yield rows_c, xp.reshape(pos, (c, R * L)), xp.reshape(cvalid, (c, R * L))
            s += c

    def _candidates(self, group, rows_c, pos, with_index=True):
        """Query distance features (c, F), candidate distances (c, W) and (``with_index``) the
        candidates' indices in their cloud."""
        xp = self.xp
        c, W = pos.shape
        flat = xp.reshape(pos, (-1,))
        cf = xp.reshape(xp.take(self.spf, flat, axis=0), (c, W, self.F))
        qf = xp.take(self.qf, rows_c, axis=0)
        d = group.feature_distance(xp, qf[:, None, :], None, cf, None)
        cidx = xp.reshape(xp.take(self.sidx, flat, axis=0), (c, W)) if with_index else None
        return qf, d, cidx

    # --- ball ----------------------------------------------------------------------------------
    def ball(self, group, k, r, priorities, chunk_pairs):
        xp, ad, bs, n, m = self.xp, self.adapter, self.bs, self.n, self.m
        it, dev = self.it, self.dev
        prio = xp.astype(priorities, it)
        order = xp.argsort(prio, axis=-1, stable=True)
        ranks = xp.arange(n, dtype=it, device=dev)
        if not bool(xp.all(ad.take_along_last(xp, prio, order) == ranks[None, :])):
            return None  # not a permutation: the fill rule below would not hold
        sprio = xp.take(xp.reshape(prio, (-1,)), self.perm, axis=0)
        fidx = order[:, :k]  # the k points of smallest priority (priority j = slot j)
        ff = ad.gather(xp, self.pf, fidx)  # (bs, k, F)
        fm = ad.take_along_last(xp, self.pmask, fidx)
        # their positions in the sorted arrays (every point is there; padding at the end)
        inv = xp.argsort(self.perm, stable=False)
        cloud0 = xp.arange(bs, dtype=it, device=dev)[:, None] * n
        fpos = xp.reshape(xp.take(inv, xp.reshape(fidx + cloud0, (-1,)), axis=0), (bs, k))
        big = 3 * n
        big_arr = xp.full((1, 1), big, dtype=it, device=dev)
        fill_score = xp.arange(k, dtype=it, device=dev) + n
        # queries in the order of their longest cell row: a chunk pads every row to its longest
        # one, so chunks of like queries carry less padding (RotMNIST SE(2), first layer: most
        # queries' rows hold <= 24 points, a few 36, and every FPS-ordered chunk had one of those)
        _, lens = self._ranges(xp.arange(bs * m, dtype=it, device=dev), 1)
        rows = xp.astype(xp.argsort(xp.max(lens, axis=1), stable=True), it)
        idx_parts, mask_parts, cnt_parts = [], [], []
        for rows_c, pos, cvalid in self._chunks(rows, 1, chunk_pairs):
            qf, d, _ = self._candidates(group, rows_c, pos, with_index=False)
            sel = cvalid & (d < r)
            cnt_parts.append(xp.sum(xp.astype(sel, d.dtype), axis=-1))
            cprio = xp.reshape(xp.take(sprio, xp.reshape(pos, (-1,)), axis=0), pos.shape)
            cl = xp.take(self.qcloud, rows_c, axis=0)
            ff_c = xp.take(ff, cl, axis=0)
            df = group.feature_distance(xp, qf[:, None, :], None, ff_c, None)
            inf_ = (xp.take(fm, cl, axis=0) & xp.take(self.qvalid, rows_c, axis=0)[:, None]
                    & (df < r))
            scores = xp.concat([xp.where(sel, cprio, xp.full_like(cprio, big)),
                                xp.where(inf_, big_arr, fill_score)],
                               axis=1)
            cand = xp.concat([pos, xp.take(fpos, cl, axis=0)], axis=1)
            # the k smallest scores are distinct: in-ball priorities (< n) and fill slots (n + j),
            # at least k of them (every in-ball fill point is also an in-ball candidate)
            top = ad.smallest_k_distinct(xp, scores, k)
            chosen = ad.take_along_last(xp, cand, top)
            idx_parts.append(xp.reshape(xp.take(self.sidx, xp.reshape(chosen, (-1,)), axis=0),
                                        chosen.shape))
            mask_parts.append(ad.take_along_last(xp, scores, top) < n)
        back = xp.argsort(rows, stable=True)  # chunk order -> query order
        idx, mask, cnt = (xp.take(_cat(xp, p), back, axis=0)
                          for p in (idx_parts, mask_parts, cnt_parts))
        return (xp.reshape(idx, (bs, m, k)), xp.reshape(mask, (bs, m, k)),
                xp.reshape(cnt, (bs, m)))

    # --- kNN -----------------------------------------------------------------------------------
    def knn(self, group, k, chunk_pairs, fallback_chunk_pairs, query, points):
        from .primitives import quantize

        xp, ad, bs, m, it, dev = self.xp, self.adapter, self.bs, self.m, self.it, self.dev
        guard_h = ad.from_host(xp, self.h * (1 - CELL_MARGIN), self.qf.dtype, dev)
        slot = xp.arange(k, dtype=it, device=dev)
        rows = xp.arange(bs * m, dtype=it, device=dev)
        # invalid queries: the reference sorts all-inf scores -> indices 0..k-1, masked off
        idx_all = xp.broadcast_to(slot[None, :], (bs * m, k))
        todo = rows[self.qvalid]
        done_rows, done_idx = [], []
        reach = 1
        while todo.shape[0] > 0 and (2 * reach + 1) ** (self.D - 1) <= KNN_MAX_ROWS:
            full = reach >= max(self.dims) + 1  # the block covers the whole grid
            guard = quantize(xp, guard_h * reach)
            failed = []
            for rows_c, pos, cvalid in self._chunks(todo, reach, chunk_pairs):
                _, d, cidx = self._candidates(group, rows_c, pos)
                c, W = d.shape
                if W < k:
                    failed.append(rows_c)
                    continue
                score = xp.where(cvalid, quantize(xp, d), xp.full_like(d, math.inf))
                # sort by (score, index): by index first, then stably by score
                o1 = xp.argsort(xp.where(cvalid, cidx, xp.full_like(cidx, self.n)), axis=-1,
                                stable=False)
                o2 = xp.argsort(ad.take_along_last(xp, score, o1), axis=-1, stable=True)[:, :k]
                top = ad.take_along_last(xp, o1, o2)
                kth = ad.take_along_last(xp, score, top[:, k - 1:])[:, 0]
                if full:
                    ok = kth < math.inf
                else:
                    ok = kth < xp.take(guard, xp.take(self.qcloud, rows_c, axis=0), axis=0)
                done_rows.append(rows_c[ok])
                done_idx.append(ad.take_along_last(xp, cidx, top)[ok])
                failed.append(rows_c[~ok])
            todo = _cat(xp, failed) if failed else todo[:0]
            if full:
                break
            reach *= 2
        parts_idx = [idx_all]
        src = rows
        offset = bs * m
        if done_rows:
            done = _cat(xp, done_rows)
            src = _scatter_src(xp, src, done, offset)
            parts_idx.append(_cat(xp, done_idx))
            offset += done.shape[0]
        if todo.shape[0] > 0:  # fewer than k valid points, or far outliers: the reference
            fb_rows, fb_idx = self._reference_rows(todo, k, query, points, fallback_chunk_pairs,
                                                   group)
            src = _scatter_src(xp, src, fb_rows, offset)
            parts_idx.append(fb_idx)
        idx = xp.take(xp.concat(parts_idx, axis=0), src, axis=0)
        idx = xp.reshape(idx, (bs, m, k))
        # as in the reference: is the chosen point valid (and the query valid)
        nbr_mask = ad.gather(xp, self.pmask, idx) & xp.reshape(self.qvalid, (bs, m))[:, :, None]
        return idx, nbr_mask, None

    def _reference_rows(self, rows, k, query, points, chunk_pairs, group):
        """The chunked reference search for the given flat query rows, cloud by cloud."""
        xp, ad = self.xp, self.adapter
        qe, qq, qmask = query
        pe, pq, pmask = points
        kw = {} if chunk_pairs is None else {"chunk_pairs": chunk_pairs}
        out_rows, out_idx = [], []
        cl = rows // self.m
        for b in range(self.bs):
            rb = rows[cl == b]
            if rb.shape[0] == 0:
                continue
            qi = rb - b * self.m
            sub_q = tuple(None if a is None else xp.take(a[b, ...], qi, axis=0)[None, ...]
                          for a in (qe, qq, qmask))
            sub_p = tuple(None if a is None else a[b:b + 1, ...] for a in (pe, pq, pmask))
            idx, _, _ = chunked_neighbourhood(ad, xp, group, sub_q, sub_p, k, None, None, True,
                                              **kw)
            out_rows.append(rb)
            out_idx.append(idx[0, ...])
        return _cat(xp, out_rows), _cat(xp, out_idx)


def _scatter_src(xp, src, rows, offset):
    """src with src[rows[j]] replaced by offset + j, written as a gather (the array API has no
    integer-array assignment): sort ``rows``, ``searchsorted`` each flat row into it."""
    if rows.shape[0] == 0:
        return src
    order = xp.argsort(rows, stable=True)
    srows = xp.take(rows, order, axis=0)
    at = xp.minimum(xp.searchsorted(srows, src, side="left"),
                    xp.full_like(src, rows.shape[0] - 1))
    hit = xp.take(srows, at, axis=0) == src
    return xp.where(hit, xp.take(order, at, axis=0) + offset, src)


def _cat(xp: Any, parts: list) -> Any:
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)


def _knn_cell_side(ext: np.ndarray, nvalid: int, k: int) -> float:
    """Cell side h for kNN: the ball of radius h holds ≈ KNN_BALL_FILL·k points at the cloud's mean
    density over its bounding box (axes of zero extent ignored)."""
    live = ext[ext > 0]
    if nvalid == 0 or live.size == 0:
        return 1.0
    d = live.size
    vol = float(np.prod(live))
    unit_ball = math.pi ** (d / 2) / math.gamma(d / 2 + 1)
    h = (KNN_BALL_FILL * k * vol / (nvalid * unit_ball)) ** (1 / d)
    return max(h, float(live.max()) * 1e-9)
