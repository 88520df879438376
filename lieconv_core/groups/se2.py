"""SE(2): rotations and translations of R^2. Elements are 3×3 homogeneous matrices (E = 9)."""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import device as _dev

from ._checks import (
    check_coords,
    check_trailing,
    not_affine,
    not_rotation,
    require_member,
    tolerance,
)
from ._special import cosc, sinc, wrap_angle
from .base import Group, norm, sqrt_sum_squares, uniform_angle


def _V_coeffs(xp: Any, theta: Any) -> tuple[Any, Any]:
    """V = a I + b J with J the 90° rotation: a = sinc θ, b = θ cosc θ."""
    t2 = theta * theta
    return sinc(xp, t2), theta * cosc(xp, t2)


def se2_matrix(xp: Any, theta: Any, tx: Any, ty: Any) -> Any:
    """Homogeneous (..., 3, 3) matrix of rotation angle θ followed by translation (t_x, t_y)."""
    c, s = xp.cos(theta), xp.sin(theta)
    zero, one = xp.zeros_like(theta), xp.ones_like(theta)
    rows = [xp.stack([c, -s, tx], axis=-1), xp.stack([s, c, ty], axis=-1),
            xp.stack([zero, zero, one], axis=-1)]
    return xp.stack(rows, axis=-2)


def se2_exp(xp: Any, a: Any) -> Any:
    """(..., 3) algebra (θ, u_x, u_y) -> (..., 3, 3), translation V u."""
    theta, ux, uy = a[..., 0], a[..., 1], a[..., 2]
    va, vb = _V_coeffs(xp, theta)
    return se2_matrix(xp, theta, va * ux - vb * uy, vb * ux + va * uy)


#: log's branch cut sits at θ = ±π, exactly where equally spaced lift samples (ns even) put
#: sample pairs; rounding of sin/cos then decides the sign of θ and of u, differently per backend.
#: Angles within this distance above −π are moved to just above +π, so the exact-π pairs come out
#: as +π everywhere and the cut moves to a place the lift does not hit systematically.
_CUT_TOL = {"float32": 1e-4, "float64": 1e-10}
#: a normal float32 number far below any angle that matters; sin(x) = x exactly for |x| this small
_TINY = 1e-30


def se2_log(xp: Any, M: Any) -> Any:
    """(..., 3, 3) -> (..., 3) algebra (θ, u_x, u_y), θ in (-π + tol, π + tol] (see _CUT_TOL)."""
    return _se2_log_parts(xp, M[..., 1, 0] - M[..., 0, 1], M[..., 0, 0] + M[..., 1, 1],
                          M[..., 0, 2], M[..., 1, 2])


def _se2_log_parts(xp: Any, sin2: Any, cos2: Any, tx: Any, ty: Any) -> Any:
    """se2_log from R₁₀ − R₀₁ (= 2 sin θ), R₀₀ + R₁₁ (= 2 cos θ) and the translation (tx, ty)."""
    theta = xp.atan2(sin2, cos2)
    tol = _CUT_TOL["float32" if theta.dtype == xp.float32 else "float64"]
    theta = xp.where(theta < tol - math.pi, theta + 2 * math.pi, theta)
    va, vb = _V_coeffs(xp, theta)
    det = va * va + vb * vb  # = 2 cosc θ > 0 for |θ| < 2π
    ux = (va * tx + vb * ty) / det
    uy = (va * ty - vb * tx) / det
    return xp.stack([theta, ux, uy], axis=-1)


