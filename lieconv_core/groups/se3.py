"""SE(3): rotations and translations of R^3. Elements are 4×4 homogeneous matrices (E = 16)."""

from __future__ import annotations

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
from ._special import (
    cosc,
    coscc,
    eye_like,
    hat3,
    matrix_parts,
    sinc,
    sincc,
    so3_log,
    so3_log_parts,
    transpose_product,
)
from .base import Group, norm
from .so3 import haar_rotations


def _homogeneous(xp: Any, R: Any, t: Any) -> Any:
    """(..., 3, 3), (..., 3) -> (..., 4, 4)."""
    top = xp.concat([R, t[..., None]], axis=-1)
    bottom = xp.concat([xp.zeros_like(t), xp.ones_like(t[..., :1])], axis=-1)[..., None, :]
    return xp.concat([top, bottom], axis=-2)


def se3_exp(xp: Any, a: Any) -> Any:
    """(..., 6) algebra (ω, u) -> (..., 4, 4); R = exp(K), t = V u, V = I + cosc K + sincc K²."""
    w, u = a[..., :3], a[..., 3:]
    t2 = xp.sum(w * w, axis=-1)[..., None, None]
    K = hat3(xp, w)
    K2 = K @ K
    eye = eye_like(xp, a, 3)
    R = eye + sinc(xp, t2) * K + cosc(xp, t2) * K2
    V = eye + cosc(xp, t2) * K + sincc(xp, t2) * K2
    return _homogeneous(xp, R, (V @ u[..., None])[..., 0])


def se3_log(xp: Any, M: Any) -> Any:
    """(..., 4, 4) -> (..., 6) algebra (ω, u) with ‖ω‖ ≤ π (see se3_log_parts)."""
    t = [M[..., i, 3] for i in range(3)]
    return xp.stack(se3_log_parts(xp, matrix_parts(M, 3, 3), t), axis=-1)


def se3_log_parts(xp: Any, R: list, t: list) -> list[Any]:
    """Rotation components R[i][j] and translation t[i] (broadcasting arrays) -> [ω, u] (six
    arrays), u = V⁻¹ t with V⁻¹ = I − K/2 + coscc(θ) K² (K = hat ω), applied as cross products:
    u = t − ω×t/2 + coscc(θ) ω×(ω×t)."""
    w = so3_log_parts(xp, R)
    t2 = w[0] * w[0] + w[1] * w[1] + w[2] * w[2]
    wt = _cross(w, t)
    wwt = _cross(w, wt)
    cc = coscc(xp, t2)
    return [*w, *(ti - wti / 2 + cc * wwti for ti, wti, wwti in zip(t, wt, wwt))]


def _cross(a: list, b: list) -> list[Any]:
    """a × b of 3-component lists."""
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


class SE3(Group):
    """SE(3). Lift g = T(x)·R with R Haar-random per point and sample.

    log(v⁻¹u) = (ω, u); distance α‖ω‖ + (1−α)‖u‖.

    Parameters
    ----------
    alpha : float, default 0.2
        Weight of the rotational part in the distance.
    """

    elem_dim = 16
    lie_dim = 6
    q_dim = 0
    space_dim = 3
    random_lift = True

    def __init__(self, alpha: float = 0.2):
        self.alpha = float(alpha)

    def lift(self, xp, coords, nsamples, draws):
        check_coords(self, coords)
        bs, n, _ = coords.shape
        R = haar_rotations(xp, (bs, n, nsamples), draws, coords.dtype, _dev(coords))
        t = xp.broadcast_to(coords[:, :, None, :], (bs, n, nsamples, 3))
        return xp.reshape(_homogeneous(xp, R, t), (bs, n * nsamples, 16)), None

    def pair_log(self, xp, u, v):
        # v⁻¹u = (R_vᵀ R_u, R_vᵀ (t_u − t_v)) from the flattened components, broadcasting
        Ru, Rv = ([[e[..., 4 * i + j] for j in range(3)] for i in range(3)] for e in (u, v))
        d = [u[..., 4 * k + 3] - v[..., 4 * k + 3] for k in range(3)]
        t = [Rv[0][i] * d[0] + Rv[1][i] * d[1] + Rv[2][i] * d[2] for i in range(3)]
        return xp.stack(se3_log_parts(xp, transpose_product(Rv, Ru), t), axis=-1)

    def distance_from_log(self, xp, a, qu, qv):
        return self.alpha * norm(xp, a[..., :3]) + (1 - self.alpha) * norm(xp, a[..., 3:])

    def position_bound(self) -> float | None:
        # 1 − α: u = V(ω)⁻¹ R_vᵀ(t_u − t_v), and V(ω) has singular values 1 (along ω) and
        # sin(θ/2)/(θ/2) <= 1 (across it) for θ = ‖ω‖ in [0, π], so ‖u‖ >= ‖t_u − t_v‖.
        return 1 - self.alpha if self.alpha < 1 else None

    def position(self, xp, elems):
        return xp.stack([elems[..., 3], elems[..., 7], elems[..., 11]], axis=-1)

    def random_element(self, xp, shape, draws, dtype, device):
        w = so3_log(xp, haar_rotations(xp, shape, draws, dtype, device))
        return xp.concat([w, 3 * draws.normal(xp, (*shape, 3), dtype, device)], axis=-1)

    def act_on_points(self, xp, g, coords):
        G = se3_exp(xp, g)[:, None]
        return (G[..., :3, :3] @ coords[..., None])[..., 0] + G[..., :3, 3]

    def act_on_elements(self, xp, g, elems):
        U = xp.reshape(elems, (*elems.shape[:-1], 4, 4))
        return xp.reshape(se3_exp(xp, g)[:, None] @ U, elems.shape)

    def exp(self, xp: Any, a: Any) -> Any:
        """The exponential map: algebra coordinates to matrices.

        Parameters
        ----------
        xp : Namespace
            The array namespace of ``a``.
        a : Array, shape (..., 6)
            (ω, u): axis-angle rotation and the algebra's translation part.

        Returns
        -------
        Array, shape (..., 4, 4)
            The group elements as matrices.
        """
        check_trailing(a, (6,), "a", f"{self!r}.exp")
        return se3_exp(xp, a)

    def log(self, xp: Any, M: Any) -> Any:
        """The logarithm: matrices to algebra coordinates, the inverse of :meth:`exp`.

        Parameters
        ----------
        xp : Namespace
            The array namespace of ``M``.
        M : Array, shape (..., 4, 4)
            Elements of SE(3).

        Returns
        -------
        Array, shape (..., 6)
            (ω, u), the rotation angle ‖ω‖ in [0, π].

        Raises
        ------
        ValueError
            Where ``M`` is not in SE(3) to within sqrt(eps) (checked where the values can be
            read, i.e. outside a jax trace).
        """
        check_trailing(M, (4, 4), "M", f"{self!r}.log")
        tol = tolerance(xp, M)
        require_member(xp, not_rotation(xp, M[..., :3, :3], tol) | not_affine(xp, M, tol),
                       self, "M")
        return se3_log(xp, M)

    def __repr__(self) -> str:
        return f"SE3(alpha={self.alpha})"
