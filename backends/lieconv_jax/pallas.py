"""Pallas kernels for the jax adapter: FPS, neighbour search and the fused PointConv.

Each kernel is a ``pallas_call`` over (cloud, query tile); ``interpret=True`` runs the same kernel
body through XLA on CPU (tests). Blocks are padded to powers of two (padding is masked off and
can never be selected: k <= n). Results equal the array-API code's
(:mod:`lieconv_core.neighbourhoods`, :class:`lieconv_core.adapter.ReferenceAdapter`): identical
indices (same quantisation, same tie rules), floats to rounding.

* FPS: one program per cloud runs all m steps (``lax.fori_loop`` inside the kernel).
* Neighbourhoods: a (tile of queries) x (all points) distance tile lives on-chip only; the k
  neighbours are picked by k rounds of "smallest key above the previous one" with key =
  (priority, +n if outside the ball) in ball mode or (quantised distance, index) in kNN mode,
  which is exactly the reference's stable top-k order.
* PointConv: weight net + contraction, one program per query; neighbour values are gathered
  on-chip by a one-hot matmul against the cloud's values block (O(k·n·c) per query: meant for
  the small clouds of QM9/springs-sized problems, n <= MAX_N_CONV; larger clouds use the reference
  path). Backward: ``jax.custom_vjp`` whose backward pass is a second Pallas kernel (recomputes
  the weight net, emits per-query partial parameter gradients and d(values) that are summed
  outside); that backward is itself differentiable (reverse-over-reverse through the reference).

Group coverage: Euclidean distances (T(d), Trivial(d), d <= 3) for FPS/neighbourhoods (their
search metric ‖Δx‖: ball radii arrive rescaled by ``Group.search_radius``, r / α or r / (1 − α));
pointconv is group-independent.
"""

from __future__ import annotations

import functools
import math
from collections import Counter

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from lieconv_core.neighbourhoods.primitives import QUANT

H, O = 32, 16
#: clouds larger than this use the reference / lax paths (a whole cloud, or a query tile x the
#: whole cloud, is held on-chip; the one-hot gather of pointconv costs O(k·n·c) per query)
MAX_N = 16384
MAX_N_CONV = 512
#: Pallas kernels put into a traced program, by name ("fps", "ball", "knn", "pointconv_fwd",
#: "pointconv_bwd"). Counted when the kernel is traced, so a program reused from jax's cache does
#: not count again: the tests clear the caches (``jax.clear_caches()``) and check that each case
#: ran the kernel itself, not the reference fallback.
TRACES: Counter = Counter()
HIGHEST = lax.Precision.HIGHEST


def _p2(x: int, lo: int = 1) -> int:
    return max(lo, 1 << max(0, math.ceil(math.log2(max(1, x)))))


def _scale(dtype) -> float:
    return QUANT["float32" if dtype == jnp.float32 else "float64"]


def _index_dtype():
    return jnp.int64 if jax.config.jax_enable_x64 else jnp.int32


def _pad_to(x, axis: int, size: int, value=0):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, pad, constant_values=value)


# --- FPS ---------------------------------------------------------------------------------------
def _fps_kernel(x_ref, mask_ref, start_ref, out_ref, *, m, E, NP, MP, scale):
    offs = lax.broadcasted_iota(jnp.int32, (NP,), 0)
    slots = lax.broadcasted_iota(jnp.int32, (MP,), 0)
    valid = mask_ref[0] != 0
    xs = [x_ref[0, e] for e in range(E)]
    dt = xs[0].dtype
    # two literal fills: the GPU lowering (jax 0.11) cannot negate a constant array
    dmin = jnp.where(valid, jnp.full((NP,), jnp.inf, dt), jnp.full((NP,), -jnp.inf, dt))

    def body(t, carry):
        chosen, dmin, cur = carry
        chosen = jnp.where(slots == t, cur, chosen)
        d2 = jnp.zeros((NP,), dt)
        hit = offs == cur
        for e in range(E):
            ce = jnp.sum(jnp.where(hit, xs[e], jnp.zeros_like(xs[e])))
            diff = xs[e] - ce
            d2 = d2 + diff * diff
        qd = jnp.floor(jnp.sqrt(d2) * scale + 0.5)
        dmin = jnp.where(valid, jnp.minimum(dmin, qd), dmin)
        best = jnp.max(dmin)
        cur = jnp.min(jnp.where(dmin == best, offs, NP))
        return chosen, dmin, cur

    chosen0 = jnp.zeros((MP,), jnp.int32)
    chosen, _, _ = lax.fori_loop(0, m, body, (chosen0, dmin, start_ref[0, 0]))
    out_ref[0] = chosen