class SE2(Group):
    """SE(2). Lift g = T(x)·R(φ_s), ns equally spaced φ_s with one uniform random phase per point.

    log(v⁻¹u) = (θ, u_x, u_y); distance α|θ| + (1−α)‖u‖.

    Parameters
    ----------
    alpha : float, default 0.2
        Weight of the rotational part in the distance.
    """

    elem_dim = 9
    lie_dim = 3
    q_dim = 0
    space_dim = 2
    random_lift = True

    def __init__(self, alpha: float = 0.2):
        self.alpha = float(alpha)

    def lift(self, xp, coords, nsamples, draws):
        check_coords(self, coords)
        bs, n, _ = coords.shape
        phase = 2 * math.pi * draws.uniform(xp, (bs, n, 1), coords.dtype, _dev(coords))
        steps = xp.arange(nsamples, dtype=coords.dtype, device=_dev(coords))
        steps = steps * (2 * math.pi / nsamples)
        phi = wrap_angle(xp, phase + steps)  # (bs, n, ns)
        tx = xp.broadcast_to(coords[:, :, None, 0], phi.shape)
        ty = xp.broadcast_to(coords[:, :, None, 1], phi.shape)
        M = se2_matrix(xp, phi, tx, ty)  # T(x) R(φ)
        return xp.reshape(M, (bs, n * nsamples, 9)), None

    def pair_log(self, xp, u, v):
        # log(v⁻¹u) for flattened row-major 3x3 elements u, v (..., 9), written out: only R₁₀ − R₀₁,
        # R₀₀ + R₁₁ and the translation of v⁻¹u = [R_vᵀR_u, R_vᵀ(t_u − t_v)] are needed, 12 products
        # instead of a broadcast batch of 3x3 matrix products (which materialises both operands at
        # the full pair shape; ~4x slower on CPU).
        sin2, cos2 = _relative_rotation(u, v)
        dx, dy = _translation_difference(u, v)
        v00, v01, v10, v11 = (v[..., i] for i in (0, 1, 3, 4))
        return _se2_log_parts(xp, sin2, cos2, v00 * dx + v10 * dy, v01 * dx + v11 * dy)

    def distance_from_log(self, xp, a, qu, qv):
        return self.alpha * xp.abs(a[..., 0]) + (1 - self.alpha) * norm(xp, a[..., 1:])

    def pair_distance(self, xp, u, qu, v, qv):
        # α|θ| + (1−α)‖u‖ of log(v⁻¹u) = (θ, u) without forming the log; see
        # :meth:`feature_distance`.
        return self.feature_distance(xp, self.distance_features(xp, u), qu,
                                     self.distance_features(xp, v), qv)

    def distance_features(self, xp, elems):
        # (φ, t_x, t_y): the rotation angle (one atan2 per element, not per pair) and the
        # translation of flattened 3x3 elements (..., 9) -> (..., 3).
        return xp.concat([_angle(xp, elems)[..., None], self.position(xp, elems)], axis=-1)

    def feature_distance(self, xp, fu, qu, fv, qv):
        # ``α|θ| + (1−α)‖u‖`` from (φ, t) of the elements: θ = φ_u − φ_v (mod 2π) and, V(θ) being a
        # rotation scaled by a² + b² = (sin(θ/2) / (θ/2))², ‖u‖ = ‖t_u − t_v‖ · (θ/2) / sin(θ/2)
        # with ``|θ|`` folded into [0, π] (the distance is even in θ, so the log's branch cut does
        # not matter here). ~20 elementwise operations per pair instead of the log's ~80 (the
        # neighbour search and FPS evaluate it for every candidate pair); equal to
        # distance_from_log(pair_log(u, v)) up to rounding (absolute error of θ ≈ eps·π), and the
        # one formula every search path and backend uses.
        theta = xp.abs(fu[..., 0] - fv[..., 0])
        theta = xp.minimum(theta, 2 * math.pi - theta)
        # (θ/2)/sin(θ/2) with θ/2 raised to a tiny normal number: sin(h) = h exactly there, so
        # the scale is 1 at θ = 0 with no division by zero (and no gradient through the clamp),
        # in three passes instead of a branch-and-where; no cancellation anywhere
        half = xp.maximum(theta / 2, _TINY)
        scale = half / xp.sin(half)
        dist_t = sqrt_sum_squares(xp, (fu[..., 1] - fv[..., 1], fu[..., 2] - fv[..., 2]))
        return self.alpha * theta + (1 - self.alpha) * (dist_t * scale)

    def position_bound(self) -> float | None:
        # 1 − α: the distance is α|θ| + (1−α)‖t_u − t_v‖·(θ/2)/sin(θ/2) (see :meth:`pair_distance`)
        # and (θ/2)/sin(θ/2) >= 1 on [0, π].
        return 1 - self.alpha if self.alpha < 1 else None

    def position(self, xp, elems):
        return xp.stack([elems[..., 2], elems[..., 5]], axis=-1)

    def random_element(self, xp, shape, draws, dtype, device):
        theta = uniform_angle(xp, (*shape, 1), draws, dtype, device)
        return xp.concat([theta, 3 * draws.normal(xp, (*shape, 2), dtype, device)], axis=-1)

    def act_on_points(self, xp, g, coords):
        G = se2_exp(xp, g)[:, None]  # (bs, 1, 3, 3)
        return (G[..., :2, :2] @ coords[..., None])[..., 0] + G[..., :2, 2]

    def act_on_elements(self, xp, g, elems):
        U = xp.reshape(elems, (*elems.shape[:-1], 3, 3))
        return xp.reshape(se2_exp(xp, g)[:, None] @ U, elems.shape)

    def exp(self, xp: Any, a: Any) -> Any:
        """The exponential map: algebra coordinates to matrices.

        Parameters
        ----------
        xp : Namespace
            The array namespace of ``a``.
        a : Array, shape (..., 3)
            (θ, u_x, u_y): angle in radians and the algebra's translation part.

        Returns
        -------
        Array, shape (..., 3, 3)
            The group elements as matrices.
        """
        check_trailing(a, (3,), "a", f"{self!r}.exp")
        return se2_exp(xp, a)

    def log(self, xp: Any, M: Any) -> Any:
        """The logarithm: matrices to algebra coordinates, the inverse of :meth:`exp`.

        Parameters
        ----------
        xp : Namespace
            The array namespace of ``M``.
        M : Array, shape (..., 3, 3)
            Elements of SE(2).

        Returns
        -------
        Array, shape (..., 3)
            (θ, u_x, u_y), θ in (-π, π].

        Raises
        ------
        ValueError
            Where ``M`` is not in SE(2) to within sqrt(eps) (checked where the values can be
            read, i.e. outside a jax trace).
        """
        check_trailing(M, (3, 3), "M", f"{self!r}.log")
        tol = tolerance(xp, M)
        require_member(xp, not_rotation(xp, M[..., :2, :2], tol) | not_affine(xp, M, tol),
                       self, "M")
        return se2_log(xp, M)

    def __repr__(self) -> str:
        return f"SE2(alpha={self.alpha})"


def _relative_rotation(u: Any, v: Any) -> tuple[Any, Any]:
    """(R₁₀ − R₀₁, R₀₀ + R₁₁) of R = R_vᵀR_u (= 2 sin θ, 2 cos θ) for flattened 3x3 elements."""
    u00, u01, u10, u11 = (u[..., i] for i in (0, 1, 3, 4))
    v00, v01, v10, v11 = (v[..., i] for i in (0, 1, 3, 4))
    cos2 = (v00 * u00 + v10 * u10) + (v01 * u01 + v11 * u11)
    sin2 = (v01 * u00 + v11 * u10) - (v00 * u01 + v10 * u11)
    return sin2, cos2


def _angle(xp: Any, e: Any) -> Any:
    """Rotation angle φ in [−π, π] of flattened 3x3 elements (R₁₀ = sin φ, R₀₀ = cos φ)."""
    return xp.atan2(e[..., 3], e[..., 0])


def _translation_difference(u: Any, v: Any) -> tuple[Any, Any]:
    """t_u − t_v (two components) of flattened 3x3 elements."""
    return u[..., 2] - v[..., 2], u[..., 5] - v[..., 5]
