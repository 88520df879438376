"""The adapter contract: operations the core needs that the array API standard lacks or that
deserve a fused kernel.

:class:`ReferenceAdapter` implements each one in pure array-API code; it is what numpy and
array_api_strict run, and the reference every backend adapter is tested against. Backend adapters
(``lieconv_torch``, ``lieconv_jax``, ``lieconv_cupy``) subclass it and override what they can do
faster. Overrides must return the same numbers (same indices; floats to rounding).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from array_api_compat import array_namespace, to_device
from array_api_compat import device as _device

from ._backend import default_device
from .neighbourhoods import dense as _dense
from .neighbourhoods import search as _search
from .neighbourhoods.primitives import (  # noqa: F401  (re-exported for the backends)
    QUANT,
    concat_parts,
    count_true,
    equal_step,
    first_k_then_rest,
    fps_start,
    offset_rows,
    quantize,
    search_rows,
)

#: bound on the number of (query, point) pairs held at once by the neighbour search
#: (:meth:`ReferenceAdapter.chunk_pairs`). On CPUs its ~25 elementwise passes per chunk run
#: fastest when a chunk's float32 arrays stay within L2/L3 cache: 2^19 pairs (2 MiB per array,
#: noticeably faster than 2^21 on the RotMNIST SE(2) first-layer search, torch and numpy);
#: on accelerators and under jit (XLA fuses the passes) the larger 2^21 chunk, fewer launches.
CHUNK_PAIRS_HOST = 1 << 19
CHUNK_PAIRS = 1 << 21
#: LieConv's aggregation: bound (elements) on the (bs, chunk, k, width) pair arrays of one query
#: chunk (:meth:`ReferenceAdapter.chunk_elems`). On CPUs, 2^21 (8 MiB float32) keeps each
#: temporary within the malloc arena, which reuses it hot, where larger ones are mapped fresh
#: and page-faulted on every allocation (the RotMNIST SE(2) forward is faster on torch and
#: numpy than with 2^24); on accelerators, with caching allocators and launch costs, 2^24.
CHUNK_ELEMS_HOST = 1 << 21
CHUNK_ELEMS_DEVICE = 1 << 24
#: a linear layer is "wide" where in >= WIDE_IN·out (LieConv's output linear, 16·chin -> chout):
#: the torch and jax adapters differentiate its weight as an (out, in) product, gᵀ @ x, which CPU
#: BLAS runs faster than xᵀ @ g for such shapes
WIDE_IN = 8


class ReferenceAdapter:
    """Pure array-API implementations of the contract.

    Besides the operations, an adapter answers what the core may do on its backend:
    :attr:`data_dependent_shapes`, :meth:`compact_pairs` (host reads of array values),
    :meth:`native_kernels` (fused kernels for a group), :meth:`tracing`. The core asks these
    instead of testing a library's name.
    """

    name = "reference"
    #: whether shapes may depend on array values (``nonzero``, cell occupancy, host-read sizes):
    #: False where the code is traced into one static graph (jax.jit)
    data_dependent_shapes: bool = True

    # --- capabilities and devices --------------------------------------------------------------
    def native_kernels(self, group: Any) -> bool:
        """Whether this adapter has fused kernels (sampling, neighbour search) for ``group``.

        Parameters
        ----------
        group : Group
            The group.

        Returns
        -------
        bool
            False here: the reference has no kernels. Kernel adapters answer with
            :func:`lieconv_core.groups.supports_group`.
        """
        return False

    def device(self, xp: Any, name: str | None = None) -> Any:
        """The device object for a device string.

        Parameters
        ----------
        xp : module
            The backend's namespace.
        name : str or None
            A device string ("cpu", "cuda:1", "gpu:0", ...); None: the default device.

        Returns
        -------
        object
            The device, as the namespace's ``asarray(..., device=)`` takes it.

        Raises
        ------
        RuntimeError
            When the device does not exist here.
        """
        dev = default_device(xp)
        if name not in (None, "cpu", str(dev)):
            raise RuntimeError(f"this backend has only the device {dev!s}, not {name!r}")
        return dev

    def configure(self, *, float64: bool = False, threads: int | None = None) -> None:
        """Application-level settings of the framework (the library never changes them itself;
        the CLI and the consistency table call this). No-op here.

        Parameters
        ----------
        float64 : bool
            Make float64 arrays available (jax: ``jax_enable_x64``).
        threads : int or None
            Intra-op CPU threads (torch), None: leave as is.
        """
        return None

    def from_host(self, xp: Any, a: Any, dtype: Any, device: Any) -> Any:
        """A host (numpy) array as an array of this backend.

        Parameters
        ----------
        xp : module
            The backend's namespace.
        a : numpy.ndarray
            Host values.
        dtype : dtype
            The namespace's dtype.
        device : object or None
            The device (None: the default).

        Returns
        -------
        array
            Same shape as ``a``.
        """
        return xp.asarray(a, dtype=dtype, device=device)

    # --- indexing --------------------------------------------------------------------------------
    def gather(self, xp: Any, x: Any, idx: Any) -> Any:
        """Gather along axis 1: x ``(bs, n, *rest)``, idx ``(bs, *s)`` -> ``(bs, *s, *rest)``."""
        bs, n = x.shape[0], x.shape[1]
        rest = tuple(x.shape[2:])
        idx_shape = tuple(idx.shape[1:])
        flat = xp.reshape(offset_rows(xp, idx, n), (-1,))
        out = xp.take(xp.reshape(x, (bs * n, *rest)), flat, axis=0)
        return xp.reshape(out, (bs, *idx_shape, *rest))

    def take_along_last(self, xp: Any, x: Any, idx: Any) -> Any:
        """x ``(*B, n)``, idx ``(*B, k)`` -> ``(*B, k)``: ``x[..., idx]``."""
        lead = tuple(x.shape[:-1])
        n, k = x.shape[-1], idx.shape[-1]
        rows = math.prod(lead)
        offsets = xp.reshape(xp.arange(rows, dtype=idx.dtype, device=_device(idx)) * n, (*lead, 1))
        flat = xp.reshape(idx + offsets, (-1,))
        return xp.reshape(xp.take(xp.reshape(x, (-1,)), flat, axis=0), (*lead, k))

    @staticmethod
    def count_true(xp: Any, sel: Any, dtype: Any) -> Any:
        """Running count of True entries along the last axis of the bool array ``sel``, as
        integers of ``dtype`` (the cumulative sum of the ball search)."""
        return count_true(xp, sel, dtype)

    def search_rows(self, xp: Any, counts: Any, targets: Any) -> Any:
        """:func:`search_rows`: row-wise ``searchsorted`` of non-decreasing integer rows."""
        return search_rows(xp, counts, targets)

    def topk_smallest(self, xp: Any, scores: Any, k: int) -> Any:
        """Indices ``(*B, k)`` of the k smallest scores on the last axis, ascending; ties go to the
        lower index (canonical on every backend)."""
        return xp.argsort(scores, axis=-1, stable=True)[..., :k]

    def smallest_k_distinct(self, xp: Any, scores: Any, k: int) -> Any:
        """Indices ``(*B, k)`` of the k smallest scores on the last axis, ascending, for rows whose
        k smallest scores are distinct (which of several equal larger scores is left out does not
        matter): no tie rule, so backends may use a partial selection (torch: ``topk``)."""
        return xp.argsort(scores, axis=-1, stable=False)[..., :k]

    # --- sampling -------------------------------------------------------------------------------
    def fps(self, xp: Any, group: Any, elems: Any, q: Any, mask: Any, m: int, u: Any) -> Any:
        """Farthest point sampling under the group distance.

        elems (bs, n, E), q (bs, n, dq) or None, mask (bs, n) bool, u (bs,) uniform draws that pick
        the start among the valid points. Returns indices (bs, m) of the default integer dtype.
        Padding is never chosen; ties (after :func:`quantize`) go to the lowest index.
        """
        return _search.fps(self, xp, group, elems, q, mask, m, u)

    def fps_distance(self, xp: Any, group: Any, elems: Any, q: Any, mask: Any) -> Callable:
        """cur (bs,) -> quantised distances (bs, n) of every point to point ``cur`` of its cloud,
        -inf at padding (so ``minimum`` keeps padding at -inf and ``argmax`` never picks it).

        For groups whose distance is ‖u − v‖ on the elements (T(d), Trivial(d)) the coordinates
        are split into contiguous (bs, n) components once, and each step computes
        sqrt(((x0 − c0)² + (x1 − c1)²) + ...) on them: the same arithmetic as the generic path
        (:func:`lieconv_core.groups.base.norm`), without a (bs, n, E) broadcast per step, which in
        numpy runs an inner loop of length E (~10x slower at E = 3)."""
        return _search.fps_distance(self, xp, group, elems, q, mask)

    def neighbourhood(
        self, xp: Any, group: Any, query: tuple, points: tuple, k: int, r: Any,
        priorities: Any, knn: bool, chunk_pairs: int | None = None, grid: bool | None = None,
        pair_dist: Any = None,
    ) -> tuple[Any, Any, Any]:
        """Neighbour search: the contract is :meth:`chunked_neighbourhood`'s.

        Dispatch (:func:`lieconv_core.neighbourhoods.search.neighbourhood`): for Euclidean and
        position-bounded distances on large clouds the cell list returns exactly the same
        indices, masks and counts with O(m·W) work instead of O(m·n); ``grid=None`` (default)
        uses it where it pays, ``grid=True`` whenever it applies at all (tests), ``grid=False``
        never.

        ``pair_dist``: the group distances (bs, m, n) of every (query, point) pair, when the caller
        already has them (:meth:`lieconv_core.LieConv.pairs`); used instead of recomputing them
        (chunked search). Kernel overrides may ignore it. ``chunk_pairs`` None: the adapter's
        :meth:`chunk_pairs` for the points' device.
        """
        return _search.neighbourhood(self, xp, group, query, points, k, r, priorities, knn,
                             chunk_pairs, grid, pair_dist)

    def chunked_neighbourhood(
        self, xp: Any, group: Any, query: tuple, points: tuple, k: int, r: Any,
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
        return _search.chunked_neighbourhood(self, xp, group, query, points, k, r, priorities,
                                     knn, chunk_pairs, pair_dist)

    def dense_neighbourhood(self, xp: Any, group: Any, query: tuple, points: tuple, r: Any,
                            knn: bool, pair_dist: Any = None) -> tuple[Any, Any]:
        """The neighbourhoods when k >= n, i.e. every point is a candidate of every query: no
        indices, only which (query, point) pairs count.

        query, points as in :meth:`chunked_neighbourhood`. Returns mask (bs, m, n) bool — kNN:
        both valid; ball: both valid and d < r, with d computed exactly as in the chunked search
        — and the in-ball counts (bs, m) (None in kNN mode). The same pairs as
        :meth:`chunked_neighbourhood` with k >= n selects, in point order instead of its slot
        order. ``pair_dist`` as in :meth:`neighbourhood`.
        """
        return _dense.dense_neighbourhood(self, xp, group, query, points, r, knn, pair_dist)

    def chunk_pairs(self, x: Any) -> int:
        """Default bound on the (query, point) pairs of one neighbour-search chunk for arrays on
        x's device (:data:`CHUNK_PAIRS_HOST` here: host memory)."""
        return CHUNK_PAIRS_HOST

    def chunk_elems(self, x: Any) -> int:
        """Default bound on the pair-array elements of one LieConv query chunk for arrays on x's
        device (:data:`CHUNK_ELEMS_HOST` here: numpy and array_api_strict live in host memory)."""
        return CHUNK_ELEMS_HOST

    def map_query_chunks(self, xp: Any, fn: Callable, arrays: tuple, step: int) -> Any:
        """fn over consecutive chunks of at most ``step`` queries (:func:`equal_step`),
        concatenated along the query axis: ``arrays`` hold the query axis at position 1 (None
        entries pass through as None); ``fn(*chunk_arrays)`` -> an array (bs, s, ...) or a tuple of
        such arrays and Nones. Here a Python loop (chunks may differ in shape: compaction); jax
        maps the equal chunks with one ``lax.map`` so that XLA keeps one chunk's temporaries live
        at a time."""
        m = next(a for a in arrays if a is not None).shape[1]
        step = equal_step(m, step)
        # stops clipped to m: the standard leaves out-of-bounds slice stops unspecified
        parts = [fn(*(None if a is None else a[:, s:min(s + step, m), ...] for a in arrays))
                 for s in range(0, m, step)]
        return concat_parts(xp, parts)

    def compact_pairs(self, x: Any) -> bool:
        """Whether LieConv may run its weight net on the valid (query, neighbour) pairs only
        (:attr:`lieconv_core.nn.LieConv.compact`) for arrays on x's device: that needs
        data-dependent shapes (``nonzero``) and one host read of the valid count. True here (host
        memory); False where that cannot trace (jax.jit) or where fused kernels take the whole
        pair arrays (GPUs)."""
        return True

    def tracing(self) -> bool:
        """True while a compiler traces the code (torch.compile): no host reads of array values
        then (they would split the compiled graph); data checks are skipped and data-dependent
        shortcuts (compaction, :meth:`all_true`) are off. jax's tracers need no hook: reading
        one raises, and the callers treat that as "unknown"."""
        return False

    def all_true(self, xp: Any, mask: Any) -> bool:
        """True when every entry of the bool array ``mask`` is True and that is cheap to know
        (host memory: one reduction). False when some entry is False — or, on backends that
        would need a device sync or cannot read traced values (jax.jit, GPUs, torch.compile),
        always. Lets :func:`lieconv_core.nn.layers.zero_invalid` skip its pass on fully valid
        clouds."""
        return bool(xp.all(mask))

    # --- dense layers --------------------------------------------------------------------------
    def linear(self, w: Any, b: Any, x: Any) -> Any:
        """x @ w + b: x (..., in), w (in, out), b (out,) -> (..., out).

        Leading axes are flattened into one (rows, in) @ (in, out) product: numpy runs a stack
        of matrices times one matrix as one small GEMM per matrix (5x slower on the springs
        model's (200, 6, 1536) inputs), and XLA:CPU computes the weight gradient of a product
        with two contracted axes through a transposed copy of x."""
        if x.ndim == 2:
            return x @ w + b
        xp = array_namespace(x)
        y = xp.reshape(x, (-1, x.shape[-1])) @ w + b
        return xp.reshape(y, (*x.shape[:-1], w.shape[-1]))

    def matmul(self, xp: Any, a: Any, b: Any) -> Any:
        """a @ b for stacks of matrices a (..., M, K), b (..., K, N) -> (..., M, N). Backends may
        choose the result's memory layout (torch: a narrow N computed as (bᵀ aᵀ)ᵀ, also in every
        derivative)."""
        return a @ b

    # --- elementwise -------------------------------------------------------------------------
    def swish(self, xp: Any, x: Any) -> Any:
        """x·sigmoid(x) with sigmoid(x) = (1 + tanh(x/2))/2 (no overflow for large ``|x|``). No
        in-place updates: the reference also runs under autograd (torch tensors in tests)."""
        return x * (1 + xp.tanh(x * 0.5)) * 0.5

    def bn_swish(self, xp: Any, p: dict, s: dict, x: Any, mask: Any, train: bool
                 ) -> tuple[Any, dict]:
        """swish(masked_batchnorm(x)) and the new BN state (see
        :func:`~lieconv_core.nn.masked_batchnorm`): x (..., c), mask (...) or None (all valid).
        Invalid entries are 0. Backends may fuse it (torch, training mode: one autograd op with a
        hand-written backward)."""
        from .nn.layers import masked_batchnorm

        y, new_s = masked_batchnorm(xp, p, s, x, mask, train)
        return self.swish(xp, y), new_s

    # --- the conv aggregation ------------------------------------------------------------------
    def contract(self, xp: Any, w: Any, values: Any, nbr_idx: Any, nbr_mask: Any,
                 weight_major: bool = False) -> Any:
        """P[b, i] = Σ_k values[b, nbr_idx[b, i, k]] ⊗ w[b, i, k] over valid neighbours.

        w (bs, m, k, cm), values (bs, n, c), nbr_idx (bs, m, k), nbr_mask (bs, m, k) or None
        (w is already zero at invalid slots) -> (bs, m, c·cm), flattened channel-major (c outer,
        cm inner), or with ``weight_major`` (bs, m, cm·c) (cm outer). ``values`` must be finite
        everywhere (LieConv zeroes padded points): invalid slots are removed by zeroing w only,
        which is n/(m·k) times cheaper than zeroing the gathered values.
        """
        if nbr_mask is not None and not self.all_true(xp, nbr_mask):
            w = xp.where(nbr_mask[..., None], w, xp.zeros_like(w))
        vals = self.gather(xp, values, nbr_idx)
        if weight_major:
            partial = xp.matrix_transpose(w) @ vals  # (bs, m, cm, c)
        else:
            partial = xp.matrix_transpose(vals) @ w  # (bs, m, c, cm)
        bs, m, a, c = partial.shape
        return xp.reshape(partial, (bs, m, a * c))

    def pointconv(self, xp: Any, layers: list, emb: Any, values: Any, nbr_idx: Any,
                  nbr_mask: Any) -> Any:
        """Weight net and contraction: w = swish(L3(swish(L2(swish(L1(emb)))))) with
        layers = [(W (d_in, d_out), b (d_out,)), ...], then :meth:`contract`.

        emb (bs, m, k, d) -> (bs, m, c·cm). Fused kernels override this so that neither the
        weight-net activations nor the gathered values are materialised.
        """
        return self.contract(xp, self.weightnet(xp, layers, emb), values, nbr_idx, nbr_mask)

    def weightnet(self, xp: Any, layers: list, emb: Any) -> Any:
        """swish(L3(swish(L2(swish(L1(emb)))))): emb (..., d) -> (..., cm)."""
        h = emb
        for w, b in layers:
            h = self.swish(xp, self.linear(w, b, h))
        return h

    def dense_contract(self, xp: Any, w: Any, values: Any, mask: Any) -> Any:
        """:meth:`contract` when every point is a candidate neighbour (k >= n; see
        :meth:`dense_neighbourhood`): P[b, i, a, c] = Σ_j mask[b, i, j] w[b, i, j, a]
        values[b, j, c].

        w (bs, m, n, cm), values (bs, n, c), mask (bs, m, n) or None (w already zero where the
        pair does not count) -> (bs, m, cm, c) (weight-net output major: one (m·cm, n) @ (n, c)
        product per cloud, with no gather and no per-query products of k-long vectors).
        """
        bs, m, n, cm = w.shape
        if mask is not None and not self.all_true(xp, mask):
            w = xp.where(mask[..., None], w, xp.zeros_like(w))
        wt = xp.reshape(xp.permute_dims(w, (0, 1, 3, 2)), (bs, m * cm, n))
        return xp.reshape(self.matmul(xp, wt, values), (bs, m, cm, values.shape[-1]))

    def dense_pointconv(self, xp: Any, layers: list, emb: Any, values: Any, mask: Any) -> Any:
        """Weight net and :meth:`dense_contract`: emb (bs, m, n, d) of all pairs ->
        (bs, m, cm, c)."""
        return self.dense_contract(xp, self.weightnet(xp, layers, emb), values, mask)

    # --- autodiff / compilation / sync ---------------------------------------------------------
    def grad(self, f: Callable) -> Callable:
        raise NotImplementedError(
            "this backend has no automatic differentiation; use LIECONV_BACKEND=torch or jax"
        )

    def jit(self, f: Callable) -> Callable:
        return f

    def synchronize(self, x: Any = None) -> None:
        """Wait until queued work on x's device is done (no-op on synchronous backends)."""
        return None

    def to_numpy(self, x: Any) -> np.ndarray:
        try:
            return np.asarray(x)
        except Exception:
            pass
        try:  # a GPU array (torch CUDA tensor, cupy) comes to the host first
            return np.asarray(to_device(x, "cpu"))
        except Exception:  # array_api_strict has no __array__; DLPack works everywhere
            return np.from_dlpack(x)
