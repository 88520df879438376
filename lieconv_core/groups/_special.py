"""Small-angle-safe special functions and 3-D helpers shared by the groups.

Every function of an angle takes ``t2 = theta**2``: all of them are even, and a function of theta²
is smooth at 0 even when theta comes from a norm (‖ω‖ has no derivative at 0). Below a threshold the
Taylor series is used; above it the closed form. The double-where trick
(``safe = where(small, 1, t2)``) keeps the unused branch finite, so first and second derivatives
stay finite at exactly 0 on torch and jax.
"""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import device as _device

# Threshold on theta (not theta²): below it the Taylor series through theta^14 is exact to float64
# rounding (next term < 1e-17 relative); above it the closed forms lose at most ~10·eps/theta^2
# (≈1e-14 in float64, ≈5e-7 in float32) to cancellation.
_THRESH = {"float64": 0.5, "float32": 0.5}


def _small(xp: Any, t2: Any) -> Any:
    thresh = _THRESH["float32" if t2.dtype == xp.float32 else "float64"]
    return t2 < thresh * thresh


def _series(t2: Any, coeffs: tuple[float, ...]) -> Any:
    """Horner evaluation of sum_k coeffs[k] * t2**k."""
    out = coeffs[-1] * t2
    for c in coeffs[-2:0:-1]:
        out = (out + c) * t2
    return out + coeffs[0]


def _coeffs(sign: int, offset: int, n: int = 8) -> tuple[float, ...]:
    return tuple(sign**k / math.factorial(2 * k + offset) for k in range(n))


_SINC = _coeffs(-1, 1)  # sin x / x
_COSC = _coeffs(-1, 2)  # (1 - cos x) / x^2
_SINCC = _coeffs(-1, 3)  # (x - sin x) / x^3
# coscc(t) = Σ_{n≥1} |B_2n| t^(2n-2) / (2n)!  (B: Bernoulli numbers)
_COSCC = tuple(b / math.factorial(2 * n) for n, b in enumerate(
    [1 / 6, 1 / 30, 1 / 42, 1 / 30, 5 / 66, 691 / 2730, 7 / 6, 3617 / 510], start=1))


def _branch(xp: Any, t2: Any, coeffs: tuple[float, ...], exact) -> Any:
    small = _small(xp, t2)
    safe = xp.where(small, xp.ones_like(t2), t2)
    return xp.where(small, _series(t2, coeffs), exact(xp.sqrt(safe)))


def sinc(xp: Any, t2: Any) -> Any:
    """sin(t)/t as a function of t2 = t**2."""
    return _branch(xp, t2, _SINC, lambda t: xp.sin(t) / t)


def cosc(xp: Any, t2: Any) -> Any:
    """(1 - cos t)/t**2 as a function of t2 = t**2."""
    return _branch(xp, t2, _COSC, lambda t: (1 - xp.cos(t)) / (t * t))


def sincc(xp: Any, t2: Any) -> Any:
    """(t - sin t)/t**3 as a function of t2 = t**2."""
    return _branch(xp, t2, _SINCC, lambda t: (t - xp.sin(t)) / (t * t * t))


def coscc(xp: Any, t2: Any) -> Any:
    """(1 - t sin t / (2 (1 - cos t)))/t**2 as a function of t2 = t**2 (|t| < 2π)."""
    # t sin t / (2 (1 − cos t)) = (t/2) cot(t/2): one rounding-prone ratio instead of two
    return _branch(xp, t2, _COSCC, lambda t: (1 - (t / 2) / xp.tan(t / 2)) / (t * t))


def wrap_angle(xp: Any, theta: Any) -> Any:
    """Map angles (radians) to [-π, π) with atan2-free arithmetic (exact for |theta| < 3π)."""
    two_pi = 2 * math.pi
    return theta - two_pi * xp.floor((theta + math.pi) / two_pi)


def hat3(xp: Any, w: Any) -> Any:
    """(..., 3) -> (..., 3, 3) skew-symmetric matrix K with K v = w × v."""
    z = xp.zeros_like(w[..., 0])
    w0, w1, w2 = w[..., 0], w[..., 1], w[..., 2]
    rows = [xp.stack([z, -w2, w1], axis=-1), xp.stack([w2, z, -w0], axis=-1),
            xp.stack([-w1, w0, z], axis=-1)]
    return xp.stack(rows, axis=-2)


def eye_like(xp: Any, x: Any, n: int) -> Any:
    """Identity (n, n) with the dtype and device of x."""
    return xp.eye(n, dtype=x.dtype, device=_device(x))


