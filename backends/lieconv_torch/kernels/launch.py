"""Host-side launchers of the Triton kernels: shapes, blocks, dtypes and the autograd wrapper.

Every launcher takes and returns torch tensors on the kernels' device (CUDA, or CPU under the
interpreter) and reproduces the searches of :mod:`lieconv_core.neighbourhoods` exactly (indices) or
to rounding (floats).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
import triton

from lieconv_core.neighbourhoods.primitives import QUANT

from . import _triton as K

#: FPS keeps a whole cloud in one block; larger clouds use the reference path
FPS_MAX_N = 16384
_NOFUSE = {"enable_fp_fusion": False}
#: kernel launches by name ("fps", "ball", "knn", "pointconv_fwd", "pointconv_bwd"): the tests
#: check that a case ran the kernel itself, not the reference fallback
LAUNCHES: Counter = Counter()


def _scale(dtype: torch.dtype) -> float:
    return QUANT["float32" if dtype == torch.float32 else "float64"]


def _elems(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous()


def fps_start(mask: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The start index of the reference: the floor(u·nvalid)-th valid point (on the device)."""
    count = torch.cumsum(mask.to(torch.int64), dim=1)
    target = torch.floor(u * count[:, -1].to(u.dtype)).to(torch.int64)
    return torch.argmax((count > target[:, None]).to(torch.int8), dim=1)


def fps(elems: torch.Tensor, mask: torch.Tensor, m: int, u: torch.Tensor) -> torch.Tensor | None:
    """(bs, m) int64 FPS indices, or None when the cloud is too large for one block."""
    bs, n, E = elems.shape
    if n > FPS_MAX_N:
        return None
    out = torch.empty((bs, m), dtype=torch.int64, device=elems.device)
    if bs == 0 or m == 0:
        return out
    start = fps_start(mask, u).contiguous()
    block = max(16, triton.next_power_of_2(n))
    LAUNCHES["fps"] += 1
    K.fps_kernel[(bs,)](_elems(elems), mask.to(torch.int8).contiguous(), start, out, n, m,
                        _scale(elems.dtype), E=E, BLOCK_N=block,
                        num_warps=4 if block <= 2048 else 8, **_NOFUSE)
    return out


