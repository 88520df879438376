"""The LieConv layer of the paper, functional and written once against the array API.

One forward pass: (1) subsample queries by farthest point sampling under the group distance; (2)
find neighbourhoods (random subset of the ball of radius r, or kNN), chunked so the (bs, m, n)
distance matrix is never held whole (a cell list for Euclidean groups on large clouds,
:mod:`lieconv_core.neighbourhoods.cell_list`); (3) update r in training mode; (4) gather neighbours
and embed only the (bs, m, k) selected pairs; (5) weight net with masked batch norm; (6) PointConv
contraction and output linear, mean-normalised; (7) zero invalid queries. Steps 4-6 run in query
chunks of bounded size except in training mode with batch norm. On host backends, steps 4-5 run on
the valid pairs only where at most :data:`COMPACT_MAX_FILL` of the slots are valid (sparse balls,
padding; :attr:`LieConv.compact`), and trailing slots no query uses are dropped.

Dense path: when the neighbourhood size k is at least the number of points n (small clouds such
as the spring systems and molecules), every point is a candidate of every query, so steps 2 and 4
need no indices: a (bs, m, n) pair mask, the embeddings of all pairs, and the contraction as one
(m·16, n) @ (n, c) product per cloud instead of m·bs products of k-long vectors. The same pairs
as the indexed path, summed in point order instead of slot order.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from array_api_compat import device as _device

from .._backend import index_dtype
from ..adapter import CHUNK_ELEMS_DEVICE
from ..cloud import Cloud, take
from ..groups import as_group
from ..groups.base import Group
from ..neighbourhoods import dense_neighbourhood, fps, neighbourhood
from ..parallel import dp_mean_rows, dp_sum
from .layers import bn_init, bn_scale, bn_swish, linear, linear_init, zero_invalid
from .module import Ctx, Model

#: width of the weight net's hidden layers and of its output (the "c_m" of the PointConv trick)
WEIGHTNET_HIDDEN = 32
WEIGHTNET_OUT = 16
#: state entries that cache work for the next call (FPS indices of a fixed grid, shaped by the
#: batch): not part of a trained model, so checkpoints leave them out
CACHE_KEYS = frozenset({"fps_idx"})
#: radius controller: initial radius and gain
R_INIT = 2.0
R_GAIN = 0.5
#: the eval radius is the running average of the training radius: the mean of the updates so far
#: while there are fewer than 1 / R_AVG_MOMENTUM, then an exponential average with this weight
R_AVG_MOMENTUM = 0.02
#: eval mode / no BN: bound (elements) on the (bs, chunk, k, width) pair arrays of one query chunk
#: on accelerators (2^24: 64 MiB per float32 array); the adapter's ``chunk_elems`` picks per device
#: (2^21 in host memory, see :data:`lieconv_core.adapter.CHUNK_ELEMS_HOST`)
CHUNK_ELEMS = CHUNK_ELEMS_DEVICE
#: automatic query chunks (``chunk_elems`` None) hold at least this many rows (bs·queries): the
#: output linear is one (rows, 16·chin) @ (16·chin, chout) GEMM per chunk, and narrower ones run
#: slower (BLAS is less efficient on GEMMs with few rows)
MIN_CHUNK_ROWS = 512
#: automatic compaction (``LieConv.compact`` None): the weight net runs on the valid pairs only
#: when at most this fraction of the (query, slot) pairs is valid
COMPACT_MAX_FILL = 0.8
#: the all-pairs log / distance cache (:meth:`LieConv.pairs`) is used up to this many pairs
#: (bs·n²; 2^21 pairs of SE(3) logs and distances: 56 MiB in float32)
PAIR_CACHE_MAX = 1 << 21


class _Neighbours(NamedTuple):
    """A layer's neighbourhoods: indices (bs, m, k) or None (dense), the pair mask (bs, m, k) or
    (bs, m, n), in-ball counts (bs, m) or None (kNN), shared pair logs or None, whether dense,
    and the radius used."""

    idx: Any
    mask: Any
    counts: Any
    log: Any
    dense: bool
    r: Any


class LieConv(Model):
    """LieConv(chin -> chout) on lifted clouds of ``group``.

    Parameters
    ----------
    chin, chout : int
        Channels in and out.
    group : Group or str
        A :class:`lieconv_core.groups.Group`, or its name (``groups.names()``).
    nbhd : int, float or None
        Neighbourhood size k (clipped to the number of points); None or inf means all points.
    ds_frac : float
        Fraction of points kept as queries (farthest point sampling) when < 1.
    fill : float
        Target fraction of points inside the ball, for the radius controller (capped at 1, as
        in the original: a larger target cannot be reached).
    knn : bool
        Use the k nearest points instead of a random subset of the ball.
    mean : bool
        Divide by the number of valid neighbours.
    bn : bool
        Masked batch norm in the weight net.
    cache : bool
        Reuse the FPS indices of the first call (fixed grids such as images).

    Notes
    -----
    ``apply(params, state, cloud, ctx)`` maps a lifted :class:`~lieconv_core.Cloud` with
    ``(bs, n, chin)`` values to one with ``(bs, m, chout)`` values, m = round(ds_frac·n).

    Memory: neighbour search through :func:`lieconv_core.neighbourhoods.neighbourhood` (a cell
    list for T(d)/Trivial(d) on large clouds, otherwise chunked); the aggregation runs in query
    chunks of at most ``chunk_elems`` (default None: the adapter's choice for the device, 2^21 in
    host memory and 2^24 on accelerators; settable per instance) pair-array elements, except in
    training mode with ``bn=True``, where the batch statistics need all pairs at once (that path
    is unchunked). With k >= n the layer takes the dense path (module
    docstring; ``dense`` overrides the choice).
    """

    chunk_elems: int | None = None
    #: None: run the weight net on the valid pairs only — gathered into a flat list, its output
    #: put back with zeros at the invalid slots — when the adapter allows it
    #: (:meth:`ReferenceAdapter.compact_pairs`: host memory, not jax) and at most
    #: :data:`COMPACT_MAX_FILL` of the pairs are valid (balls holding fewer than k points,
    #: padding); True: whenever the adapter allows it; False: never. Unless False, trailing
    #: neighbour slots that no query uses are dropped too (same adapters). The same pairs and
    #: sums either way.
    compact: bool | None = None
    #: None: the dense path (no neighbour indices, one (m·16, n) @ (n, c) product per cloud)
    #: whenever k >= n; True / False force it on or off (settable per instance or class)
    dense: bool | None = None
    #: embed [log(u⁻¹v), q_v, q_u] instead of [log(v⁻¹u), q_u, q_v] for query u and neighbour
    #: v: the original's orientation in layers after an odd number of subsampling layers (its
    #: subsampled pair tensor ``abq_pairs[B, idx][B, :, idx]`` has the query axis second; see
    #: :class:`~lieconv_core.nn.LieResNet`'s ``original_pairs`` and docs/original.md)
    swap_pairs: bool = False

    def __init__(self, chin: int, chout: int, group: Group | str, nbhd: int | float | None = 32,
                 ds_frac: float = 1.0, fill: float = 1 / 3, knn: bool = False,
                 mean: bool = False, bn: bool = False, cache: bool = False):
        if chin < 1 or chout < 1:
            raise ValueError(f"chin and chout must be >= 1, got {chin}, {chout}")
        if not 0 < ds_frac <= 1:
            raise ValueError(f"ds_frac must be in (0, 1], got {ds_frac}")
        if nbhd is not None and not nbhd >= 1:
            raise ValueError(f"nbhd must be >= 1 (or None for all points), got {nbhd}")
        self.chin, self.chout, self.group = int(chin), int(chout), as_group(group)
        self.nbhd = None if nbhd is None or math.isinf(nbhd) else int(nbhd)
        self.ds_frac, self.fill = float(ds_frac), min(float(fill), 1.0)
        self.knn, self.mean, self.bn, self.cache = bool(knn), bool(mean), bool(bn), bool(cache)

    # --- parameters ------------------------------------------------------------------------------
    def init_host(self, gen: np.random.Generator) -> tuple[dict, dict]:
        widths = [self.group.embed_dim, WEIGHTNET_HIDDEN, WEIGHTNET_HIDDEN, WEIGHTNET_OUT]
        params: dict[str, Any] = {"wn": {}}
        # "r_train": the controller's radius, used in training; "r": its running average
        # ("r_count" updates so far), used in eval (on grids the controller saw-tooths across a
        # shell of equal distances, and its last value can be far from what training saw)
        state: dict[str, Any] = {"r": np.asarray(R_INIT), "r_train": np.asarray(R_INIT),
                                 "r_count": np.asarray(0.0), "wn": {}}
        for i in range(3):
            layer = {"lin": linear_init(gen, widths[i], widths[i + 1])}
            if self.bn:
                layer["bn"], state["wn"][str(i)] = bn_init(widths[i + 1])
            params["wn"][str(i)] = layer
        params["out"] = linear_init(gen, WEIGHTNET_OUT * self.chin, self.chout)
        return params, state

    # --- forward --------------------------------------------------------------------------------
    def forward(self, params: dict, state: dict, cloud: Cloud, train: bool = False,
                rng: Any = None) -> tuple[Cloud, dict]:
        """Apply the layer stand-alone, building the context from the arrays.

        Typical use: ``params, state = conv.init(seed, dtype, backend)``, then
        ``out_cloud, state = conv.forward(params, state, lift(group, coords, values, mask))``.

        Parameters
        ----------
        params : dict
            The layer's parameters (:meth:`init_host` structure, arrays of the cloud's backend).
        state : dict
            The layer's state (radius controller, BN statistics, cached FPS indices).
        cloud : Cloud
            A lifted cloud: elements ``(bs, n, E)``, values ``(bs, n, chin)``, mask ``(bs, n)``
            bool.
        train : bool
            Training mode (batch statistics, radius updates, random subsets of the ball).
        rng : object
            None (seed 0), an int seed, a ``numpy.random.Generator`` or a Draws object
            (:func:`lieconv_core.random.as_draws`).

        Returns
        -------
        cloud : Cloud
            The query cloud, values ``(bs, m, chout)``.
        state : dict
            The new state.
        """
        from .._backend import array_namespace
        from ..random import as_draws

        xp = array_namespace(cloud.elems, cloud.values, cloud.mask)
        return self.apply(params, state, cloud, self.context(xp, train, as_draws(rng)))

    def num_queries(self, n: int) -> int:
        """Number of queries kept of ``n`` points: round(ds_frac·n), at least one (none of none).

        Parameters
        ----------
        n : int
            Points per cloud (padding included).

        Returns
        -------
        int
            The number of queries m.
        """
        return n if self.ds_frac >= 1 else min(n, max(1, int(round(self.ds_frac * n))))

    def query_indices(self, state: dict, cloud: Cloud, ctx: Ctx) -> tuple[Any, dict]:
        """FPS indices of the queries; may update the cache.

        Parameters
        ----------
        state : dict
            The layer's state; ``state["fps_idx"]`` is reused when ``cache`` is set and its shape
            fits.
        cloud : Cloud
            The lifted input cloud, mask ``(bs, n)``.
        ctx : Ctx
            Namespace, adapter, mode and draws (the start of each FPS is drawn uniformly).

        Returns
        -------
        idx : array or None
            Integer indices ``(bs, m)``, or None without subsampling (m == n).
        state : dict
            The state, with ``"fps_idx"`` set when ``cache`` is on.
        """
        xp = ctx.xp
        bs, n = cloud.mask.shape
        m = self.num_queries(n)
        if m == n:
            return None, state
        cached = state.get("fps_idx")
        if self.cache and cached is not None and tuple(cached.shape) == (bs, m):
            return cached, state
        u = ctx.draws.uniform(xp, (bs,), cloud.elems.dtype, _device(cloud.mask))
        idx = fps(ctx.adapter, xp, self.group, cloud.elems, cloud.q, cloud.mask, m, u)
        if self.cache:
            state = {**state, "fps_idx": idx}
        return idx, state

    def subsample(self, cloud: Cloud, idx: Any, ctx: Ctx) -> Cloud:
        """The query cloud at FPS indices; queries beyond a cloud's valid count are masked off.

        Parameters
        ----------
        cloud : Cloud
            The lifted input cloud with n entries.
        idx : array or None
            Integer indices ``(bs, m)`` from :meth:`query_indices`; None: no subsampling.
        ctx : Ctx
            Namespace and adapter.

        Returns
        -------
        Cloud
            ``cloud`` itself when ``idx`` is None, else the cloud's entries at ``idx`` (m entries).
        """
        if idx is None:
            return cloud
        xp = ctx.xp
        sub = take(ctx.adapter, xp, cloud, idx)
        nvalid = xp.sum(xp.astype(cloud.mask, index_dtype(xp)), axis=1)
        m = idx.shape[1]
        keep = xp.arange(m, dtype=index_dtype(xp), device=_device(idx))[None, :] < nvalid[:, None]
        return sub._replace(mask=sub.mask & keep)

    def apply(self, params: dict, state: dict, cloud: Cloud, ctx: Ctx,
              idx: Any = None, pairs: tuple | None = None) -> tuple[Cloud, dict]:
        """Map a cloud with values ``(bs, n, chin)`` to its queries with values ``(bs, m, chout)``.

        The aggregation takes one of two paths: :meth:`_aggregate_all` (batch-norm training:
        statistics over all valid pairs at once) or :meth:`_aggregate_chunks` (queries in chunks;
        within a chunk the compacted, dense or indexed weight net).

        Parameters
        ----------
        params : dict
            The layer's parameters.
        state : dict
            The layer's state (radius controller, BN statistics, cached FPS indices).
        cloud : Cloud
            A lifted cloud: elements ``(bs, n, E)``, orbits ``(bs, n, dq)`` or None, values
            ``(bs, n, chin)``, mask ``(bs, n)`` bool.
        ctx : Ctx
            Namespace, adapter, mode and draws.
        idx : array or None
            Query indices ``(bs, m)`` chosen by the caller; None: :meth:`query_indices`.
        pairs : tuple or None
            :meth:`pairs` of this cloud under this layer's group, computed once by the caller and
            shared by the layers that see the same elements (LieResNet does); used only when the
            layer does not subsample.

        Returns
        -------
        cloud : Cloud
            The query cloud, values ``(bs, m, chout)``, zero at invalid queries.
        state : dict
            The new state (radius controller and BN statistics updated in training mode).

        Raises
        ------
        ValueError
            When the cloud's values do not have ``chin`` channels.
        """
        xp = ctx.xp
        if cloud.values.shape[-1] != self.chin:
            raise ValueError(f"LieConv expects {self.chin} input channels, "
                             f"got {cloud.values.shape[-1]}")
        if 0 in tuple(cloud.mask.shape):
            return self._empty_apply(xp, cloud), state
        if idx is None:
            idx, state = self.query_indices(state, cloud, ctx)
        query = self.subsample(cloud, idx, ctx)
        nb = self._neighbours(state, query, cloud, ctx, pairs if idx is None else None)
        new_state = dict(state)
        if ctx.train and not self.knn:
            new_state.update(self._update_radius(xp, state, nb.r, nb.counts, query.mask,
                                                 cloud.mask))
        # padded points may hold anything (NaN included): the aggregation needs finite values
        values = zero_invalid(xp, cloud.values, cloud.mask)
        if self.bn and ctx.train:
            out, new_state["wn"] = self._aggregate_all(params, state, query, cloud, values, nb,
                                                       ctx)
        else:
            out = self._aggregate_chunks(params, state, query, cloud, values, nb, ctx)
        if self.mean:
            cnt = xp.sum(xp.astype(nb.mask, out.dtype), axis=-1)[..., None]
            out = out / xp.maximum(cnt, xp.ones_like(cnt))
        out = zero_invalid(xp, out, query.mask)
        return query._replace(values=out), new_state

    def _neighbours(self, state: dict, query: Cloud, cloud: Cloud, ctx: Ctx,
                    pairs: tuple | None) -> _Neighbours:
        """The neighbourhood of every query: the dense pair mask (k >= n, or ``dense``) or the
        indexed search, then, where the adapter allows host reads, the empty slots dropped."""
        xp, ad = ctx.xp, ctx.adapter
        bs, n = cloud.mask.shape
        k = n if self.nbhd is None else min(self.nbhd, n)
        dev = _device(cloud.mask)
        if self.knn or k >= n:
            # every in-ball point is taken anyway: the order is irrelevant, so no draws are needed
            prio = xp.arange(n, dtype=index_dtype(xp), device=dev)
            prio = xp.broadcast_to(prio[None, :], (bs, n))
        else:
            prio = ctx.draws.priorities(xp, (bs, n), dev)
        r = state["r_train"] if ctx.train and "r_train" in state else state["r"]
        qt, pt = (query.elems, query.q, query.mask), (cloud.elems, cloud.q, cloud.mask)
        dense = k >= n if self.dense is None else bool(self.dense)
        pd = {} if pairs is None else {"pair_dist": pairs[1]}
        log = None if pairs is None else pairs[0]  # pair logs, read by the embeddings
        if dense:
            # every point is a candidate: a (bs, m, n) pair mask instead of indices
            nbr_idx = None
            nbr_mask, counts = dense_neighbourhood(
                ad, xp, self.group, qt, pt, self.group.search_radius(r), self.knn, **pd)
        else:
            nbr_idx, nbr_mask, counts = neighbourhood(
                ad, xp, self.group, qt, pt, k, self.group.search_radius(r), prio, self.knn, **pd)
        if not dense and self.compact is not False and ad.compact_pairs(nbr_mask):
            nbr_idx, nbr_mask = _drop_empty_slots(xp, nbr_idx, nbr_mask)
        return _Neighbours(nbr_idx, nbr_mask, counts, log, dense, r)

    def _aggregate_all(self, params: dict, state: dict, query: Cloud, cloud: Cloud, values: Any,
                       nb: _Neighbours, ctx: Ctx) -> tuple[Any, dict]:
        """Batch-norm training: statistics over all valid pairs, so one pass over all queries,
        unchunked (compacted to the valid pairs where that pays)."""
        xp, ad = ctx.xp, ctx.adapter
        comp = self._compaction(xp, ad, nb.mask)
        if comp is None:
            emb = self._embed(xp, ad, query, cloud, nb.idx, nb.log)
        else:
            emb = self._embed_valid(xp, query, cloud, nb.idx, comp[0], nb.log)
        return self._aggregate(params, state["wn"], emb, values, nb.idx, nb.mask, ctx, comp)

    def _aggregate_chunks(self, params: dict, state: dict, query: Cloud, cloud: Cloud,
                          values: Any, nb: _Neighbours, ctx: Ctx) -> Any:
        """No batch statistics: queries are independent, so process them in chunks that keep
        the (chunk, k, ·) pair arrays within ``chunk_elems`` elements; each chunk runs the
        compacted, dense or indexed weight net and contraction."""
        xp, ad = ctx.xp, ctx.adapter
        bs = cloud.mask.shape[0]
        layers = [self._folded(xp, params["wn"][str(i)], state.get("wn", {}).get(str(i)))
                  for i in range(3)]
        m = nb.mask.shape[1]
        step = self.query_chunk(bs, m, nb.mask.shape[2], ad.chunk_elems(values))
        out_lin = self._out_linear(xp, params["out"], nb.dense)
        wm = {}  # the weight-major output linear, for compacted chunks

        def chunk(qe, qq, idx, cmask, clog):
            """One chunk of queries (elements, orbits, neighbour indices, pair mask and pair
            logs, each sliced along the query axis) -> output values (bs, s, chout)."""
            qc = Cloud(qe, qq, None, None)
            comp = self._compaction(xp, ad, cmask)
            if comp is not None:
                emb = self._embed_valid(xp, qc, cloud, idx, comp[0], clog)
                w = _expand(xp, ad.weightnet(xp, layers, emb), comp[1], tuple(cmask.shape))
                partial = self._contract_wm(xp, ad, w, values, idx)
                if not wm:
                    wm.update(self._out_linear(xp, params["out"], True))
                return linear(wm, partial)
            emb = self._embed(xp, ad, qc, cloud, idx, clog)
            if nb.dense:
                partial = ad.dense_pointconv(xp, layers, emb, values, cmask)
                partial = xp.reshape(partial, (*partial.shape[:2], -1))
            else:
                partial = ad.pointconv(xp, layers, emb, values, idx, cmask)
            return linear(out_lin, partial)

        return ad.map_query_chunks(xp, chunk, (query.elems, query.q, nb.idx, nb.mask, nb.log),
                                   step)

    def _empty_apply(self, xp: Any, cloud: Cloud) -> Cloud:
        """The query cloud of a cloud with no entries (bs = 0 or n = 0): its first
        :meth:`num_queries` entries with zero values (bs, m, chout)."""
        bs, n = cloud.mask.shape
        m = self.num_queries(n)
        query = Cloud(*(None if a is None else a[:, :m, ...] for a in cloud))
        zeros = xp.zeros((bs, m, self.chout), dtype=cloud.values.dtype,
                         device=_device(cloud.mask))
        return query._replace(values=zeros)

    def pairs(self, xp: Any, cloud: Cloud) -> tuple[Any, Any] | None:
        """Logs and distances of every pair of a cloud's elements under this layer's group.

        The result goes to :meth:`apply` of every layer that sees these elements without
        subsampling:
        without subsampling every layer of a network sees the same elements, so the pair logs are
        computed once per forward instead of once per layer, by the same arithmetic as
        ``pair_distance`` and ``pair_embed``.

        Parameters
        ----------
        xp : module
            The array namespace.
        cloud : Cloud
            A lifted cloud: elements ``(bs, n, E)``, orbits ``(bs, n, dq)`` or None.

        Returns
        -------
        tuple or None
            ``(log (bs, n, n, lie_dim), distance (bs, n, n))``, or None where sharing does not pay:
            Euclidean groups (T(d), Trivial(d): distances are a few differences, computed on the
            fly),
            groups whose embedding does not come from the log, and clouds with more than
            :data:`PAIR_CACHE_MAX` pairs.
        """
        g = self.group
        bs, n = cloud.mask.shape
        if g.euclidean_distance or bs * n * n > PAIR_CACHE_MAX or not g.embeds_from_log:
            return None
        e, q = cloud.elems, cloud.q
        eu, ev = e[:, :, None, :], e[:, None, :, :]
        qu, qv = (None, None) if q is None else (q[:, :, None, :], q[:, None, :, :])
        log = g.pair_log(xp, eu, ev)
        if g.distance_from_log_only:
            dist = g.distance_from_log(xp, log, qu, qv)
        else:  # a group with its own distance formula (SE(2)): the one the searches use
            dist = g.pair_distance(xp, eu, qu, ev, qv)
        return log, dist

    def query_chunk(self, bs: int, m: int, k: int, default: int = CHUNK_ELEMS) -> int:
        """Queries per chunk of the eval-mode / no-BN aggregation.

        The widest pair arrays, ``(bs, chunk, k, max(32, chin, embed_dim))`` weight-net activations
        and gathered values, hold at most ``chunk_elems`` elements (at least one query per chunk).
        With ``chunk_elems`` None the bound is ``default`` (the adapter's), raised where needed so
        that a chunk has at least :data:`MIN_CHUNK_ROWS` rows (bs·chunk) for the output linear's
        GEMM.

        Parameters
        ----------
        bs : int
            Batch size.
        m : int
            Number of queries.
        k : int
            Neighbour slots per query.
        default : int
            Element bound used when ``chunk_elems`` is None.

        Returns
        -------
        int
            Queries per chunk, between 1 and ``m``.
        """
        width = max(WEIGHTNET_HIDDEN, self.chin, self.group.embed_dim)
        if self.chunk_elems is not None:
            return max(1, min(m, int(self.chunk_elems) // max(1, bs * k * width)))
        step = max(default // max(1, bs * k * width), -(-MIN_CHUNK_ROWS // bs))
        return max(1, min(m, step))

    def _out_linear(self, xp, out: dict, weight_major: bool) -> dict:
        """The output linear for the contraction's layout: channel-major rows (c·cm + a) as
        stored, or, for a weight-net-major P (a·chin + c: the dense contraction, and the
        training-mode one), the same weight with its rows permuted (a (cm·chin, chout) copy,
        small next to P)."""
        if not weight_major:
            return out
        w = xp.reshape(out["w"], (self.chin, WEIGHTNET_OUT, self.chout))
        w = xp.reshape(xp.permute_dims(w, (1, 0, 2)), (WEIGHTNET_OUT * self.chin, self.chout))
        return {"w": w, "b": out["b"]}

    def _embed(self, xp, ad, query, cloud, nbr_idx, log=None):
        """Pair embeddings (bs, s, k, embed_dim) of the queries (query.elems/q (bs, s, ·)) and
        their neighbours nbr_idx (bs, s, k); nbr_idx None (dense): of the queries and every
        point, (bs, s, n, embed_dim). With ``log`` (bs, s, n, lie_dim) (the pair logs of
        :meth:`pairs`, sliced to the queries) the logs are read from there."""
        qu = None if query.q is None else query.q[:, :, None, :]
        if self.swap_pairs:
            return self._embed_swapped(xp, ad, query, cloud, nbr_idx)
        if log is not None:
            if nbr_idx is None:
                return self.group.embed_from_log(
                    xp, log, qu, None if cloud.q is None else cloud.q[:, None, :, :])
            bs, s, n, dl = log.shape
            k = nbr_idx.shape[-1]
            a = ad.gather(xp, xp.reshape(log, (bs * s, n, dl)), xp.reshape(nbr_idx, (bs * s, k)))
            return self.group.embed_from_log(
                xp, xp.reshape(a, (bs, s, k, dl)), qu,
                None if cloud.q is None else ad.gather(xp, cloud.q, nbr_idx))
        if nbr_idx is None:
            return self.group.pair_embed(
                xp, query.elems[:, :, None, :], qu,
                cloud.elems[:, None, :, :], None if cloud.q is None else cloud.q[:, None, :, :])
        return self.group.pair_embed(
            xp, query.elems[:, :, None, :], qu, ad.gather(xp, cloud.elems, nbr_idx),
            None if cloud.q is None else ad.gather(xp, cloud.q, nbr_idx))

    def _embed_swapped(self, xp, ad, query, cloud, nbr_idx):
        """:meth:`_embed` with the roles swapped, [log(u⁻¹v), q_v, q_u] for query u and
        neighbour v (:attr:`swap_pairs`): (bs, s, k or n, embed_dim)."""
        qu = None if query.q is None else query.q[:, :, None, :]
        if nbr_idx is None:
            v, qv = cloud.elems[:, None, :, :], None if cloud.q is None else cloud.q[:, None]
        else:
            v = ad.gather(xp, cloud.elems, nbr_idx)
            qv = None if cloud.q is None else ad.gather(xp, cloud.q, nbr_idx)
        return self.group.pair_embed(xp, v, qv, query.elems[:, :, None, :], qu)

    def _aggregate(self, params, wn_state, emb, values, nbr_idx, nbr_mask, ctx, comp=None):
        """Training mode with batch norm: weight net on the pair embeddings (bs, m, k, d) with
        masked batch statistics -> w (bs, m, k, 16), P = Σ_k values[nbr] ⊗ w (bs, m, chin·16) and
        the output linear -> (bs, m, chout). With ``comp`` (:meth:`_compaction`) emb holds the
        valid pairs only, (V, d): statistics over all of them, w put back with zeros elsewhere.
        (Without batch statistics — bn=False, or eval mode, where BN is an affine map folded into
        the preceding linear layer — ``apply`` calls the adapter's fused ``pointconv`` per query
        chunk instead.)
        """
        xp, ad = ctx.xp, ctx.adapter
        h, new_wn = emb, {}
        mask = None if comp is not None else nbr_mask
        for i in range(3):
            layer = params["wn"][str(i)]
            h, new_wn[str(i)] = bn_swish(xp, layer["bn"], wn_state[str(i)],
                                         linear(layer["lin"], h), mask, True)
        if comp is not None:
            h = _expand(xp, h, comp[1], tuple(nbr_mask.shape))
        # masked BN leaves w exactly zero at invalid slots (mask None: no zeroing pass)
        partial = self._contract_wm(xp, ad, h, values, nbr_idx)
        return linear(self._out_linear(xp, params["out"], True), partial), new_wn

    @staticmethod
    def _contract_wm(xp, ad, w, values, nbr_idx):
        """Weight-major P (bs, s, 16·chin) of weights w (bs, s, k, 16) that are already zero at
        invalid slots, neighbours nbr_idx (bs, s, k) or None (dense) (the weight-major
        contraction, output a·chin + c, gives autograd contiguous gradients for the gathered
        values; the channel-major one copies a transposed (bs, s, k, chin) array)."""
        if nbr_idx is None:
            partial = ad.dense_contract(xp, w, values, None)
        else:
            partial = ad.contract(xp, w, values, nbr_idx, None, weight_major=True)
        return xp.reshape(partial, (*partial.shape[:2], -1))

    def _compaction(self, xp, ad, nbr_mask):
        """(sel, expand) for the valid pairs of nbr_mask (bs, s, k): sel (V,) their positions in
        the flattened mask, expand (bs·s·k,) each pair's row in [valid rows; one zero row] (V for
        invalid pairs) — or None: compaction off, not allowed by the adapter, or (``compact``
        None) more than :data:`COMPACT_MAX_FILL` of the pairs valid."""
        if self.compact is False or not ad.compact_pairs(nbr_mask):
            return None
        flat = xp.reshape(nbr_mask, (-1,))
        if flat.shape[0] == 0:
            return None
        pos = xp.cumulative_sum(xp.astype(flat, index_dtype(xp)))
        nv = int(pos[-1])  # one host read: the number of valid pairs
        if self.compact is None and nv > COMPACT_MAX_FILL * flat.shape[0]:
            return None
        return xp.nonzero(flat)[0], xp.where(flat, pos - 1, xp.full_like(pos, nv))

    def _embed_valid(self, xp, query, cloud, nbr_idx, sel, log):
        """Embeddings (V, embed_dim) of the pairs at flat positions ``sel`` of the (bs, s, kk)
        slots of the queries (query.elems/q (bs, s, ·); kk = k, or n on the dense path, where
        slot j is point j); the logs come from ``log`` (bs, s, n, lie_dim) (:meth:`pairs`, sliced
        to the queries) when given."""
        bs, n = cloud.mask.shape
        s = query.elems.shape[1]
        kk = n if nbr_idx is None else nbr_idx.shape[2]
        qrow = sel // kk  # row of the query in (bs·s)
        b = qrow // s
        j = sel % kk if nbr_idx is None else xp.take(xp.reshape(nbr_idx, (-1,)), sel, axis=0)
        prow = b * n + j  # row of the neighbour in (bs·n)

        def rows(a, r):
            return None if a is None else xp.take(xp.reshape(a, (-1, a.shape[-1])), r, axis=0)

        qu, qv = rows(query.q, qrow), rows(cloud.q, prow)
        if self.swap_pairs:
            return self.group.pair_embed(xp, rows(cloud.elems, prow), qv,
                                         rows(query.elems, qrow), qu)
        if log is not None:  # queries are the points (no subsampling)
            return self.group.embed_from_log(xp, rows(log, qrow * n + j), qu, qv)
        return self.group.pair_embed(xp, rows(query.elems, qrow), qu, rows(cloud.elems, prow), qv)

    @staticmethod
    def _folded(xp, layer, bn_state):
        """(W, b) of linear followed by eval-mode BN (an affine map), folded into one linear."""
        w, b = layer["lin"]["w"], layer["lin"]["b"]
        if bn_state is None:
            return w, b
        scale = bn_scale(xp, layer["bn"]["w"], bn_state["var"])
        return w * scale, (b - bn_state["mean"]) * scale + layer["bn"]["b"]

    def _update_radius(self, xp, state, r, counts, qmask, pmask) -> dict:
        """The controller's step r <- r + 0.5 (fill − observed fill), where observed fill = mean
        in-ball count per valid query / mean number of valid points per cloud, and the running
        average of r (:data:`R_AVG_MOMENTUM`): the new "r_train", "r" and "r_count". Stays on the
        device (no host sync)."""
        dt = counts.dtype
        # global-batch statistics under data-parallel training (lieconv_core.parallel)
        nq = dp_sum(xp.sum(xp.astype(qmask, dt)))
        per_query = dp_sum(xp.sum(counts)) / xp.maximum(nq, xp.ones_like(nq))
        npts = dp_mean_rows(xp, xp.sum(xp.astype(pmask, dt), axis=1))
        observed = per_query / xp.maximum(npts, xp.ones_like(npts))
        r_new = r + R_GAIN * (self.fill - observed)
        if "r_count" not in state:  # a state without the average: the radius alone
            return {"r": r_new}
        count = state["r_count"] + 1
        weight = xp.maximum(1 / count, xp.full_like(count, R_AVG_MOMENTUM))
        return {"r_train": r_new, "r": state["r"] + weight * (r_new - state["r"]),
                "r_count": count}


def _drop_empty_slots(xp: Any, idx: Any, mask: Any) -> tuple[Any, Any]:
    """Neighbour indices and mask (bs, m, k) without the trailing slots that no query uses (balls
    holding fewer than k points: the search fills slots in-ball points first); at least one slot
    stays. One host read."""
    k = mask.shape[-1]
    used = xp.any(xp.reshape(mask, (-1, k)), axis=0)
    rank = xp.arange(1, k + 1, dtype=index_dtype(xp), device=_device(mask))
    kk = max(1, int(xp.max(xp.where(used, rank, xp.zeros_like(rank)))))
    if kk == k:
        return idx, mask
    return idx[..., :kk], mask[..., :kk]


def _expand(xp: Any, w: Any, expand: Any, shape: tuple) -> Any:
    """Weights (V, c) of the valid pairs -> (*shape, c) with zeros at the invalid slots
    (``expand`` from :meth:`LieConv._compaction`)."""
    zero = xp.zeros((1, w.shape[-1]), dtype=w.dtype, device=_device(w))
    return xp.reshape(xp.take(xp.concat([w, zero], axis=0), expand, axis=0), (*shape, w.shape[-1]))