def so3_exp(xp: Any, w: Any) -> Any:
    """Rodrigues: (..., 3) axis-angle -> (..., 3, 3) rotation."""
    t2 = xp.sum(w * w, axis=-1)[..., None, None]
    K = hat3(xp, w)
    return eye_like(xp, w, 3) + sinc(xp, t2) * K + cosc(xp, t2) * (K @ K)


def matrix_parts(M: Any, rows: int, cols: int) -> list[list[Any]]:
    """(..., r, c) matrix -> nested lists of its (...) components M[i][j] (strided views)."""
    return [[M[..., i, j] for j in range(cols)] for i in range(rows)]


def transpose_product(A: list, B: list) -> list[list[Any]]:
    """Aᵀ B of 3×3 component lists (arrays broadcast against each other), terms added k = 0, 1, 2.

    For the pair logs A and B broadcast to (bs, m, n): 27 products of (bs, m, n) arrays instead
    of a batched matmul of (bs·m·n) 3×3 matrices materialised by broadcasting (slow on CPU for
    every backend: tiny matrices, a copy of both operands)."""
    return [[A[0][i] * B[0][j] + A[1][i] * B[1][j] + A[2][i] * B[2][j] for j in range(3)]
            for i in range(3)]


def so3_log(xp: Any, R: Any) -> Any:
    """(..., 3, 3) rotation -> (..., 3) axis-angle ω with ‖ω‖ in [0, π] (see so3_log_parts)."""
    return xp.stack(so3_log_parts(xp, matrix_parts(R, 3, 3)), axis=-1)


def so3_log_parts(xp: Any, R: list) -> list[Any]:
    """Rotation as 3×3 component lists R[i][j] (broadcasting arrays) -> [ω0, ω1, ω2].

    The angle comes from atan2(‖vee(R − Rᵀ)‖/2, (tr R − 1)/2). Near θ = π the antisymmetric part
    vanishes, so the axis is taken from the symmetric part (R + Rᵀ)/2 − cos θ I = (1 − cos θ) n nᵀ
    (its column with the largest diagonal entry, the first one on ties) with the sign fixed by the
    antisymmetric part. Componentwise: no (..., 3, 3) arrays are stacked or reduced.
    """
    w = [(R[2][1] - R[1][2]) / 2, (R[0][2] - R[2][0]) / 2, (R[1][0] - R[0][1]) / 2]  # sin(θ) n
    s2 = w[0] * w[0] + w[1] * w[1] + w[2] * w[2]
    c = (R[0][0] + R[1][1] + R[2][2] - 1) / 2
    # Generic branch: ω = w θ / sin θ. For small s use the series of asin(s)/s (valid since c > 0).
    small = s2 < (1e-4 if s2.dtype == xp.float64 else 1e-2)
    s2_safe = xp.where(small, xp.ones_like(s2), s2)
    s_safe = xp.sqrt(s2_safe)
    theta_exact = xp.atan2(s_safe, c)
    factor = xp.where(
        small, _series(s2, (1.0, 1 / 6, 3 / 40, 5 / 112, 35 / 1152)), theta_exact / s_safe
    )
    near_pi = c < -0.5
    factor = xp.where(near_pi, xp.ones_like(factor), factor)
    # Near-π branch, from B = (R + Rᵀ)/2 − c I = (1 − c) n nᵀ.
    c_pi = xp.where(near_pi, c, -xp.ones_like(c))
    B = [[(R[i][j] + R[j][i]) / 2 - (c_pi if i == j else 0) for j in range(3)] for i in range(3)]
    d0, d1, d2 = B[0][0], B[1][1], B[2][2]
    pick0 = (d0 >= d1) & (d0 >= d2)  # argmax of the diagonal, ties to the lower index
    pick1 = (d1 >= d2) & ~pick0

    def pick(a0: Any, a1: Any, a2: Any) -> Any:
        return xp.where(pick0, a0, xp.where(pick1, a1, a2))

    col = [pick(*B[i]) for i in range(3)]  # (1 − c) n_j n
    bjj = pick(d0, d1, d2)
    denom = xp.sqrt(xp.where(near_pi, (1 - c_pi) * bjj, xp.ones_like(bjj)))
    n = [ci / denom for ci in col]  # ±n
    dot = n[0] * w[0] + n[1] * w[1] + n[2] * w[2]
    sign = xp.where(dot < 0, -xp.ones_like(c), xp.ones_like(c))
    theta_pi = sign * xp.atan2(xp.sqrt(xp.where(near_pi, s2, xp.ones_like(s2))), c_pi)
    return [xp.where(near_pi, ni * theta_pi, wi * factor) for ni, wi in zip(n, w)]
