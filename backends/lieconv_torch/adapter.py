"""The torch adapter: native top-k/sort, autograd, CUDA synchronisation, and (optionally) the Triton
kernels of :mod:`lieconv_torch.kernels`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import torch

from lieconv_core._numpy_fast import blocked_contract, contract_block
from lieconv_core.adapter import (
    CHUNK_ELEMS_DEVICE,
    CHUNK_ELEMS_HOST,
    CHUNK_PAIRS,
    CHUNK_PAIRS_HOST,
    WIDE_IN,
    ReferenceAdapter,
)
from lieconv_core.groups import supports_group
from lieconv_core.neighbourhoods import NativeKernels
from lieconv_core.neighbourhoods.primitives import QUANT, fps_start
from lieconv_core.rows import offset_rows

#: LIECONV_TORCH_KERNELS: "auto" (default: Triton kernels for CUDA tensors of supported groups),
#: "never" (always the reference path)
_KERNELS_ENV = "LIECONV_TORCH_KERNELS"


def xp_torch() -> Any:
    import array_api_compat.torch as xp

    return xp


class TorchAdapter(ReferenceAdapter):
    """Torch adapter: native top-k and sort, autograd, CUDA synchronisation, Triton kernels.

    Parameters
    ----------
    kernels : str or None
        "auto" uses the Triton kernels of :mod:`lieconv_torch.kernels` for CUDA tensors (when
        triton imports), "never" disables them, "interpret" runs them under the Triton interpreter
        on any device (tests; slow). None: the ``LIECONV_TORCH_KERNELS`` environment variable,
        default "auto".
    """

    name = "torch"

    def __init__(self, kernels: str | None = None):
        kernels = kernels or os.environ.get(_KERNELS_ENV, "auto")
        if kernels not in ("auto", "never", "interpret"):
            raise ValueError(f"kernels must be 'auto', 'never' or 'interpret', got {kernels!r}")
        self.kernels = kernels
        self._mod: Any = None
        #: True inside :func:`functional_mode`: gradients by ``torch.func``, plain torch ops
        self.functional = False

    # --- kernel dispatch -----------------------------------------------------------------------
    def _launchers(self, *tensors: Any) -> Any:
        """The launcher module when the kernels apply to these tensors, else None."""
        if self.kernels == "never":
            return None
        if self.kernels == "auto" and not all(getattr(t, "is_cuda", False) for t in tensors):
            return None
        if any(t.dtype not in (torch.float32, torch.float64) for t in tensors
               if t.is_floating_point()):
            return None
        if self._mod is None:
            import importlib.util

            if importlib.util.find_spec("triton") is None:  # no triton: the reference path
                self.kernels = "never"
                return None
            from .kernels import load

            self._mod = load(interpret=self.kernels == "interpret")
        return self._mod

    def device(self, xp: Any, name: str | None = None) -> Any:
        """"cpu", "cuda", "cuda:1", ... -> a ``torch.device``.

        Parameters
        ----------
        xp : module
            The torch namespace.
        name : str or None
            The device string; None: "cpu".

        Returns
        -------
        torch.device

        Raises
        ------
        RuntimeError
            For a malformed string or a CUDA device that does not exist here.
        """
        dev = torch.device(name or "cpu")  # RuntimeError on a malformed string
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device on this machine")
        if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
            raise RuntimeError(f"torch sees {torch.cuda.device_count()} CUDA device(s)")
        return dev

    def configure(self, *, float64: bool = False, threads: int | None = None) -> None:
        """Set torch's intra-op CPU threads (application-level; see
        :meth:`ReferenceAdapter.configure`).

        Parameters
        ----------
        float64 : bool
            Unused: torch always has float64.
        threads : int or None
            ``torch.set_num_threads``; None: leave as is.
        """
        if threads:
            torch.set_num_threads(int(threads))

    def native_kernels(self, group: Any) -> Any:
        """The Triton kernels' FPS and neighbour search where the group declares them
        (:func:`lieconv_core.groups.supports_group`), and the numpy FPS loop for Euclidean groups
        on CPU tensors.

        Parameters
        ----------
        group : Group
            The group.

        Returns
        -------
        NativeKernels or None
            A :class:`TorchKernels`, or None where neither applies to ``group``.
        """
        fused = supports_group(group)
        if not (fused or group.euclidean_distance):
            return None
        return TorchKernels(self, fused, bool(group.euclidean_distance))

    def pointconv(self, xp, layers, emb, values, nbr_idx, nbr_mask):
        shapes = [tuple(t.shape) for wb in layers for t in wb]
        d = emb.shape[-1]
        ok = shapes == [(d, 32), (32,), (32, 32), (32,), (32, 16), (16,)] and d <= 64
        mod = self._launchers(emb, values, *[t for wb in layers for t in wb]) if ok else None
        if mod is not None and emb.dtype == values.dtype:
            return mod.pointconv(layers, emb, values, nbr_idx, nbr_mask)
        return super().pointconv(xp, layers, emb, values, nbr_idx, nbr_mask)

    def contract(self, xp, w, values, nbr_idx, nbr_mask, weight_major=False):
        # CPU: :func:`_blocked_contract` (the neighbour values gathered in cache-sized blocks, never
        # as one (bs, m, k, c) array), under autograd as :class:`_BlockedContract` (which saves w
        # and values, not the gathered values); GPUs and torch.compile: the reference.
        if (values.device.type != "cpu" or w.dtype != values.dtype or self.tracing()
                or self.functional):
            return super().contract(xp, w, values, nbr_idx, nbr_mask, weight_major)
        if nbr_mask is not None and not self.all_true(xp, nbr_mask):
            w = torch.where(nbr_mask[..., None], w, torch.zeros_like(w))
        bs, m, k, cm = w.shape
        n, c = values.shape[1], values.shape[2]
        w = torch.reshape(w, (bs * m, k, cm))
        src = torch.reshape(values, (bs * n, c))
        flat = torch.reshape(offset_rows(xp, nbr_idx, n), (bs * m, k))
        if torch.is_grad_enabled() and (w.requires_grad or src.requires_grad):
            partial = _BlockedContract.apply(w, src, flat, weight_major)
        else:
            partial = _blocked_contract(w, src, flat, weight_major)
        return torch.reshape(partial, (bs, m, cm * c))

    def chunk_elems(self, x: Any) -> int:
        return CHUNK_ELEMS_HOST if x.device.type == "cpu" else CHUNK_ELEMS_DEVICE

    def chunk_pairs(self, x: Any) -> int:
        return CHUNK_PAIRS_HOST if x.device.type == "cpu" else CHUNK_PAIRS

    def compact_pairs(self, x: Any) -> bool:
        # GPUs: the Triton kernels, no host syncs; torch.compile: no data-dependent shapes
        return x.device.type == "cpu" and not torch.compiler.is_compiling()

    def tracing(self) -> bool:
        return torch.compiler.is_compiling()

    def all_true(self, xp: Any, mask: Any) -> bool:
        # no GPU syncs, no host reads inside a compiled graph
        return (mask.device.type == "cpu" and not torch.compiler.is_compiling()
                and bool(torch.all(mask)))

    def take_along_last(self, xp: Any, x: Any, idx: Any) -> Any:
        return torch.gather(x, -1, idx)

    def search_rows(self, xp: Any, counts: Any, targets: Any) -> Any:
        # torch searches each row natively: no offset copies of the (rows, n) counts
        return torch.searchsorted(counts, targets.contiguous(), side="left",
                                  out_int32=counts.dtype == torch.int32)

    def topk_smallest(self, xp: Any, scores: Any, k: int) -> Any:
        # torch.topk does not promise an order among ties; a stable sort does (lower index first).
        # On CPU, float32 rows of at least :data:`_TOPK_MIN_N` scores take topk of distinct int64
        # keys instead — the score's bits mapped to an order-preserving int32 (zeros made +0.0
        # first), times 2^32, plus the index — whose order is the stable sort's, and which is much
        # faster than sorting whole kNN-sized rows.
        n = scores.shape[-1]
        if scores.dtype != torch.float32 or scores.device.type != "cpu" or n < _TOPK_MIN_N:
            return torch.sort(scores, dim=-1, stable=True).indices[..., :k]
        bits = torch.where(scores == 0, torch.zeros_like(scores), scores).view(torch.int32)
        # negative floats order backwards as integers: flip their magnitude bits
        key = torch.bitwise_xor(bits, torch.bitwise_and(bits >> 31, 0x7FFFFFFF)).to(torch.int64)
        key = key.mul_(1 << 32).add_(torch.arange(n, device=scores.device))
        return torch.topk(key, k, dim=-1, largest=False, sorted=True).indices

    def smallest_k_distinct(self, xp: Any, scores: Any, k: int) -> Any:
        # a partial selection: faster than a full sort of the rows on CPU
        return torch.topk(scores, k, dim=-1, largest=False, sorted=True).indices

    def swish(self, xp: Any, x: Any) -> Any:
        return torch.nn.functional.silu(x) if self.functional else _swish(x)

    def linear(self, w, b, x):
        # addmm: the bias enters the GEMM (no separate pass and (..., out) buffer for it).
        #
        # A wide weight (in >= :data:`~lieconv_core.adapter.WIDE_IN`·out: LieConv's output linear)
        # that autograd differentiates enters column-major, w = (wᵀ contiguous)ᵀ: autograd gives a
        # weight gradient the layout of the weight, so it then computes gᵀ @ x, an (out, in)
        # product, instead of xᵀ @ g — in the forward's backward and in the inner gradient's, under
        # double backprop. For LieConv's output linear (e.g. (1200, 1536) rows → 96) that product is
        # the faster of the two on CPU BLAS, and the springs training step is shorter for it. The
        # copy is out·in elements, small next to x.
        if (w.shape[0] >= WIDE_IN * w.shape[1] and w.requires_grad
                and torch.is_grad_enabled()):
            w = w.t().contiguous().t()
        if x.ndim == 2:
            return torch.addmm(b, x, w)
        return torch.reshape(torch.addmm(b, torch.reshape(x, (-1, x.shape[-1])), w),
                             (*x.shape[:-1], w.shape[-1]))

    def matmul(self, xp, a, b):
        # a @ b through :class:`_LayoutMatmul` (the result's layout chosen for speed, in the forward
        # and in every derivative) where some product is narrow; else plain matmul. A narrow K
        # counts too: it is the N of the gradient product g @ bᵀ.
        if (self.functional or a.ndim < 2 or a.shape[:-2] != b.shape[:-2]  # broadcasting: plain
                or min(a.shape[-2], b.shape[-1], a.shape[-1]) >= _NARROW):
            return torch.matmul(a, b)
        return _LayoutMatmul.apply(a, b)

    def weightnet(self, xp, layers, emb):
        # The reference weight net with the bias added inside the GEMM (addmm) and, where autograd
        # does not need the pre-activation, swish in place: two passes over the (·, 32) activations
        # per layer instead of three, and no new buffer for the swish.
        if self.functional:
            return super().weightnet(xp, layers, emb)
        lead = emb.shape[:-1]
        h = torch.reshape(emb, (-1, emb.shape[-1]))
        for w, b in layers:
            h = torch.addmm(b, h, w)
            if torch.is_grad_enabled() and h.requires_grad:
                h = _Swish.apply(h)
            else:
                h = torch.nn.functional.silu(h, inplace=True)
        return torch.reshape(h, (*lead, h.shape[-1]))

    def bn_swish(self, xp, p, s, x, mask, train):
        # Training mode: one autograd op (:class:`_MaskedBNSwish`) with a hand-written backward, ~7
        # passes over x forward and ~8 backward where autograd through the reference's composition
        # makes ~11 and ~20 (the LieConv weight net runs it on (bs, m, k, 32) arrays); eval mode
        # without autograd: the reference's arithmetic ((x − μ)·(w/σ) + b, swish, zero where masked)
        # in one new buffer updated in place (the reference makes six fresh (..., c) arrays; fresh
        # large buffers are page-faulted on every call); with autograd, the reference.
        if self.functional:
            return super().bn_swish(xp, p, s, x, mask, train)
        if not train:
            if torch.is_grad_enabled() and any(t.requires_grad for t in (x, p["w"], p["b"])):
                return super().bn_swish(xp, p, s, x, mask, train)
            return self._bn_swish_eval(p, s, x, mask), s
        from lieconv_core.nn.layers import BN_EPS, BN_MOMENTUM

        c = x.shape[-1]
        m = None if mask is None else torch.reshape(mask, (-1, 1)).to(x.dtype)
        y, mean, var, n = _MaskedBNSwish.apply(torch.reshape(x, (-1, c)), p["w"], p["b"], m,
                                               BN_EPS)
        unbiased = var * n / torch.clamp(n - 1, min=1)
        new_s = {"mean": (1 - BN_MOMENTUM) * s["mean"] + BN_MOMENTUM * mean,
                 "var": (1 - BN_MOMENTUM) * s["var"] + BN_MOMENTUM * unbiased}
        return torch.reshape(y, x.shape), new_s

    @staticmethod
    def _bn_swish_eval(p, s, x, mask):
        from lieconv_core.nn.layers import BN_EPS

        scale = p["w"] / torch.sqrt(torch.clamp(s["var"], min=BN_EPS))
        y = torch.sub(x, s["mean"]).mul_(scale).add_(p["b"])
        y = torch.nn.functional.silu(y, inplace=True)
        return y if mask is None else y.masked_fill_(~mask[..., None], 0)

    def grad(self, f: Callable) -> Callable:
        """The gradient function of a scalar function of one tensor, differentiable again.

        Outside :func:`functional_mode` the gradient is taken by ``torch.autograd.grad`` with
        ``create_graph=True``, so it can be differentiated again; inside, by ``torch.func.grad``.

        Parameters
        ----------
        f : callable
            ``f(x, *args)`` -> a scalar tensor.

        Returns
        -------
        callable
            ``(x, *args)`` -> the gradient of ``f`` with respect to the tensor ``x``, shaped like
            ``x``.
        """

        if self.functional:
            return lambda x, *args: torch.func.grad(f)(x, *args)

        def g(x: torch.Tensor, *args: Any) -> torch.Tensor:
            with torch.enable_grad():
                x = x if x.requires_grad else x.detach().requires_grad_(True)
                (out,) = torch.autograd.grad(f(x, *args), x, create_graph=True)
            return out

        return g

    def synchronize(self, x: Any = None) -> None:
        if torch.cuda.is_available() and (x is None or getattr(x, "is_cuda", False)):
            torch.cuda.synchronize()

    def to_numpy(self, x: Any):
        return x.detach().cpu().numpy()


@contextlib.contextmanager
def functional_mode():
    """Within it the adapter differentiates with ``torch.func.grad`` and uses plain torch ops
    instead of its custom autograd ops (which ``torch.func`` transforms cannot take), so that a
    whole training step — gradients of gradients included — is one function of the parameters
    for ``torch.func.grad_and_value`` and ``torch.compile`` (:class:`lieconv_torch.train.
    TorchTrainer` with ``compile=True``); AOTAutograd cannot compile double backward."""
    old, ADAPTER.functional = ADAPTER.functional, True
    try:
        yield ADAPTER
    finally:
        ADAPTER.functional = old


def _swish(x: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return _Swish.apply(x)
    return torch.nn.functional.silu(x)


class _Swish(torch.autograd.Function):
    """silu(x) whose gradient is :class:`_SwishGrad`, an op with a hand-written derivative: the
    Hamiltonian models differentiate the network's gradient again (double backprop), where
    autograd's own derivative of ``silu_backward`` takes ~18 elementwise passes and this one ~8
    (fewer passes over the springs model's activations)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.nn.functional.silu(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return _SwishGrad.apply(g, x)


class _SwishGrad(torch.autograd.Function):
    """g·swish'(x), with swish'(x) = s(1 + x(1 − s)) and swish''(x) = s(1 − s)(2 + x(1 − 2s)),
    s = sigmoid(x). Its backward is in place where nothing differentiates it again, and the same
    formulas as differentiable ops under ``create_graph`` (third and higher derivatives)."""

    @staticmethod
    def forward(ctx, g, x):
        ctx.save_for_backward(g, x)
        return torch.ops.aten.silu_backward(g, x)

    @staticmethod
    def backward(ctx, gg):
        g, x = ctx.saved_tensors
        need_g, need_x = ctx.needs_input_grad
        if torch.is_grad_enabled():
            s = torch.sigmoid(x)
            d2 = s * (1 - s) * (2 + x * (1 - 2 * s))
            return (_SwishGrad.apply(gg, x) if need_g else None,
                    gg * g * d2 if need_x else None)
        dg = torch.ops.aten.silu_backward(gg, x) if need_g else None
        dx = None
        if need_x:
            s = torch.sigmoid(x)
            dx = torch.mul(s, -2).add_(1).mul_(x).add_(2)  # 2 + x(1 − 2s)
            dx.mul_(s).mul_(s.neg_().add_(1)).mul_(gg).mul_(g)  # · s(1 − s) · gg · g
        return dg, dx


def _blocked_contract(w: torch.Tensor, src: torch.Tensor, flat: torch.Tensor,
                      weight_major: bool) -> torch.Tensor:
    """:func:`lieconv_core._numpy_fast.blocked_contract` with torch's gather and batched
    products: w (rows, k, cm), src (N, c), flat (rows, k) -> (rows, cm, c) weight-major, else
    (rows, c, cm)."""
    return blocked_contract(
        w, src, flat, weight_major, lambda shape: torch.empty(shape, dtype=w.dtype),
        lambda s, idx, out: torch.index_select(s, 0, idx, out=out),
        lambda a, b, out: torch.matmul(a, b, out=out))


class _BlockedContract(torch.autograd.Function):
    """:func:`_blocked_contract` under autograd (CPU). Saves w, the values and the indices — not
    the (rows, k, c) gathered values autograd would keep — and computes the gradients block by
    block too: per query, with P = valsᵀ w (channel-major) or wᵀ vals (weight-major),
    ∂w = vals ∂Pᵀ-or-∂P (k × cm) and ∂vals = w ∂P-or-∂Pᵀ (k × c), the latter added into the
    values' gradient at the neighbour rows (index_add_). Under create_graph the same formulas run
    as differentiable ops on the whole gathered array, so higher derivatives work."""

    @staticmethod
    def forward(ctx, w, src, flat, weight_major):
        w, src = w.contiguous(), src.contiguous()
        ctx.save_for_backward(w, src, flat)
        ctx.weight_major = weight_major
        return _blocked_contract(w, src, flat, weight_major)

    @staticmethod
    def backward(ctx, g):
        w, src, flat = ctx.saved_tensors
        need_w, need_v = ctx.needs_input_grad[:2]
        g = g.contiguous()
        grads = _contract_grads if torch.is_grad_enabled() else _blocked_contract_grads
        gw, gv = grads(w, src, flat, g, ctx.weight_major, need_w, need_v)
        return gw, gv, None, None


def _contract_grads(w, src, flat, g, weight_major, need_w, need_v):
    """Gradients of the contraction (see :class:`_BlockedContract`) as differentiable ops."""
    vals = src[flat]  # (rows, k, c)
    gw = vals @ (g.mT if weight_major else g) if need_w else None
    gv = None
    if need_v:
        gvals = w @ (g if weight_major else g.mT)
        gv = torch.zeros_like(src).index_add(0, torch.reshape(flat, (-1,)),
                                             torch.reshape(gvals, (-1, src.shape[1])))
    return gw, gv


def _blocked_contract_grads(w, src, flat, g, weight_major, need_w, need_v):
    """Gradients of the contraction (see :class:`_BlockedContract`), one block of queries at a
    time: the block's neighbour values are gathered into a reused buffer, as in the forward."""
    rows, k, cm = w.shape
    c = src.shape[1]
    step = contract_block(k, c, w.element_size())
    n_buf = min(step, rows) * k
    gw = torch.empty_like(w) if need_w else None
    gv = torch.zeros_like(src) if need_v else None
    vbuf = torch.empty((n_buf, c), dtype=w.dtype) if need_w else None
    gbuf = torch.empty((n_buf, c), dtype=w.dtype) if need_v else None
    for a in range(0, rows, step):
        b = min(rows, a + step)
        sel = torch.reshape(flat[a:b], (-1,))
        gb = g[a:b]
        if need_w:
            vals = torch.index_select(src, 0, sel, out=vbuf[:(b - a) * k])
            torch.matmul(torch.reshape(vals, (b - a, k, c)), gb.mT if weight_major else gb,
                         out=gw[a:b])
        if need_v:
            gvals = torch.reshape(gbuf[:(b - a) * k], (b - a, k, c))
            torch.matmul(w[a:b], gb if weight_major else gb.mT, out=gvals)
            gv.index_add_(0, sel, torch.reshape(gvals, (-1, c)))
    return gw, gv


#: rows at least this long take topk_smallest's key selection (at 100, as fast as the sort)
_TOPK_MIN_N = 256
#: a product dimension below this is "narrow" (BLAS vectorises along the result's contiguous dim)
_NARROW = 16


def _matmul_wide_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b with the result's contiguous dimension the wider of M and N: CPU BLAS vectorises
    along it: a (200, 96, 96) @ (200, 96, 6) product is several times faster computed as
    ((200, 6, 96) @ (200, 96, 96))ᵀ than directly, by how much depending on the operands'
    strides."""
    if b.shape[-1] < _NARROW and b.shape[-1] < a.shape[-2]:
        return torch.matmul(b.mT, a.mT).mT
    return torch.matmul(a, b)


class _LayoutMatmul(torch.autograd.Function):
    """a @ b whose forward and gradients (themselves _LayoutMatmul products, so derivatives of
    every order) all go through :func:`_matmul_wide_rows`. Autograd's own matmul backward computes
    ∂a = g @ bᵀ with the contraction dimension last: narrow in LieConv's dense contraction
    (n = 6 points per spring system), where that layout is several times slower."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return _matmul_wide_rows(a, b)

    @staticmethod
    def backward(ctx, g):
        a, b = ctx.saved_tensors
        need_a, need_b = ctx.needs_input_grad
        if need_a and need_b and a.shape[-1] < _NARROW and torch.is_grad_enabled():
            return _MatmulGrads.apply(g, a, b)  # to be differentiated again: see there
        ga = _LayoutMatmul.apply(g, b.mT) if need_a else None
        gb = _LayoutMatmul.apply(a.mT, g) if need_b else None
        return ga, gb


class _MatmulGrads(torch.autograd.Function):
    """Both gradients of a @ b with a narrow contraction K, (g @ bᵀ, aᵀ @ g), as one op, for
    double backprop: its derivative w.r.t. g, gga @ b + a @ ggb, is then one product over the
    joined K axis, [gga | a] @ [b ; ggb], instead of two products of g's (M, N) size and their
    sum — in the springs model's dense contraction (K = 6 points) a (200, 96, 96) product and a
    pass over three such arrays less per layer and vector field (about half the time).
    Every product goes through :class:`_LayoutMatmul`, so derivatives of every order work."""

    @staticmethod
    def forward(ctx, g, a, b):
        ctx.save_for_backward(g, a, b)
        return _matmul_wide_rows(g, b.mT), _matmul_wide_rows(a.mT, g)

    @staticmethod
    def backward(ctx, gga, ggb):
        g, a, b = ctx.saved_tensors
        need_g, need_a, need_b = ctx.needs_input_grad
        dg = (_LayoutMatmul.apply(torch.cat([gga, a], dim=-1), torch.cat([b, ggb], dim=-2))
              if need_g else None)
        da = _LayoutMatmul.apply(g, ggb.mT) if need_a else None
        db = _LayoutMatmul.apply(gga.mT, g) if need_b else None
        return dg, da, db


class _MaskedBNSwish(torch.autograd.Function):
    """y = swish((x − μ)·w/σ + b)·m with μ, σ² the mean and biased variance of x over the rows with
    m = 1: x (N, c), w, b (c,), m (N, 1) 0/1 or None (all rows) -> y (N, c) (zero rows where
    m = 0), μ, σ² (c,), n = Σm. The same numbers as the reference ``masked_batchnorm`` + swish
    (sums in another order). The backward is the batch-norm gradient restricted to valid rows; under
    ``create_graph`` (double backward) it differentiates the op's composition with autograd
    instead, so higher derivatives are exact too."""

    # Fresh buffers of this size (tens of MB) are mapped from the OS and page-faulted on first
    # write (~4x the cost of the same pass in place): both passes build their results in place
    # and take the per-channel sums as small GEMMs (diag(aᵀb), 32×32) instead of materialising
    # products — two new (N, c) arrays forward and two backward, where the composition makes ~10
    # and ~20.

    @staticmethod
    def forward(ctx, x, w, b, m, eps):
        if m is None:
            n = torch.tensor(float(max(1, x.shape[0])), dtype=x.dtype, device=x.device)
            mean = torch.sum(x, dim=0) / n
            xm = torch.sub(x, mean)
        else:
            n = torch.clamp(torch.sum(m), min=1)
            mean = torch.mv(x.T, m[:, 0]) / n
            xm = torch.sub(x, mean).mul_(m)  # x − μ on valid rows, 0 elsewhere
        var = torch.diagonal(xm.T @ xm) / n
        inv = torch.rsqrt(torch.clamp(var, min=eps))  # √max(var, eps), the original's
        scale = w * inv
        pre = xm.mul_(scale).add_(b)  # (b on invalid rows, where y is zeroed)
        y = torch.nn.functional.silu(pre)
        if m is not None:
            y.mul_(m)
        ctx.eps = eps
        ctx.save_for_backward(x, w, b, m, pre, mean, scale, inv, n, var)
        ctx.mark_non_differentiable(mean, var, n)
        return y, mean, var, n

    @staticmethod
    def backward(ctx, gy, _gmean, _gvar, _gn):
        x, w, b, m, pre, mean, scale, inv, n, var = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph: a differentiable backward
            wrt = [t for t, nd in zip((x, w, b), need) if nd]
            grads = iter(torch.autograd.grad(_bn_swish_composite(x, w, b, m, ctx.eps), wrt, gy,
                                             create_graph=True))
            return (*(next(grads) if nd else None for nd in need), None, None)
        if m is None:
            g = torch.ops.aten.silu_backward(gy, pre)
        else:
            g = gy * m
            g = torch.ops.aten.silu_backward.grad_input(g, pre, grad_input=g)  # 0 on invalid rows
        gb = torch.sum(g, dim=0)
        xc = x - mean
        gxc = torch.diagonal(g.T @ xc)  # Σ g·(x − μ) over valid rows (g is 0 elsewhere)
        # dx = (w/σ)·(g − mean(g) − x̂·mean(g·x̂)) on valid rows, zero elsewhere, built in xc
        # (channels whose variance is clamped to eps have a constant σ: no x̂ term)
        gvar = torch.where(var >= ctx.eps, -gxc * (inv * inv) / n, torch.zeros_like(gxc))
        gx = xc.mul_(gvar).add_(g).sub_(gb / n).mul_(scale)
        if m is not None:
            gx.mul_(m)
        return gx, gxc * inv, gb, None, None


def _bn_swish_composite(x, w, b, m, eps):
    """_MaskedBNSwish's y as plain differentiable torch ops (its double backward)."""
    if m is None:
        m = torch.ones((x.shape[0], 1), dtype=x.dtype, device=x.device)
    n = torch.clamp(torch.sum(m), min=1)
    mean = torch.sum(x * m, dim=0) / n
    xc = x - mean
    var = torch.sum(xc * xc * m, dim=0) / n
    return torch.nn.functional.silu(xc * (w * torch.rsqrt(torch.clamp(var, min=eps))) + b) * m


class TorchKernels(NativeKernels):
    """FPS and neighbour search through the Triton kernels (``fused``: the group is covered;
    CUDA tensors, or any device under the interpreter) and, for Euclidean groups on CPU tensors
    outside autograd and ``torch.func``, FPS through numpy's in-place loop.

    Parameters
    ----------
    adapter : TorchAdapter
        The adapter whose kernel mode and launchers apply.
    fused : bool
        Whether the Triton kernels cover the group.
    euclidean : bool
        Whether the group's distance is Euclidean on the elements (numpy's FPS loop applies).
    """

    def __init__(self, adapter: TorchAdapter, fused: bool, euclidean: bool):
        self.adapter = adapter
        self.fused = fused
        self.euclidean = euclidean

    def fps(self, xp, elems, q, mask, m, u):
        mod = self.adapter._launchers(elems) if self.fused else None
        if mod is not None and q is None:
            out = mod.fps(elems, mask, m, u)
            if out is not None:
                return out
        if (self.euclidean and elems.shape[-1] <= 4 and elems.device.type == "cpu"
                and not elems.requires_grad and not self.adapter.functional):
            return _euclidean_fps(xp, elems, mask, m, u)
        return None

    def neighbourhood(self, xp, query, points, k, r, priorities, knn):
        mod = self.adapter._launchers(query[0], points[0]) if self.fused else None
        if (mod is not None and query[1] is None and points[1] is None
                and 1 <= k <= points[0].shape[1] and query[0].dtype == points[0].dtype):
            return mod.neighbourhood(query, points, k, r, priorities, knn)
        return None


def _euclidean_fps(xp: Any, elems: torch.Tensor, mask: torch.Tensor, m: int,
                   u: torch.Tensor) -> torch.Tensor:
    """The reference FPS for Euclidean groups on CPU tensors, through the numpy loop of
    :func:`lieconv_core._numpy_fast.euclidean_fps` on zero-copy views (same arithmetic, same
    indices): ~12 in-place ufunc calls per step cost less than torch's per-op dispatch (and its
    intra-op threads, which only add overhead on (bs, n) arrays of this size)."""
    from lieconv_core._numpy_fast import euclidean_fps

    scale = QUANT["float32" if elems.dtype == torch.float32 else "float64"]
    start, _ = fps_start(xp, mask, u, elems.dtype)
    idx = euclidean_fps(elems.detach().contiguous().numpy(), mask.contiguous().numpy(), m,
                        start.numpy(), scale)
    return torch.from_numpy(idx)


ADAPTER = TorchAdapter()
