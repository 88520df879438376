"""Triton kernels for the three hot spots of a LieConv layer.

* :func:`fps_kernel` - farthest point sampling, one program per cloud, all m steps in one launch.
* :func:`ball_kernel` / :func:`knn_kernel` - neighbour search with distances computed on the fly
  (the (bs, m, n) distance matrix is never stored).
* :func:`pointconv_fwd_kernel` / :func:`pointconv_bwd_kernel` - weight net + contraction, fused:
  neither the (bs, m, k, 32) activations nor the gathered (bs, m, k, c) values are materialised.

Distances are those of the Euclidean groups (T(d), Trivial(d)): sqrt(Σ_e (u_e - v_e)²), summed in
the reference's order and (the launchers pass ``enable_fp_fusion=False``, kernels use
``sqrt_rn``) rounded exactly like the reference, so that indices agree bit for bit. These are
the groups' search metric (``Group.pair_distance``); their distances proper are the original's
α‖Δx‖ and (1 − α)‖Δx‖, so ball radii arrive as r / α or r / (1 − α)
(``Group.search_radius``, applied by the LieConv layer before any search).

On CPU the kernels run under the Triton interpreter (TRITON_INTERPRET=1 before importing triton).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _sqrt(x):
    """Correctly rounded square root (as the reference's): sqrt_rn for fp32; fp64 sqrt is IEEE."""
    if x.dtype == tl.float32:
        return tl.sqrt_rn(x)
    else:
        return tl.sqrt(x)


@triton.jit
def _sqdist(q_ptr, p_ptr, qrow, prow, qm, pm, E: tl.constexpr):
    """Σ_e (q[qrow, e] - p[prow, e])² for a (BM,) x (BN,) block, summed in order e = 0, 1, ...
    (the first term stands alone: 0 + a == a, as in the reference's sum)."""
    q0 = tl.load(q_ptr + qrow * E, mask=qm, other=0)
    p0 = tl.load(p_ptr + prow * E, mask=pm, other=0)
    diff = q0[:, None] - p0[None, :]
    acc = diff * diff
    for e in tl.static_range(1, E):
        qe = tl.load(q_ptr + qrow * E + e, mask=qm, other=0)
        pe = tl.load(p_ptr + prow * E + e, mask=pm, other=0)
        diff = qe[:, None] - pe[None, :]
        acc = acc + diff * diff
    return acc


@triton.jit
def fps_kernel(elems_ptr, mask_ptr, start_ptr, out_ptr, n, m, scale,
               E: tl.constexpr, BLOCK_N: tl.constexpr):
    """out[b, t], t < m: farthest point sampling of cloud b (all of it in one block)."""
    b = tl.program_id(0)
    offs = tl.arange(0, BLOCK_N)
    inb = offs < n
    valid = tl.load(mask_ptr + b * n + offs, mask=inb, other=0) != 0
    x0 = tl.load(elems_ptr + (b * n + offs) * E, mask=inb, other=0)
    inf = tl.full((BLOCK_N,), float("inf"), x0.dtype)
    dmin = tl.where(valid, inf, -inf)
    cur = tl.load(start_ptr + b)
    for t in range(m):
        tl.store(out_ptr + b * m + t, cur)
        d2 = tl.zeros((BLOCK_N,), x0.dtype)
        for e in tl.static_range(E):
            xe = tl.load(elems_ptr + (b * n + offs) * E + e, mask=inb, other=0)
            ce = tl.load(elems_ptr + (b * n + cur) * E + e)
            diff = xe - ce
            d2 = d2 + diff * diff
        qd = tl.floor(_sqrt(d2) * scale + 0.5)
        dmin = tl.where(valid, tl.minimum(dmin, qd), dmin)
        best = tl.max(dmin, axis=0)
        cur = tl.min(tl.where(dmin == best, offs, BLOCK_N), axis=0).to(tl.int64)


@triton.jit
def ball_kernel(qe_ptr, qmask_ptr, pe_ptr, pmask_ptr, order_ptr, r_ptr,
                idx_ptr, nmask_ptr, count_ptr, m, n, k,
                E: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_K: tl.constexpr):
    """Ball neighbourhoods: points are visited in priority order (``order`` = stable argsort of
    the priorities); the c-th in-ball point goes to slot c, then the out-of-ball points fill the
    remaining slots (masked off) in priority order - exactly the reference's stable top-k of
    where(in_ball, prio, prio + n)."""
    b = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    rm = rows < m
    qvalid = (tl.load(qmask_ptr + b * m + rows, mask=rm, other=0) != 0) & rm
    x0 = tl.load(qe_ptr + (b * m + rows) * E, mask=rm, other=0)
    r = tl.load(r_ptr).to(x0.dtype)
    offs = tl.arange(0, BLOCK_N)
    cnt = tl.zeros((BLOCK_M,), tl.int64)
    for s in range(0, n, BLOCK_N):
        pm = s + offs < n
        pidx = tl.load(order_ptr + b * n + s + offs, mask=pm, other=0)
        pvalid = (tl.load(pmask_ptr + b * n + pidx, mask=pm, other=0) != 0) & pm
        d = _sqrt(_sqdist(qe_ptr, pe_ptr, b * m + rows, b * n + pidx, rm, pm, E))
        sel = qvalid[:, None] & pvalid[None, :] & (d < r)
        si = sel.to(tl.int64)
        rank = cnt[:, None] + tl.cumsum(si, axis=1) - si
        dst = idx_ptr + (b * m + rows)[:, None] * k + rank
        tl.store(dst, tl.broadcast_to(pidx[None, :], (BLOCK_M, BLOCK_N)),
                 mask=sel & (rank < k) & rm[:, None])
        cnt += tl.sum(si, axis=1)
    ocnt = tl.zeros((BLOCK_M,), tl.int64)
    for s in range(0, n, BLOCK_N):
        pm = s + offs < n
        pidx = tl.load(order_ptr + b * n + s + offs, mask=pm, other=0)
        pvalid = (tl.load(pmask_ptr + b * n + pidx, mask=pm, other=0) != 0) & pm
        d = _sqrt(_sqdist(qe_ptr, pe_ptr, b * m + rows, b * n + pidx, rm, pm, E))
        sel = qvalid[:, None] & pvalid[None, :] & (d < r)
        rest = (~sel) & pm[None, :]
        ri = rest.to(tl.int64)
        rank = cnt[:, None] + ocnt[:, None] + tl.cumsum(ri, axis=1) - ri
        dst = idx_ptr + (b * m + rows)[:, None] * k + rank
        tl.store(dst, tl.broadcast_to(pidx[None, :], (BLOCK_M, BLOCK_N)),
                 mask=rest & (rank < k) & rm[:, None])
        ocnt += tl.sum(ri, axis=1)
    slots = tl.arange(0, BLOCK_K)
    for s0 in range(0, k, BLOCK_K):
        sl = s0 + slots
        tl.store(nmask_ptr + (b * m + rows)[:, None] * k + sl[None, :],
                 (sl[None, :] < cnt[:, None]).to(tl.int8), mask=rm[:, None] & (sl < k)[None, :])
    tl.store(count_ptr + b * m + rows, cnt.to(x0.dtype), mask=rm)


@triton.jit
def knn_kernel(qe_ptr, qmask_ptr, pe_ptr, pmask_ptr, idx_ptr, nmask_ptr, m, n, k, scale,
               E: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """k nearest valid points by quantised distance, ties to the lower index, ascending: k rounds
    of 'smallest key (qd, index) above the previous one' - O(k n) distance evaluations per query,
    O(k) memory."""
    b = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    rm = rows < m
    qvalid = (tl.load(qmask_ptr + b * m + rows, mask=rm, other=0) != 0) & rm
    x0 = tl.load(qe_ptr + (b * m + rows) * E, mask=rm, other=0)
    offs = tl.arange(0, BLOCK_N)
    inf = float("inf")
    prev_q = tl.full((BLOCK_M,), -inf, x0.dtype)
    prev_i = tl.full((BLOCK_M,), -1, tl.int64)
    for j in range(k):
        best_q = tl.full((BLOCK_M,), inf, x0.dtype)
        best_i = tl.zeros((BLOCK_M,), tl.int64) + n
        for s in range(0, n, BLOCK_N):
            pidx = (s + offs).to(tl.int64)
            pm = pidx < n
            pvalid = (tl.load(pmask_ptr + b * n + pidx, mask=pm, other=0) != 0) & pm
            d = _sqrt(_sqdist(qe_ptr, pe_ptr, b * m + rows, b * n + pidx, rm, pm, E))
            qd = tl.where(qvalid[:, None] & pvalid[None, :], tl.floor(d * scale + 0.5), inf)
            pi = pidx[None, :]
            cand = ((qd > prev_q[:, None]) | ((qd == prev_q[:, None]) & (pi > prev_i[:, None])))
            cand = cand & pm[None, :]
            cq = tl.min(tl.where(cand, qd, inf), axis=1)
            ci = tl.min(tl.where(cand & (qd == cq[:, None]), pi, n), axis=1)
            better = (cq < best_q) | ((cq == best_q) & (ci < best_i))
            best_q = tl.where(better, cq, best_q)
            best_i = tl.where(better, ci, best_i)
        tl.store(idx_ptr + (b * m + rows) * k + j, best_i, mask=rm)
        bvalid = tl.load(pmask_ptr + b * n + best_i, mask=rm & (best_i < n), other=0) != 0
        tl.store(nmask_ptr + (b * m + rows) * k + j, (bvalid & qvalid).to(tl.int8), mask=rm)
        prev_q = best_q
        prev_i = best_i


# --- the fused conv aggregation ------------------------------------------------------------------
@triton.jit
def _swish(z):
    return z * (1.0 / (1.0 + tl.exp(-z)))


@triton.jit
def _dswish(z):
    s = 1.0 / (1.0 + tl.exp(-z))
    return s + z * s * (1.0 - s)


@triton.jit
def _mm(a, b):
    """a @ b in full precision. float32: tensor-core dot with IEEE inputs (no TF32). float64:
    broadcast-multiply-sum, because Triton's fp64 MMA path rejects these tiles
    ("fp64 don't support largeK MMA"). The branch is resolved at compile time."""
    if a.dtype == tl.float64:
        return tl.sum(a[:, :, None] * b[None, :, :], axis=1)
    else:
        return tl.dot(a, b, input_precision="ieee")


@triton.jit
def _weightnet(emb_ptr, ek, km, w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr,
               D: tl.constexpr, DP: tl.constexpr, H: tl.constexpr, O: tl.constexpr):
    """Rows ek (BK,) of emb (·, D) -> (e, z1, h1, z2, h2, z3): pre-activations and activations."""
    od = tl.arange(0, DP)
    oh = tl.arange(0, H)
    oo = tl.arange(0, O)
    e = tl.load(emb_ptr + ek[:, None] * D + od[None, :], mask=km[:, None] & (od < D)[None, :],
                other=0)
    w1 = tl.load(w1_ptr + od[:, None] * H + oh[None, :], mask=(od < D)[:, None], other=0)
    z1 = _mm(e, w1) + tl.load(b1_ptr + oh)[None, :]
    h1 = _swish(z1)
    w2 = tl.load(w2_ptr + oh[:, None] * H + oh[None, :])
    z2 = _mm(h1, w2) + tl.load(b2_ptr + oh)[None, :]
    h2 = _swish(z2)
    w3 = tl.load(w3_ptr + oh[:, None] * O + oo[None, :])
    z3 = _mm(h2, w3) + tl.load(b3_ptr + oo)[None, :]
    return e, z1, h1, z2, h2, z3


@triton.jit
def pointconv_fwd_kernel(emb_ptr, val_ptr, idx_ptr, mask_ptr,
                         w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, out_ptr,
                         m, n, K, C,
                         D: tl.constexpr, DP: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
                         BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
    """out[row, c*O + o] = Σ_k mask·values[b, idx[row, k], c]·w[row, k, o], row = b*m + i."""
    row = tl.program_id(0)
    cb = tl.program_id(1)
    b = row // m
    oc = cb * BLOCK_C + tl.arange(0, BLOCK_C)
    cm = oc < C
    oo = tl.arange(0, O)
    acc = tl.zeros((BLOCK_C, O), out_ptr.dtype.element_ty)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        km = kk < K
        ek = row * K + kk
        nm = (tl.load(mask_ptr + ek, mask=km, other=0) != 0) & km
        e, z1, h1, z2, h2, z3 = _weightnet(emb_ptr, ek, km, w1_ptr, b1_ptr, w2_ptr, b2_ptr,
                                           w3_ptr, b3_ptr, D, DP, H, O)
        w = tl.where(nm[:, None], _swish(z3), 0.0)
        nb = tl.load(idx_ptr + ek, mask=nm, other=0)
        v = tl.load(val_ptr + (b * n + nb)[:, None] * C + oc[None, :],
                    mask=nm[:, None] & cm[None, :], other=0)
        acc += _mm(tl.trans(v), w)
    tl.store(out_ptr + row * (C * O) + oc[:, None] * O + oo[None, :], acc, mask=cm[:, None])


@triton.jit
def pointconv_bwd_kernel(emb_ptr, val_ptr, idx_ptr, mask_ptr,
                         w1_ptr, b1_ptr, w2_ptr, b2_ptr, w3_ptr, b3_ptr, g_ptr,
                         demb_ptr, dval_ptr, dpar_ptr,
                         R, m, n, K, C,
                         D: tl.constexpr, DP: tl.constexpr, H: tl.constexpr, O: tl.constexpr,
                         BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr):
    """Persistent backward: program p handles rows p, p + P, ...; d(values) by atomic adds,
    d(emb) stored, weight-net parameter gradients accumulated in registers and written once per
    program to dpar[p] = [dW1 (DP·H), db1 (H), dW2 (H·H), db2 (H), dW3 (H·O), db3 (O)] (summed
    over programs on the host side)."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    od = tl.arange(0, DP)
    oh = tl.arange(0, H)
    oo = tl.arange(0, O)
    dt = dpar_ptr.dtype.element_ty
    gw1 = tl.zeros((DP, H), dt)
    gb1 = tl.zeros((H,), dt)
    gw2 = tl.zeros((H, H), dt)
    gb2 = tl.zeros((H,), dt)
    gw3 = tl.zeros((H, O), dt)
    gb3 = tl.zeros((O,), dt)
    w1 = tl.load(w1_ptr + od[:, None] * H + oh[None, :], mask=(od < D)[:, None], other=0)
    w2 = tl.load(w2_ptr + oh[:, None] * H + oh[None, :])
    w3 = tl.load(w3_ptr + oh[:, None] * O + oo[None, :])
    for row in range(pid, R, nprog):
        b = row // m
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + tl.arange(0, BLOCK_K)
            km = kk < K
            ek = row * K + kk
            nm = (tl.load(mask_ptr + ek, mask=km, other=0) != 0) & km
            e, z1, h1, z2, h2, z3 = _weightnet(emb_ptr, ek, km, w1_ptr, b1_ptr, w2_ptr, b2_ptr,
                                               w3_ptr, b3_ptr, D, DP, H, O)
            w = tl.where(nm[:, None], _swish(z3), 0.0)
            nb = tl.load(idx_ptr + ek, mask=nm, other=0)
            dw = tl.zeros((BLOCK_K, O), dt)
            for c0 in range(0, C, BLOCK_C):
                oc = c0 + tl.arange(0, BLOCK_C)
                cm = oc < C
                g = tl.load(g_ptr + row * (C * O) + oc[:, None] * O + oo[None, :],
                            mask=cm[:, None], other=0)
                vm = nm[:, None] & cm[None, :]
                voff = (b * n + nb)[:, None] * C + oc[None, :]
                v = tl.load(val_ptr + voff, mask=vm, other=0)
                dw += _mm(v, g)
                dv = _mm(w, tl.trans(g))
                tl.atomic_add(dval_ptr + voff, dv, mask=vm)
            dz3 = tl.where(nm[:, None], dw, 0.0) * _dswish(z3)
            gw3 += _mm(tl.trans(h2), dz3)
            gb3 += tl.sum(dz3, axis=0)
            dz2 = _mm(dz3, tl.trans(w3)) * _dswish(z2)
            gw2 += _mm(tl.trans(h1), dz2)
            gb2 += tl.sum(dz2, axis=0)
            dz1 = _mm(dz2, tl.trans(w2)) * _dswish(z1)
            gw1 += _mm(tl.trans(e), dz1)
            gb1 += tl.sum(dz1, axis=0)
            de = _mm(dz1, tl.trans(w1))
            tl.store(demb_ptr + ek[:, None] * D + od[None, :], de,
                     mask=km[:, None] & (od < D)[None, :])
    base = dpar_ptr + pid * (DP * H + H + H * H + H + H * O + O)
    tl.store(base + od[:, None] * H + oh[None, :], gw1)
    base += DP * H
    tl.store(base + oh, gb1)
    base += H
    tl.store(base + oh[:, None] * H + oh[None, :], gw2)
    base += H * H
    tl.store(base + oh, gb2)
    base += H
    tl.store(base + oh[:, None] * O + oo[None, :], gw3)
    base += H * O
    tl.store(base + oo, gb3)