# The entry points are jitted: an eager call would otherwise trace and compile its pallas_call
# anew every time (the kernel is a fresh functools.partial), which dominates small calls.
@functools.partial(jax.jit, static_argnames=("m", "interpret"))
def fps(elems, mask, m: int, u, interpret: bool = False):
    """(bs, m) FPS indices (the reference's start, quantisation and tie rules)."""
    # integer outputs: no gradient flows, and pallas_call has no JVP a caller's autodiff could
    # use (the Hamiltonian models differentiate through the whole network w.r.t. positions)
    elems, u = lax.stop_gradient(elems), lax.stop_gradient(u)
    bs, n, E = elems.shape
    count = jnp.cumsum(mask.astype(jnp.int32), axis=1)
    target = jnp.floor(u * count[:, -1].astype(u.dtype)).astype(jnp.int32)
    start = jnp.argmax(count > target[:, None], axis=1).astype(jnp.int32)[:, None]
    NP, MP = _p2(n, 16), _p2(m, 16)
    x = _pad_to(jnp.swapaxes(elems, 1, 2), 2, NP)
    mk = _pad_to(mask.astype(jnp.int32), 1, NP)
    kern = functools.partial(_fps_kernel, m=m, E=E, NP=NP, MP=MP, scale=_scale(elems.dtype))
    TRACES["fps"] += 1
    out = pl.pallas_call(
        kern, out_shape=jax.ShapeDtypeStruct((bs, MP), jnp.int32), grid=(bs,),
        in_specs=[pl.BlockSpec((1, E, NP), lambda b: (b, 0, 0)),
                  pl.BlockSpec((1, NP), lambda b: (b, 0)),
                  pl.BlockSpec((1, 1), lambda b: (b, 0))],
        out_specs=pl.BlockSpec((1, MP), lambda b: (b, 0)), interpret=interpret,
    )(x, mk, start)
    return out[:, :m].astype(_index_dtype())


