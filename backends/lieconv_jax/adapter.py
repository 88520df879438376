"""The jax adapter: jit-compatible FPS (lax.fori_loop), autodiff, block_until_ready, and the Pallas
kernels of :mod:`lieconv_jax.pallas` on GPU."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

from lieconv_core._backend import index_dtype
from lieconv_core.adapter import (
    CHUNK_ELEMS_DEVICE,
    CHUNK_ELEMS_HOST,
    CHUNK_PAIRS,
    WIDE_IN,
    ReferenceAdapter,
)
from lieconv_core.groups import supports_group
from lieconv_core.neighbourhoods import NativeKernels
from lieconv_core.neighbourhoods.primitives import fps_start
from lieconv_core.neighbourhoods.search import fps_distance
from lieconv_core.rows import concat_parts, equal_step

#: LIECONV_JAX_KERNELS: "auto" (default: Pallas kernels when jax's default backend is a GPU),
#: "never", or "interpret" (Pallas kernels through the interpreter on any backend: tests; slow)
_KERNELS_ENV = "LIECONV_JAX_KERNELS"
#: block width of :meth:`JaxAdapter.count_true` on CPU
_COUNT_BLOCK = 32


def _on_cpu(x: Any) -> bool:
    """Whether x lives in host memory (a traced value: whether jit runs on the CPU backend)."""
    try:
        return all(d.platform == "cpu" for d in x.devices())
    except jax.errors.ConcretizationTypeError:
        return jax.default_backend() == "cpu"


class JaxAdapter(ReferenceAdapter):
    """Jax adapter: ``lax`` loops and maps, ``custom_vjp`` fused ops, Pallas kernels, jit.

    Shapes are static under ``jax.jit``, so :attr:`data_dependent_shapes` is False: no
    ``nonzero``-based compaction and no cell-list search.

    Parameters
    ----------
    kernels : str or None
        "auto" uses the Pallas kernels where they apply (jax on GPU, supported groups), "never"
        disables them, "interpret" runs them in interpret mode (tests). None: the
        ``LIECONV_JAX_KERNELS`` environment variable, default "auto".
    """
    name = "jax"
    #: jax.jit traces static shapes: no nonzero-based compaction, no cell-list search
    data_dependent_shapes = False

    def __init__(self, kernels: str | None = None):
        kernels = kernels or os.environ.get(_KERNELS_ENV, "auto")
        if kernels not in ("auto", "never", "interpret"):
            raise ValueError(f"kernels must be 'auto', 'never' or 'interpret', got {kernels!r}")
        self.kernels = kernels

    def device(self, xp: Any, name: str | None = None) -> Any:
        """"cpu", "gpu", "gpu:1", ... -> a jax ``Device``.

        Parameters
        ----------
        xp : module
            The jax.numpy namespace.
        name : str or None
            The device string; None: jax's default device.

        Returns
        -------
        jax.Device

        Raises
        ------
        RuntimeError
            When the platform or the device index does not exist here.
        """
        if name is None:
            return jax.devices()[0]
        platform, _, index = name.partition(":")
        try:
            devices = jax.devices(platform)
        except RuntimeError as exc:
            raise RuntimeError(f"jax has no {platform!r} backend here ({exc})") from exc
        i = int(index) if index else 0
        if i >= len(devices):
            raise RuntimeError(f"jax sees {len(devices)} {platform} device(s)")
        return devices[i]

    def configure(self, *, float64: bool = False, threads: int | None = None) -> None:
        """Switch jax's float64 support on (application-level; see
        :meth:`ReferenceAdapter.configure`).

        Parameters
        ----------
        float64 : bool
            Set ``jax_enable_x64``.
        threads : int or None
            1: XLA's CPU operations run on the calling thread (``XLA_FLAGS`` gets
            ``--xla_cpu_multi_thread_eigen=false`` unless it sets that flag already); it takes
            effect when jax first uses its CPU backend, so call this before any computation.
            Other counts leave XLA's default (all cores).
        """
        if float64:
            jax.config.update("jax_enable_x64", True)
        flags = os.environ.get("XLA_FLAGS", "")
        if threads == 1 and "xla_cpu_multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()

    def native_kernels(self, group: Any) -> Any:
        """FPS as one ``lax.fori_loop`` for every group, and the Pallas kernels' FPS and
        neighbour search where the group declares them
        (:func:`lieconv_core.groups.supports_group`).

        Parameters
        ----------
        group : Group
            The group.

        Returns
        -------
        NativeKernels
            A :class:`JaxKernels` (``fused``: the Pallas kernels cover ``group``).
        """
        return JaxKernels(self, group, supports_group(group))

    def chunk_elems(self, x: Any) -> int:
        # XLA:CPU puts all of a call's temporaries in one buffer, mapped fresh (page faults) on
        # every call when it exceeds glibc's 32 MiB mmap threshold; host-sized chunks under
        # lax.map (map_query_chunks) keep it small. Devices: large chunks, as planned by XLA.
        return CHUNK_ELEMS_HOST if _on_cpu(x) else CHUNK_ELEMS_DEVICE

    def map_query_chunks(self, xp, fn, arrays, step):
        # On CPU, equal chunks through one ``lax.map`` (XLA then keeps one chunk's temporaries live
        # at a time; unrolled chunks get scheduled side by side, and XLA:CPU maps its temporary
        # buffer fresh, with page faults, on every call when that exceeds glibc's mmap threshold),
        # any shorter last chunk after it. Devices: the unrolled loop.
        first = next(a for a in arrays if a is not None)
        m = first.shape[1]
        step = equal_step(m, step)
        n = m // step
        if n < 2 or not _on_cpu(first):
            return super().map_query_chunks(xp, fn, arrays, step)

        def stacked(a):  # (bs, n·step, ...) -> (n, bs, step, ...)
            a = a[:, :n * step]
            return jnp.moveaxis(jnp.reshape(a, (a.shape[0], n, step, *a.shape[2:])), 1, 0)

        def unstacked(a):  # (n, bs, step, ...) -> (bs, n·step, ...)
            a = jnp.moveaxis(a, 0, 1)
            return jnp.reshape(a, (a.shape[0], n * step, *a.shape[3:]))

        # rematerialised: under jax.grad the backward recomputes each chunk instead of keeping
        # every chunk's temporaries (layer forward + backward: faster than the unrolled loop with
        # rematerialisation, and without it the map would be slower than that loop)
        body = jax.checkpoint(lambda xs: fn(*xs))
        out = jax.lax.map(body,
                          tuple(None if a is None else stacked(a) for a in arrays))
        out = jax.tree.map(unstacked, out)
        if n * step == m:
            return out
        rest = fn(*(None if a is None else a[:, n * step:] for a in arrays))
        return concat_parts(xp, [out, rest])

    def count_true(self, xp, sel, dtype):
        # On CPU, by 32-wide blocks: the running counts within each block are one matrix product
        # with a triangular matrix of ones, plus the running total of the block sums — exact in
        # float32 (integers below 2^24) and several times faster than XLA:CPU's cumulative sum on a
        # layer's (1000, 1000) in-ball mask.
        n = sel.shape[-1]
        if not _on_cpu(sel) or n >= 2**24:
            return super().count_true(xp, sel, dtype)
        b = _COUNT_BLOCK
        nb = -(-n // b)
        f = sel.astype(jnp.float32)
        f = jnp.pad(f, [(0, 0)] * (f.ndim - 1) + [(0, nb * b - n)])
        f = jnp.reshape(f, (*f.shape[:-1], nb, b))
        upper = jnp.triu(jnp.ones((b, b), jnp.float32))  # upper[i, j] = 1 for i <= j
        inner = jnp.matmul(f, upper, precision=jax.lax.Precision.HIGHEST)
        tot = inner[..., -1]
        before = jnp.cumulative_sum(tot, axis=-1) - tot  # of the earlier blocks
        out = jnp.reshape(inner + before[..., None], (*sel.shape[:-1], nb * b))
        return out[..., :n].astype(dtype)

    def topk_smallest(self, xp, scores, k):
        # ``lax.top_k`` of the negated scores — a partial selection whose ties go to the lower index
        # (documented), like the reference's stable sort — instead of a full stable sort of every
        # row, which on CPU is far slower for kNN-sized rows. Zeros are made +0.0 first, so that
        # negation cannot order -0.0 against 0.0.
        neg = jnp.where(scores == 0, jnp.zeros_like(scores), -scores)
        return jax.lax.top_k(neg, k)[1].astype(index_dtype(jnp))

    def smallest_k_distinct(self, xp, scores, k):
        return self.topk_smallest(xp, scores, k)  # already a partial selection

    def chunk_pairs(self, x: Any) -> int:
        # jitted: the search's elementwise passes fuse, so the host's cache-sized chunks do not
        # apply
        return CHUNK_PAIRS

    def compact_pairs(self, x: Any) -> bool:
        return False  # data-dependent shapes do not trace under jax.jit

    def all_true(self, xp: Any, mask: Any) -> bool:
        return False  # traced values cannot be read under jax.jit

    def traced(self, x: Any) -> bool:
        return isinstance(x, jax.core.Tracer)

    def _pallas(self, *arrays: Any) -> Any:
        """(module, interpret) when the Pallas kernels apply, else None."""
        if self.kernels == "never":
            return None
        if self.kernels == "auto" and jax.default_backend() != "gpu":
            return None
        if any(jnp.issubdtype(a.dtype, jnp.floating) and a.dtype not in (jnp.float32, jnp.float64)
               for a in arrays):
            return None
        from . import pallas

        return pallas, self.kernels == "interpret"

    def pointconv(self, xp, layers, emb, values, nbr_idx, nbr_mask):
        d = emb.shape[-1]
        shapes = [tuple(t.shape) for wb in layers for t in wb]
        pk = self._pallas(emb, values)
        if (pk is not None and d <= 64 and emb.dtype == values.dtype
                and values.shape[1] <= pk[0].MAX_N_CONV
                and shapes == [(d, 32), (32,), (32, 32), (32,), (32, 16), (16,)]):
            return pk[0].pointconv(layers, emb, values, nbr_idx, nbr_mask, interpret=pk[1])
        return super().pointconv(xp, layers, emb, values, nbr_idx, nbr_mask)

    def gather(self, xp: Any, x: Any, idx: Any) -> Any:
        return _gather(x, idx)

    def take_along_last(self, xp: Any, x: Any, idx: Any) -> Any:
        return jnp.take_along_axis(x, idx, axis=-1)

    def swish(self, xp: Any, x: Any) -> Any:
        return jax.nn.silu(x)

    def linear(self, w, b, x):
        # On CPU, where the input is much wider than the output (in >= WIDE_IN·out: LieConv's output
        # linear, 16·chin -> chout), ``x @ w`` as x times the transpose of wᵀ, a separate (out, in)
        # array behind an optimization barrier. XLA:CPU then computes the weight gradient as gᵀ @ x,
        # an (out, in) result, which runs faster on the springs model's (1200, 1536) rows than xᵀ @
        # g, (in, out), in first and second derivatives alike; the barrier keeps XLA from folding
        # the transpose back into the product. This shortens the springs training step and leaves
        # forwards unchanged. Elsewhere: the reference.
        i, o = w.shape
        if i < WIDE_IN * o or x.dtype != w.dtype or not _on_cpu(x):
            return super().linear(w, b, x)
        wt = jax.lax.optimization_barrier(jnp.transpose(w))
        y = jax.lax.dot_general(jnp.reshape(x, (-1, i)), wt, (((1,), (1,)), ((), ()))) + b
        return jnp.reshape(y, (*x.shape[:-1], o))

    def bn_swish(self, xp, p, s, x, mask, train):
        # Training mode: one ``custom_vjp`` op (:func:`_masked_bn_swish`) whose backward is the
        # batch-norm gradient restricted to valid rows, so that XLA gets two reductions and one
        # elementwise pass each way. Autodiff through the reference's composition made XLA
        # materialise the broadcast mask and ~20 separate passes over the weight net's (bs, m, k,
        # 32) activations (a RotMNIST T(2) training step: the largest fusions of its profile). Eval
        # mode: the reference. The running statistics are not differentiated (as in torch's fused
        # op).
        if not train:
            return super().bn_swish(xp, p, s, x, mask, train)
        from lieconv_core.nn.layers import BN_EPS, BN_MOMENTUM

        c = x.shape[-1]
        x2 = jnp.reshape(x, (-1, c))
        m = (jnp.ones((x2.shape[0], 1), x.dtype) if mask is None
             else jnp.reshape(mask, (-1, 1)).astype(x.dtype))
        y, mean, var, n = _masked_bn_swish(x2, p["w"], p["b"], m, BN_EPS)
        unbiased = var * n / jnp.maximum(n - 1, jnp.ones_like(n))
        new_s = {"mean": (1 - BN_MOMENTUM) * s["mean"] + BN_MOMENTUM * mean,
                 "var": (1 - BN_MOMENTUM) * s["var"] + BN_MOMENTUM * unbiased}
        return jnp.reshape(y, x.shape), new_s

    def grad(self, f: Callable) -> Callable:
        return jax.grad(f)

    def jit(self, f: Callable) -> Callable:
        return jax.jit(f)

    def synchronize(self, x: Any = None) -> None:
        if x is not None:
            jax.block_until_ready(x)

    def to_numpy(self, x: Any):
        import numpy as np

        return np.asarray(x)


class JaxKernels(NativeKernels):
    """The Pallas kernels' FPS and neighbour search on GPU (``fused``: the group is covered) and,
    elsewhere, FPS as one jitted ``lax.fori_loop`` (no Python unrolling).

    Parameters
    ----------
    adapter : JaxAdapter
        The adapter whose kernel mode applies.
    group : Group
        The group.
    fused : bool
        Whether the Pallas kernels cover the group.
    """

    def __init__(self, adapter: JaxAdapter, group: Any, fused: bool):
        self.adapter = adapter
        self.group = group
        self.fused = fused

    def fps(self, xp, elems, q, mask, m, u):
        pk = self.adapter._pallas(elems) if self.fused else None
        if pk is not None and q is None and elems.shape[1] <= pk[0].MAX_N:
            return pk[0].fps(elems, mask, m, u, interpret=pk[1])
        return _lax_fps(self.group, m, elems, q, mask, u)

    def neighbourhood(self, xp, query, points, k, r, priorities, knn):
        pk = self.adapter._pallas(query[0], points[0]) if self.fused else None
        if (pk is not None and query[1] is None and points[1] is None
                and 1 <= k <= points[0].shape[1] and points[0].shape[1] <= pk[0].MAX_N
                and query[0].dtype == points[0].dtype):
            return pk[0].neighbourhood(query, points, k, r, priorities, knn, interpret=pk[1])
        return None


def _bn_swish_forward(x, w, b, m, eps):
    """y = swish((x − μ)·(w/√max(σ², eps)) + b)·m with μ, σ² the mean and biased variance over the
    rows where m = 1, in the reference's order of operations. x (N, c), m (N, 1) 0/1."""
    n = jnp.maximum(jnp.sum(m), jnp.ones((), x.dtype))
    mean = jnp.sum(x * m, axis=0) / n
    xc = x - mean
    xm = xc * m
    var = jnp.sum(xm * xm, axis=0) / n
    scale = w / jnp.sqrt(jnp.maximum(var, eps))
    pre = xc * scale + b
    return jax.nn.silu(pre) * m, (mean, var, n, scale, pre)


