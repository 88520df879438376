"""The adapter contract: the primitives the core needs that the array API standard lacks or that
deserve a fused kernel (gather, top-k, row searches, matmul, fused activations, the contraction,
query chunks), the capabilities the core asks (data-dependent shapes, host reads, tracing, native
kernels of a group), and devices, autodiff and compilation.

:class:`ReferenceAdapter` implements each one in pure array-API code; it is what numpy and
array_api_strict run, and the reference every backend adapter is tested against. Backend adapters
(``lieconv_torch``, ``lieconv_jax``, ``lieconv_cupy``) subclass it and override what they can do
faster. Overrides must return the same numbers (same indices; floats to rounding). Sampling and the
neighbour search are not part of the contract: :mod:`lieconv_core.neighbourhoods` owns them and
asks the adapter for its primitives and its :meth:`ReferenceAdapter.native_kernels`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from array_api_compat import array_namespace, to_device
from array_api_compat import device as _device

from ._backend import default_device
from .rows import concat_parts, count_true, equal_step, offset_rows, search_rows

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
    def native_kernels(self, group: Any) -> Any:
        """This adapter's native FPS and neighbour search for ``group``, if it has any.

        :func:`lieconv_core.neighbourhoods.fps` and
        :func:`lieconv_core.neighbourhoods.neighbourhood` ask this first and run their array-API
        code where the answer is None or declines the arrays. Kernel backends answer with a
        :class:`lieconv_core.neighbourhoods.NativeKernels` whose ``fused`` flag follows
        :func:`lieconv_core.groups.supports_group`.

        Parameters
        ----------
        group : Group
            The group.

        Returns
        -------
        NativeKernels or None
            None here: the reference has no kernels.
        """
        return None

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
        """Gather along axis 1, per cloud.

        Parameters
        ----------
        xp : module
            The array namespace of ``x``.
        x : array
            Values ``(bs, n, *rest)``.
        idx : array
            Integer indices into axis 1 of ``x``, shape ``(bs, *s)``, each in ``[0, n)``.

        Returns
        -------
        array
            ``(bs, *s, *rest)``, ``out[b, i...] = x[b, idx[b, i...]]``, dtype of ``x``.
        """
        bs, n = x.shape[0], x.shape[1]
        rest = tuple(x.shape[2:])
        idx_shape = tuple(idx.shape[1:])
        flat = xp.reshape(offset_rows(xp, idx, n), (-1,))
        out = xp.take(xp.reshape(x, (bs * n, *rest)), flat, axis=0)
        return xp.reshape(out, (bs, *idx_shape, *rest))

    def take_along_last(self, xp: Any, x: Any, idx: Any) -> Any:
        """Gather along the last axis: ``x[..., idx]`` row by row.

        Parameters
        ----------
        xp : module
            The array namespace of ``x``.
        x : array
            Values ``(*B, n)``.
        idx : array
            Integer indices ``(*B, k)`` into the last axis of ``x``.

        Returns
        -------
        array
            ``(*B, k)``, dtype of ``x``.
        """
        lead = tuple(x.shape[:-1])
        n, k = x.shape[-1], idx.shape[-1]
        rows = math.prod(lead)
        offsets = xp.reshape(xp.arange(rows, dtype=idx.dtype, device=_device(idx)) * n, (*lead, 1))
        flat = xp.reshape(idx + offsets, (-1,))
        return xp.reshape(xp.take(xp.reshape(x, (-1,)), flat, axis=0), (*lead, k))

    @staticmethod
    def count_true(xp: Any, sel: Any, dtype: Any) -> Any:
        """Running count of True entries along the last axis (the ball search's cumulative sum).

        Parameters
        ----------
        xp : module
            The array namespace of ``sel``.
        sel : array
            Bool array ``(*B, n)``.
        dtype : dtype
            Integer dtype of the counts.

        Returns
        -------
        array
            ``(*B, n)`` of ``dtype``: the number of True entries up to and including each position.
        """
        return count_true(xp, sel, dtype)

    def search_rows(self, xp: Any, counts: Any, targets: Any) -> Any:
        """Row-wise ``searchsorted`` of non-decreasing integer rows.

        The reference is :func:`lieconv_core.rows.search_rows`.

        Parameters
        ----------
        xp : module
            The array namespace.
        counts : array
            Non-decreasing integer rows ``(rows, n)`` with values in ``[0, n]``.
        targets : array
            Integer values to locate, ``(rows, k)``, in ``[0, n]``.

        Returns
        -------
        array
            ``(rows, k)`` of ``counts``' dtype: per row r and target t = targets[r, i], the first
            position j with counts[r, j] >= t (n if none).
        """
        return search_rows(xp, counts, targets)

    def topk_smallest(self, xp: Any, scores: Any, k: int) -> Any:
        """Indices of the k smallest scores on the last axis, ascending.

        Ties go to the lower index, the same on every backend.

        Parameters
        ----------
        xp : module
            The array namespace of ``scores``.
        scores : array
            Real scores ``(*B, n)``.
        k : int
            How many indices to return, ``k <= n``.

        Returns
        -------
        array
            Integer indices ``(*B, k)``, in order of increasing score.
        """
        return xp.argsort(scores, axis=-1, stable=True)[..., :k]

    def smallest_k_distinct(self, xp: Any, scores: Any, k: int) -> Any:
        """Indices of the k smallest scores on the last axis, for rows with distinct k smallest.

        There is no tie rule (which of several equal larger scores is left out does not matter), so
        backends may use a partial selection (torch: ``topk``).

        Parameters
        ----------
        xp : module
            The array namespace of ``scores``.
        scores : array
            Real scores ``(*B, n)``.
        k : int
            How many indices to return, ``k <= n``.

        Returns
        -------
        array
            Integer indices ``(*B, k)``, in order of increasing score.
        """
        return xp.argsort(scores, axis=-1, stable=False)[..., :k]

    # --- memory bounds and query chunks ------------------------------------------------------
    def chunk_pairs(self, x: Any) -> int:
        """Default bound on the (query, point) pairs of one neighbour-search chunk.

        Parameters
        ----------
        x : array
            An array on the device in question.

        Returns
        -------
        int
            :data:`CHUNK_PAIRS_HOST` here (host memory).
        """
        return CHUNK_PAIRS_HOST

    def chunk_elems(self, x: Any) -> int:
        """Default bound on the pair-array elements of one LieConv query chunk.

        Parameters
        ----------
        x : array
            An array on the device in question.

        Returns
        -------
        int
            :data:`CHUNK_ELEMS_HOST` here (numpy and array_api_strict live in host memory).
        """
        return CHUNK_ELEMS_HOST

    def map_query_chunks(self, xp: Any, fn: Callable, arrays: tuple, step: int) -> Any:
        """Apply ``fn`` over consecutive chunks of queries and concatenate along the query axis.

        Chunks hold at most ``step`` queries (:func:`equal_step`). Here a Python loop (chunks may
        differ in shape: compaction); jax maps the equal chunks with one ``lax.map`` so that XLA
        keeps
        one chunk's temporaries live at a time.

        Parameters
        ----------
        xp : module
            The array namespace.
        fn : callable
            ``fn(*chunk_arrays)`` -> an array ``(bs, s, ...)`` or a tuple of such arrays and Nones.
        arrays : tuple
            Arrays with the query axis at position 1; None entries pass through as None.
        step : int
            Largest number of queries per chunk.

        Returns
        -------
        array or tuple
            ``fn``'s outputs concatenated along axis 1 (``(bs, m, ...)``), in ``fn``'s structure.
        """
        m = next(a for a in arrays if a is not None).shape[1]
        step = equal_step(m, step)
        # stops clipped to m: the standard leaves out-of-bounds slice stops unspecified
        parts = [fn(*(None if a is None else a[:, s:min(s + step, m), ...] for a in arrays))
                 for s in range(0, m, step)]
        return concat_parts(xp, parts)

    def compact_pairs(self, x: Any) -> bool:
        """Whether LieConv may run its weight net on the valid (query, neighbour) pairs only.

        See :attr:`lieconv_core.nn.LieConv.compact`: that needs data-dependent shapes (``nonzero``)
        and
        one host read of the valid count.

        Parameters
        ----------
        x : array
            An array on the device in question.

        Returns
        -------
        bool
            True here (host memory); False where that cannot trace (jax.jit) or where fused kernels
            take the whole pair arrays (GPUs).
        """
        return True

    def tracing(self) -> bool:
        """Whether a compiler is tracing the code (torch.compile).

        No host reads of array values happen then (they would split the compiled graph); data checks
        are skipped and data-dependent shortcuts (compaction, :meth:`all_true`) are off. jax's
        tracers
        need no hook: reading one raises, and the callers treat that as "unknown".

        Returns
        -------
        bool
            False here.
        """
        return False

    def traced(self, x: Any) -> bool:
        """Whether ``x`` is a value being traced (a jax tracer; any array inside torch.compile)
        rather than a concrete array.

        Values made while tracing belong to that trace: a cache that kept them would hand them to
        later traces (jax: a leaked tracer, which can compile a program that expects other
        arguments than it is given).

        Parameters
        ----------
        x : array
            An array of this backend.

        Returns
        -------
        bool
            :meth:`tracing` here.
        """
        return self.tracing()

    def all_true(self, xp: Any, mask: Any) -> bool:
        """Whether every entry of a bool array is True, where that is cheap to know.

        Lets :func:`lieconv_core.nn.layers.zero_invalid` skip its pass on fully valid clouds.

        Parameters
        ----------
        xp : module
            The array namespace of ``mask``.
        mask : array
            Bool array of any shape.

        Returns
        -------
        bool
            True when every entry is True (host memory: one reduction). False when some entry is
            False, or, on backends that would need a device sync or cannot read traced values
            (jax.jit, GPUs, torch.compile), always.
        """
        return bool(xp.all(mask))

    # --- dense layers --------------------------------------------------------------------------
    def linear(self, w: Any, b: Any, x: Any) -> Any:
        """Affine layer ``x @ w + b``.

        Leading axes are flattened into one ``(rows, in) @ (in, out)`` product: numpy runs a stack
        of
        matrices times one matrix as one small GEMM per matrix, and XLA:CPU computes the weight
        gradient of a product with two contracted axes through a transposed copy of x.

        Parameters
        ----------
        w : array
            Weight ``(in, out)``.
        b : array
            Bias ``(out,)``.
        x : array
            Inputs ``(..., in)``.

        Returns
        -------
        array
            ``(..., out)``.
        """
        if x.ndim == 2:
            return x @ w + b
        xp = array_namespace(x)
        y = xp.reshape(x, (-1, x.shape[-1])) @ w + b
        return xp.reshape(y, (*x.shape[:-1], w.shape[-1]))

    def matmul(self, xp: Any, a: Any, b: Any) -> Any:
        """Matrix product ``a @ b`` of stacks of matrices.

        Backends may choose the result's memory layout (torch: a narrow N computed as (bᵀ aᵀ)ᵀ, also
        in every derivative).

        Parameters
        ----------
        xp : module
            The array namespace.
        a : array
            ``(..., M, K)``.
        b : array
            ``(..., K, N)``.

        Returns
        -------
        array
            ``(..., M, N)``.
        """
        return a @ b

    # --- elementwise -------------------------------------------------------------------------
    def swish(self, xp: Any, x: Any) -> Any:
        """Swish activation x·sigmoid(x), with sigmoid(x) = (1 + tanh(x/2))/2.

        The tanh form does not overflow for large ``|x|``. No in-place updates: the reference also
        runs under autograd (torch tensors in tests).

        Parameters
        ----------
        xp : module
            The array namespace of ``x``.
        x : array
            Floats of any shape.

        Returns
        -------
        array
            Same shape and dtype as ``x``.
        """
        return x * (1 + xp.tanh(x * 0.5)) * 0.5

    def bn_swish(self, xp: Any, p: dict, s: dict, x: Any, mask: Any, train: bool
                 ) -> tuple[Any, dict]:
        """Masked batch norm followed by swish.

        See :func:`~lieconv_core.nn.masked_batchnorm`. Backends may fuse it (torch, training mode:
        one
        autograd op with a hand-written backward).

        Parameters
        ----------
        xp : module
            The array namespace.
        p : dict
            Affine BN parameters ``{"w": (c,), "b": (c,)}``.
        s : dict
            Running statistics ``{"mean": (c,), "var": (c,)}``.
        x : array
            Inputs ``(..., c)``.
        mask : array or None
            Bool ``(...)``, True at valid entries; None: all valid.
        train : bool
            True: normalise with the batch statistics and update the state; False: use the state.

        Returns
        -------
        y : array
            ``swish(masked_batchnorm(x))``, same shape as ``x``; invalid entries are 0.
        state : dict
            The new BN state.
        """
        from .nn.layers import masked_batchnorm

        y, new_s = masked_batchnorm(xp, p, s, x, mask, train)
        return self.swish(xp, y), new_s

    # --- the conv aggregation ------------------------------------------------------------------
    def contract(self, xp: Any, w: Any, values: Any, nbr_idx: Any, nbr_mask: Any,
                 weight_major: bool = False) -> Any:
        """Contraction P[b, i] = Σ_k values[b, nbr_idx[b, i, k]] ⊗ w[b, i, k] over valid slots.

        ``values`` must be finite everywhere (LieConv zeroes padded points): invalid slots are
        removed
        by zeroing w only, which is n/(m·k) times cheaper than zeroing the gathered values.

        Parameters
        ----------
        xp : module
            The array namespace.
        w : array
            Weight-net outputs ``(bs, m, k, cm)``.
        values : array
            Point features ``(bs, n, c)``.
        nbr_idx : array
            Integer neighbour indices ``(bs, m, k)``.
        nbr_mask : array or None
            Bool ``(bs, m, k)``; None: w is already zero at invalid slots.
        weight_major : bool
            False: flatten channel-major (c outer, cm inner); True: cm outer.

        Returns
        -------
        array
            ``(bs, m, c·cm)``, or ``(bs, m, cm·c)`` with ``weight_major``.
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
        """Weight net w = swish(L3(swish(L2(swish(L1(emb)))))), then :meth:`contract`.

        Fused kernels override this so that neither the weight-net activations nor the gathered
        values
        are materialised.

        Parameters
        ----------
        xp : module
            The array namespace.
        layers : list
            ``[(W (d_in, d_out), b (d_out,)), ...]``, the weight net's layers.
        emb : array
            Pair embeddings ``(bs, m, k, d)``.
        values : array
            Point features ``(bs, n, c)``.
        nbr_idx : array
            Integer neighbour indices ``(bs, m, k)``.
        nbr_mask : array or None
            Bool ``(bs, m, k)``, True at valid slots; None: all valid.

        Returns
        -------
        array
            ``(bs, m, c·cm)``.
        """
        return self.contract(xp, self.weightnet(xp, layers, emb), values, nbr_idx, nbr_mask)

    def weightnet(self, xp: Any, layers: list, emb: Any) -> Any:
        """The weight net swish(L3(swish(L2(swish(L1(emb)))))).

        Parameters
        ----------
        xp : module
            The array namespace.
        layers : list
            ``[(W (d_in, d_out), b (d_out,)), ...]``.
        emb : array
            Embeddings ``(..., d)``.

        Returns
        -------
        array
            ``(..., cm)``, cm the last layer's output width.
        """
        h = emb
        for w, b in layers:
            h = self.swish(xp, self.linear(w, b, h))
        return h

    def dense_contract(self, xp: Any, w: Any, values: Any, mask: Any) -> Any:
        """:meth:`contract` when every point is a candidate neighbour (k >= n).

        P[b, i, a, c] = Σ_j mask[b, i, j] w[b, i, j, a] values[b, j, c], computed as one
        ``(m·cm, n) @ (n, c)`` product per cloud, with no gather (see
        :func:`lieconv_core.neighbourhoods.dense_neighbourhood`).

        Parameters
        ----------
        xp : module
            The array namespace.
        w : array
            Weight-net outputs ``(bs, m, n, cm)``.
        values : array
            Point features ``(bs, n, c)``.
        mask : array or None
            Bool ``(bs, m, n)``; None: w is already zero where the pair does not count.

        Returns
        -------
        array
            ``(bs, m, cm, c)`` (weight-net output major).
        """
        bs, m, n, cm = w.shape
        if mask is not None and not self.all_true(xp, mask):
            w = xp.where(mask[..., None], w, xp.zeros_like(w))
        wt = xp.reshape(xp.permute_dims(w, (0, 1, 3, 2)), (bs, m * cm, n))
        return xp.reshape(self.matmul(xp, wt, values), (bs, m, cm, values.shape[-1]))

    def dense_pointconv(self, xp: Any, layers: list, emb: Any, values: Any, mask: Any) -> Any:
        """Weight net and :meth:`dense_contract` over all (query, point) pairs.

        Parameters
        ----------
        xp : module
            The array namespace.
        layers : list
            ``[(W (d_in, d_out), b (d_out,)), ...]``, the weight net's layers.
        emb : array
            Pair embeddings ``(bs, m, n, d)``.
        values : array
            Point features ``(bs, n, c)``.
        mask : array or None
            Bool ``(bs, m, n)``, True where the pair counts; None: all count.

        Returns
        -------
        array
            ``(bs, m, cm, c)``.
        """
        return self.dense_contract(xp, self.weightnet(xp, layers, emb), values, mask)

    # --- autodiff / compilation / sync ---------------------------------------------------------
    def grad(self, f: Callable) -> Callable:
        """The gradient function of a scalar function.

        Parameters
        ----------
        f : callable
            ``f(params, *args)`` -> a scalar.

        Returns
        -------
        callable
            ``(params, *args)`` -> the gradient of ``f`` with respect to ``params`` (same
            structure).

        Raises
        ------
        NotImplementedError
            On backends without automatic differentiation (the reference adapter).
        """
        raise NotImplementedError(
            "this backend has no automatic differentiation; use LIECONV_BACKEND=torch or jax"
        )

    def jit(self, f: Callable) -> Callable:
        """Compile a function for this backend, where the backend compiles.

        Parameters
        ----------
        f : callable
            The function.

        Returns
        -------
        callable
            The compiled function, or ``f`` itself where the backend does not compile (the
            reference adapter).
        """
        return f

    def synchronize(self, x: Any = None) -> None:
        """Wait until queued work on x's device is done (no-op on synchronous backends).

        Parameters
        ----------
        x : array or None
            An array on the device to wait for; None: the current device.
        """
        return None

    def to_numpy(self, x: Any) -> np.ndarray:
        """Copy an array of this backend to a host numpy array.

        Parameters
        ----------
        x : array
            An array of this backend (host or device memory).

        Returns
        -------
        numpy.ndarray
            Same shape and values.
        """
        try:
            return np.asarray(x)
        except Exception:
            pass
        try:  # a GPU array (torch CUDA tensor, cupy) comes to the host first
            return np.asarray(to_device(x, "cpu"))
        except Exception:  # array_api_strict has no __array__; DLPack works everywhere
            return np.from_dlpack(x)