# --- neighbourhoods ------------------------------------------------------------------------------
def _nbhd_kernel(q_ref, qm_ref, p_ref, pm_ref, prio_ref, r_ref, idx_ref, nm_ref, cnt_ref, *,
                 n, k, E, BM, NP, KP, knn, scale):
    offs = lax.broadcasted_iota(jnp.int32, (BM, NP), 1)
    slots = lax.broadcasted_iota(jnp.int32, (BM, KP), 1)
    qv = qm_ref[0] != 0
    pv = pm_ref[0] != 0
    dt = q_ref.dtype
    d2 = jnp.zeros((BM, NP), dt)
    for e in range(E):
        diff = q_ref[0, e][:, None] - p_ref[0, e][None, :]
        d2 = d2 + diff * diff
    d = jnp.sqrt(d2)
    valid = qv[:, None] & pv[None, :]
    if knn:
        # python literals, not constant arrays: see _fps_kernel
        key = jnp.where(valid, jnp.floor(d * scale + 0.5), jnp.inf)
        big = jnp.inf
        thresh = big
        cnt = jnp.zeros((BM,), dt)
        prev_k = jnp.full((BM,), -jnp.inf, dt)
    else:
        sel = valid & (d < r_ref[0, 0])
        prio = jnp.broadcast_to(prio_ref[0][None, :], (BM, NP))
        real = offs < n
        key = jnp.where(sel, prio, jnp.where(real, prio + n, 2 * n + offs))
        big = 2**31 - 1
        thresh = n
        cnt = jnp.sum(sel.astype(dt), axis=1)
        prev_k = jnp.full((BM,), -1, jnp.int32)

    def body(j, carry):
        idx, keep, pk, pi = carry
        cand = (key > pk[:, None]) | ((key == pk[:, None]) & (offs > pi[:, None]))
        ck = jnp.min(jnp.where(cand, key, big), axis=1)
        ci = jnp.min(jnp.where(cand & (key == ck[:, None]), offs, NP), axis=1)
        idx = jnp.where(slots == j, ci[:, None], idx)
        keep = jnp.where(slots == j, (ck < thresh).astype(jnp.int32)[:, None], keep)
        return idx, keep, ck, ci

    init = (jnp.zeros((BM, KP), jnp.int32), jnp.zeros((BM, KP), jnp.int32), prev_k,
            jnp.full((BM,), -1, jnp.int32))
    idx, keep, _, _ = lax.fori_loop(0, k, body, init)
    idx_ref[0] = idx
    nm_ref[0] = keep
    cnt_ref[0] = cnt