@partial(jax.custom_vjp, nondiff_argnums=(4,))
def _masked_bn_swish(x, w, b, m, eps):
    """(y, μ, σ², n) of :func:`_bn_swish_forward`; the gradient flows through y only (μ, σ², n
    are running-statistics inputs, not differentiated)."""
    y, (mean, var, n, _, _) = _bn_swish_forward(x, w, b, m, eps)
    return y, mean, var, n


def _masked_bn_swish_fwd(x, w, b, m, eps):
    y, (mean, var, n, scale, pre) = _bn_swish_forward(x, w, b, m, eps)
    return (y, mean, var, n), (x, m, mean, var, n, scale, pre)


def _masked_bn_swish_bwd(eps, res, cts):
    x, m, mean, var, n, scale, pre = res
    sig = jax.nn.sigmoid(pre)
    g = cts[0] * m * (sig * (1 + pre * (1 - sig)))  # swish', zero on invalid rows
    gb = jnp.sum(g, axis=0)
    xc = x - mean
    gxc = jnp.sum(g * xc, axis=0)  # Σ g·(x − μ) over valid rows
    inv2 = 1 / jnp.maximum(var, eps)
    # dx = (w/σ)·(g − mean(g) − x̂·mean(g·x̂)) on valid rows, zero elsewhere (no x̂ term for
    # channels whose variance is clamped to eps: σ is constant there)
    gvar = jnp.where(var >= eps, gxc * inv2 / n, jnp.zeros_like(gxc))
    gx = (g - gb / n - xc * gvar) * scale * m
    return gx, gxc * jnp.sqrt(inv2), gb, jnp.zeros_like(m)