def neighbourhood(query: tuple, points: tuple, k: int, r: Any, priorities: torch.Tensor,
                  knn: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Ball (random subset by priority) or kNN neighbourhoods; see the reference's docstring."""
    qe, _, qmask = query
    pe, _, pmask = points
    bs, m, E = qe.shape
    n = pe.shape[1]
    dev = qe.device
    idx = torch.empty((bs, m, k), dtype=torch.int64, device=dev)
    nmask = torch.empty((bs, m, k), dtype=torch.int8, device=dev)
    block_m = 16
    block_n = max(16, min(128, triton.next_power_of_2(n)))
    grid = (bs, triton.cdiv(m, block_m))
    qm8 = qmask.to(torch.int8).contiguous()
    pm8 = pmask.to(torch.int8).contiguous()
    if bs * m == 0:
        counts = None if knn else torch.zeros((bs, m), dtype=qe.dtype, device=dev)
        return idx, nmask.bool(), counts
    if knn:
        LAUNCHES["knn"] += 1
        K.knn_kernel[grid](_elems(qe), qm8, _elems(pe), pm8, idx, nmask, m, n, k,
                           _scale(qe.dtype), E=E, BLOCK_M=block_m, BLOCK_N=block_n, **_NOFUSE)
        return idx, nmask.bool(), None
    order = torch.sort(priorities.to(torch.int64), dim=-1, stable=True).indices.contiguous()
    r_t = torch.as_tensor(r, device=dev).to(qe.dtype).reshape(1)
    counts = torch.empty((bs, m), dtype=qe.dtype, device=dev)
    block_k = max(16, min(128, triton.next_power_of_2(k)))
    LAUNCHES["ball"] += 1
    K.ball_kernel[grid](_elems(qe), qm8, _elems(pe), pm8, order, r_t, idx, nmask, counts,
                        m, n, k, E=E, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
                        **_NOFUSE)
    return idx, nmask.bool(), counts


# --- fused pointconv ---------------------------------------------------------------------------
H, O = 32, 16


def _blocks(D: int, K_: int, C: int) -> dict:
    return dict(D=D, DP=max(16, triton.next_power_of_2(D)), H=H, O=O,
                BLOCK_K=max(16, min(32, triton.next_power_of_2(K_))),
                BLOCK_C=max(16, min(64, triton.next_power_of_2(C))))


def _fwd(emb, values, idx, mask8, params):
    bs, m, K_, D = emb.shape
    n, C = values.shape[1], values.shape[2]
    out = torch.empty((bs, m, C * O), dtype=emb.dtype, device=emb.device)
    if bs * m == 0:
        return out
    bl = _blocks(D, K_, C)
    grid = (bs * m, triton.cdiv(C, bl["BLOCK_C"]))
    LAUNCHES["pointconv_fwd"] += 1
    K.pointconv_fwd_kernel[grid](emb, values, idx, mask8, *params, out, m, n, K_, C, **bl)
    return out


def _bwd(emb, values, idx, mask8, params, g):
    bs, m, K_, D = emb.shape
    n, C = values.shape[1], values.shape[2]
    bl = _blocks(D, K_, C)
    DP = bl["DP"]
    rows = bs * m
    nprog = max(1, min(rows, _num_programs(emb.device)))
    demb = torch.zeros_like(emb)
    dval = torch.zeros_like(values)
    npar = DP * H + H + H * H + H + H * O + O
    dpar = torch.zeros((nprog, npar), dtype=emb.dtype, device=emb.device)
    if rows:
        LAUNCHES["pointconv_bwd"] += 1
        K.pointconv_bwd_kernel[(nprog,)](emb, values, idx, mask8, *params, g.contiguous(),
                                         demb, dval, dpar, rows, m, n, K_, C, **bl)
    tot = dpar.sum(0)
    sizes = [DP * H, H, H * H, H, H * O, O]
    parts = list(torch.split(tot, sizes))
    parts[0] = parts[0].reshape(DP, H)[:D]
    parts[2] = parts[2].reshape(H, H)
    parts[4] = parts[4].reshape(H, O)
    return demb, dval, parts


def _num_programs(device: torch.device) -> int:
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 4  # the interpreter runs programs one after the other


def _reference(emb, values, idx, mask, params):
    """Differentiable torch version (used for double backward)."""
    from lieconv_core.adapter import ReferenceAdapter

    from .. import adapter as _ad

    xp = _ad.xp_torch()
    layers = [(params[i], params[i + 1]) for i in range(0, 6, 2)]
    return ReferenceAdapter.pointconv(_ad.ADAPTER, xp, layers, emb, values, idx, mask)


class _PointConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, emb, values, idx, mask, *params):
        emb, values = emb.contiguous(), values.contiguous()
        idx = idx.contiguous()
        mask8 = mask.to(torch.int8).contiguous()
        params = tuple(p.contiguous() for p in params)
        ctx.save_for_backward(emb, values, idx, mask, *params)
        return _fwd(emb, values, idx, mask8, params)

    @staticmethod
    def backward(ctx, g):
        emb, values, idx, mask, *params = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():
            # create_graph=True (e.g. the Hamiltonian models' double backprop): differentiate the
            # reference so that the returned gradients are themselves differentiable
            ins = [emb, values] + list(params)
            req = [need[0], need[1]] + list(need[4:])
            with torch.enable_grad():
                leaves = [x if x.requires_grad else x.detach().requires_grad_(True) for x in ins]
                out = _reference(leaves[0], leaves[1], idx, mask, leaves[2:])
                grads = torch.autograd.grad(out, [x for x, r in zip(leaves, req) if r], g,
                                            create_graph=True, allow_unused=True)
            it = iter(grads)
            full = [next(it) if r else None for r in req]
            return full[0], full[1], None, None, *full[2:]
        demb, dval, dpar = _bwd(emb, values, idx, mask.to(torch.int8).contiguous(),
                                tuple(params), g)
        dpar = [p.reshape(q.shape) if n_ else None for p, q, n_ in zip(dpar, params, need[4:])]
        return (demb if need[0] else None, dval if need[1] else None, None, None, *dpar)


def pointconv(layers: list, emb: torch.Tensor, values: torch.Tensor, idx: torch.Tensor,
              mask: torch.Tensor) -> torch.Tensor:
    """Fused weight net + contraction: (bs, m, k, d) -> (bs, m, c·16), differentiable w.r.t.
    emb, values and every weight and bias of ``layers`` = [(W1, b1), (W2, b2), (W3, b3)]."""
    params = [t for wb in layers for t in wb]
    params = [p.to(emb.dtype) for p in params]
    return _PointConv.apply(emb, values.to(emb.dtype), idx, mask, *params)