@functools.partial(jax.jit, static_argnames=("k", "knn", "interpret"))
def neighbourhood(query, points, k: int, r, priorities, knn: bool, interpret: bool = False):
    qe, _, qmask = query
    pe, _, pmask = points
    qe, pe, r = lax.stop_gradient(qe), lax.stop_gradient(pe), lax.stop_gradient(r)  # see fps
    bs, m, E = qe.shape
    n = pe.shape[1]
    dt = qe.dtype
    BM = min(16, _p2(m, 8))
    MP = -(-m // BM) * BM
    NP, KP = _p2(n, 16), _p2(k, 16)
    q = _pad_to(jnp.swapaxes(qe, 1, 2), 2, MP)
    qm = _pad_to(qmask.astype(jnp.int32), 1, MP)
    p = _pad_to(jnp.swapaxes(pe, 1, 2), 2, NP)
    pm = _pad_to(pmask.astype(jnp.int32), 1, NP)
    prio = _pad_to(priorities.astype(jnp.int32), 1, NP)
    r_arr = jnp.reshape(jnp.asarray(r).astype(dt), (1, 1))
    kern = functools.partial(_nbhd_kernel, n=n, k=k, E=E, BM=BM, NP=NP, KP=KP, knn=knn,
                             scale=_scale(dt))
    TRACES["knn" if knn else "ball"] += 1
    idx, keep, cnt = pl.pallas_call(
        kern,
        out_shape=(jax.ShapeDtypeStruct((bs, MP, KP), jnp.int32),
                   jax.ShapeDtypeStruct((bs, MP, KP), jnp.int32),
                   jax.ShapeDtypeStruct((bs, MP), dt)),
        grid=(bs, MP // BM),
        in_specs=[pl.BlockSpec((1, E, BM), lambda b, i: (b, 0, i)),
                  pl.BlockSpec((1, BM), lambda b, i: (b, i)),
                  pl.BlockSpec((1, E, NP), lambda b, i: (b, 0, 0)),
                  pl.BlockSpec((1, NP), lambda b, i: (b, 0)),
                  pl.BlockSpec((1, NP), lambda b, i: (b, 0)),
                  pl.BlockSpec((1, 1), lambda b, i: (0, 0))],
        out_specs=(pl.BlockSpec((1, BM, KP), lambda b, i: (b, i, 0)),
                   pl.BlockSpec((1, BM, KP), lambda b, i: (b, i, 0)),
                   pl.BlockSpec((1, BM), lambda b, i: (b, i))),
        interpret=interpret,
    )(q, qm, p, pm, prio, r_arr)
    idx = idx[:, :m, :k].astype(_index_dtype())
    keep = keep[:, :m, :k] != 0
    return idx, keep, (None if knn else cnt[:, :m])


# --- fused pointconv ---------------------------------------------------------------------------
def _swish(z):
    return z * (1 / (1 + jnp.exp(-z)))


def _dswish(z):
    s = 1 / (1 + jnp.exp(-z))
    return s + z * s * (1 - s)


def _dot(a, b):
    """2-D a @ b in full precision. float32: a dot at HIGHEST precision (IEEE, no TF32). float64:
    broadcast-multiply-sum, because the GPU (Triton) lowering's fp64 MMA rejects our tile sizes."""
    if a.dtype == jnp.float64:
        return jnp.sum(a[:, :, None] * b[None, :, :], axis=1)
    return jnp.dot(a, b, precision=HIGHEST, preferred_element_type=a.dtype)


def _wnet(e, w1, b1, w2, b2, w3, b3):
    z1 = _dot(e, w1) + b1
    h1 = _swish(z1)
    z2 = _dot(h1, w2) + b2
    h2 = _swish(z2)
    z3 = _dot(h2, w3) + b3
    return z1, h1, z2, h2, z3


def _onehot(idx, keep, NP, dt):
    cols = lax.broadcasted_iota(jnp.int32, (idx.shape[0], NP), 1)
    return ((cols == idx[:, None]) & (keep[:, None] != 0)).astype(dt)


# One program per query (bs, m): every array in a kernel body is 2-D and every product a plain
# matrix product, the subset of jax that Pallas' GPU (Triton) lowering accepts (no batched
# dot_general, no reshapes, no concatenation).
def _pc_fwd_kernel(e_ref, v_ref, i_ref, k_ref, w1, b1, w2, b2, w3, b3, o_ref, *, NP):
    e = e_ref[0, 0]  # (KP, DP)
    idx, keep = i_ref[0, 0], k_ref[0, 0]  # (KP,) each
    *_, z3 = _wnet(e, w1[...], b1[...], w2[...], b2[...], w3[...], b3[...])
    w = jnp.where(keep[:, None] != 0, _swish(z3), 0)  # (KP, O)
    g = _dot(_onehot(idx, keep, NP, e.dtype), v_ref[0])  # (KP, CP) gathered values, on-chip only
    o_ref[0, 0] = _dot(g.T, w)  # (CP, O)


def _pc_bwd_kernel(e_ref, v_ref, i_ref, k_ref, w1, b1, w2, b2, w3, b3, g_ref,
                   de_ref, dv_ref, dw1_ref, db1_ref, dw2_ref, db2_ref, dw3_ref, db3_ref, *, NP):
    e = e_ref[0, 0]  # (KP, DP)
    idx, keep = i_ref[0, 0], k_ref[0, 0]
    W1, W2, W3 = w1[...], w2[...], w3[...]
    z1, h1, z2, h2, z3 = _wnet(e, W1, b1[...], W2, b2[...], W3, b3[...])
    w = jnp.where(keep[:, None] != 0, _swish(z3), 0)  # (KP, O)
    oh = _onehot(idx, keep, NP, e.dtype)  # (KP, NP)
    vals = _dot(oh, v_ref[0])  # (KP, CP)
    g = g_ref[0, 0]  # (CP, O)
    dw = jnp.where(keep[:, None] != 0, _dot(vals, g), 0)  # (KP, O)
    dv_ref[0, 0] = _dot(oh.T, _dot(w, g.T))  # scatter-add of d(gathered values) by one-hot
    dz3 = dw * _dswish(z3)
    dz2 = _dot(dz3, W3.T) * _dswish(z2)
    dz1 = _dot(dz2, W2.T) * _dswish(z1)
    de_ref[0, 0] = _dot(dz1, W1.T)
    dw1_ref[0, 0] = _dot(e.T, dz1)
    db1_ref[0, 0] = jnp.sum(dz1, axis=0, keepdims=True)
    dw2_ref[0, 0] = _dot(h1.T, dz2)
    db2_ref[0, 0] = jnp.sum(dz2, axis=0, keepdims=True)
    dw3_ref[0, 0] = _dot(h2.T, dz3)
    db3_ref[0, 0] = jnp.sum(dz3, axis=0, keepdims=True)


def _layout(emb, values):
    bs, m, K_, D = emb.shape
    n, C = values.shape[1], values.shape[2]
    KP, NP, DP, CP = _p2(K_, 16), _p2(n, 16), _p2(D, 16), _p2(C, 16)
    return bs, m, K_, D, n, C, KP, NP, DP, CP


def _padded(emb, values, idx, mask, lay):
    bs, m, K_, D, n, C, KP, NP, DP, CP = lay
    e = _pad_to(_pad_to(emb, 2, KP), 3, DP)
    v = _pad_to(_pad_to(values, 1, NP), 2, CP)
    i = _pad_to(idx.astype(jnp.int32), 2, KP)
    k = _pad_to(mask.astype(jnp.int32), 2, KP)
    return e, v, i, k


def _params(layers, DP, dt):
    (w1, b1), (w2, b2), (w3, b3) = layers
    w1 = _pad_to(w1.astype(dt), 0, DP)
    return [w1, b1.astype(dt)[None], w2.astype(dt), b2.astype(dt)[None], w3.astype(dt),
            b3.astype(dt)[None]]


def _param_shapes(DP):
    return [(DP, H), (1, H), (H, H), (1, H), (H, O), (1, O)]


def _in_specs(KP, NP, DP, CP):
    """BlockSpecs of (emb, values, idx, mask, *params) for the (bs, m) grid."""
    return [pl.BlockSpec((1, 1, KP, DP), lambda b, i: (b, i, 0, 0)),
            pl.BlockSpec((1, NP, CP), lambda b, i: (b, 0, 0)),
            pl.BlockSpec((1, 1, KP), lambda b, i: (b, i, 0)),
            pl.BlockSpec((1, 1, KP), lambda b, i: (b, i, 0)),
            *[pl.BlockSpec(s, lambda b, i: (0, 0)) for s in _param_shapes(DP)]]


def _pc_forward(layers, emb, values, idx, mask, interpret):
    lay = _layout(emb, values)
    bs, m, K_, D, n, C, KP, NP, DP, CP = lay
    e, v, i, k = _padded(emb, values, idx, mask, lay)
    TRACES["pointconv_fwd"] += 1
    out = pl.pallas_call(
        functools.partial(_pc_fwd_kernel, NP=NP),
        out_shape=jax.ShapeDtypeStruct((bs, m, CP, O), emb.dtype),
        grid=(bs, m), in_specs=_in_specs(KP, NP, DP, CP),
        out_specs=pl.BlockSpec((1, 1, CP, O), lambda b, i: (b, i, 0, 0)),
        interpret=interpret,
    )(e, v, i, k, *_params(layers, DP, emb.dtype))
    return jnp.reshape(out[:, :, :C, :], (bs, m, C * O))


def _pc_backward(layers, emb, values, idx, mask, g, interpret):
    """Per-query partial gradients (summed here): d(emb), d(values), d(weight-net params)."""
    lay = _layout(emb, values)
    bs, m, K_, D, n, C, KP, NP, DP, CP = lay
    e, v, i, k = _padded(emb, values, idx, mask, lay)
    gg = _pad_to(jnp.reshape(g, (bs, m, C, O)), 2, CP)
    dt = emb.dtype
    per_query = [(NP, CP)] + _param_shapes(DP)
    TRACES["pointconv_bwd"] += 1
    outs = pl.pallas_call(
        functools.partial(_pc_bwd_kernel, NP=NP),
        out_shape=(jax.ShapeDtypeStruct((bs, m, KP, DP), dt),
                   *[jax.ShapeDtypeStruct((bs, m, *s), dt) for s in per_query]),
        grid=(bs, m),
        in_specs=[*_in_specs(KP, NP, DP, CP),
                  pl.BlockSpec((1, 1, CP, O), lambda b, i: (b, i, 0, 0))],
        out_specs=(pl.BlockSpec((1, 1, KP, DP), lambda b, i: (b, i, 0, 0)),
                   *[pl.BlockSpec((1, 1, *s), lambda b, i: (b, i, 0, 0)) for s in per_query]),
        interpret=interpret,
    )(e, v, i, k, *_params(layers, DP, dt), gg)
    de, dv, *dpar = outs
    demb = de[:, :, :K_, :D]
    dval = jnp.sum(dv, axis=1)[:, :n, :C]
    tot = [jnp.sum(p, axis=(0, 1)) for p in dpar]
    grads = [(tot[0][:D], tot[1][0]), (tot[2], tot[3][0]), (tot[4], tot[5][0])]
    return grads, demb, dval


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _pointconv(layers, emb, values, idx, mask, interpret):
    return _pc_forward(layers, emb, values, idx, mask, interpret)


def _pointconv_fwd(layers, emb, values, idx, mask, interpret):
    # calling the custom_vjp function itself keeps this rule differentiable (reverse-over-reverse)
    out = _pointconv(layers, emb, values, idx, mask, interpret)
    return out, (layers, emb, values, idx, mask)


def _pointconv_bwd(interpret, res, g):
    layers, emb, values, idx, mask = res
    grads, demb, dval = _grads(layers, emb, values, idx, mask, g, interpret)
    return grads, demb, dval, _int_zero(idx), _int_zero(mask)


def _reference(layers, emb, values, idx, mask):
    from lieconv_core.adapter import ReferenceAdapter

    from .adapter import ADAPTER

    return ReferenceAdapter.pointconv(ADAPTER, jnp, layers, emb, values, idx, mask)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def _grads(layers, emb, values, idx, mask, g, interpret):
    """The Pallas backward pass, itself differentiable (reverse-over-reverse, as the Hamiltonian
    models need): its own vjp differentiates the reference's backward."""
    grads, demb, dval = _pc_backward(layers, emb, values, idx, mask, g, interpret)
    grads = [(gw.astype(w.dtype), gb.astype(b.dtype)) for (gw, gb), (w, b) in zip(grads, layers)]
    return grads, demb, dval.astype(values.dtype)


def _grads_fwd(layers, emb, values, idx, mask, g, interpret):
    return _grads(layers, emb, values, idx, mask, g, interpret), (layers, emb, values, idx, mask, g)


def _grads_bwd(interpret, res, ct):
    layers, emb, values, idx, mask, g = res

    def ref_grads(layers, emb, values, g):
        _, vjp = jax.vjp(lambda L, e, v: _reference(L, e, v, idx, mask), layers, emb, values)
        return vjp(g)

    _, vjp2 = jax.vjp(ref_grads, layers, emb, values, g)
    dl, de, dv, dg = vjp2(tuple(ct))
    return dl, de, dv, _int_zero(idx), _int_zero(mask), dg


_grads.defvjp(_grads_fwd, _grads_bwd)


def _int_zero(x):
    import numpy as np

    return np.zeros(x.shape, dtype=jax.dtypes.float0)


_pointconv.defvjp(_pointconv_fwd, _pointconv_bwd)


@functools.partial(jax.jit, static_argnames=("interpret",))
def pointconv(layers, emb, values, idx, mask, interpret: bool = False):
    """Fused weight net + contraction (bs, m, k, d) -> (bs, m, c·16); differentiable (custom_vjp,
    Pallas backward) w.r.t. layers, emb and values."""
    layers = [(jnp.asarray(w), jnp.asarray(b)) for w, b in layers]
    return _pointconv(layers, emb, values.astype(emb.dtype), idx, mask, interpret)