_masked_bn_swish.defvjp(_masked_bn_swish_fwd, _masked_bn_swish_bwd)


def _gather(x: Any, idx: Any) -> Any:
    """x (bs, n, ...), idx (bs, ...) -> x[b, idx[b]]: one advanced-indexing gather."""
    rows = jnp.arange(x.shape[0]).reshape((-1,) + (1,) * (idx.ndim - 1))
    return x[rows, idx]


@partial(jax.jit, static_argnums=(0, 1))
def _lax_fps(group: Any, m: int, elems: Any, q: Any, mask: Any, u: Any) -> Any:
    """FPS as one lax.fori_loop over the m steps. Jitted with the group and m static, so eager
    calls compile once per shape instead of re-tracing the loop every call."""
    bs, n = mask.shape
    start, dmin0 = fps_start(jnp, mask, u, elems.dtype)
    dist = fps_distance(ADAPTER, jnp, group, elems, q, mask)  # the reference's step, shared

    def body(t, carry):
        chosen, dmin, cur = carry
        chosen = chosen.at[:, t].set(cur)
        dmin = jnp.minimum(dmin, dist(cur))
        return chosen, dmin, jnp.argmax(dmin, axis=1)

    chosen0 = jnp.zeros((bs, m), dtype=start.dtype)
    chosen, _, _ = jax.lax.fori_loop(0, m, body, (chosen0, dmin0, start))
    return chosen.astype(jnp.int64) if jax.config.jax_enable_x64 else chosen


ADAPTER = JaxAdapter()
