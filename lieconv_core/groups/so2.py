"""SO(2) acting on R^2 by rotation about the origin; the radius is the orbit identifier."""

from __future__ import annotations

from typing import Any

from ._checks import check_coords, check_trailing, not_rotation, require_member, tolerance
from ._special import wrap_angle
from .base import Group, norm, uniform_angle


def rot2(xp: Any, theta: Any) -> Any:
    """(...,) angles -> (..., 2, 2) rotation matrices."""
    c, s = xp.cos(theta), xp.sin(theta)
    return xp.stack([xp.stack([c, -s], axis=-1), xp.stack([s, c], axis=-1)], axis=-2)


def rotate2(xp: Any, theta: Any, x: Any) -> Any:
    """Rotate points x (..., 2) by angles theta (broadcastable to x[..., 0])."""
    c, s = xp.cos(theta), xp.sin(theta)
    return xp.stack([c * x[..., 0] - s * x[..., 1], s * x[..., 0] + c * x[..., 1]], axis=-1)


class SO2(Group):
    """SO(2). Elements: θ = atan2(y, x) (E = 1); q = r = ‖x‖.

    Distance α|Δθ| + (1−α)|r_u − r_v|/(r_u + r_v + 1e-3).

    Parameters
    ----------
    alpha : float, default 0.2
        Weight of the rotational part in the distance.
    """

    elem_dim = lie_dim = 1
    q_dim = 1
    space_dim = 2

    def __init__(self, alpha: float = 0.2):
        self.alpha = float(alpha)

    def lift(self, xp, coords, nsamples, draws):
        check_coords(self, coords)
        theta = xp.atan2(coords[..., 1], coords[..., 0])
        return theta[..., None], norm(xp, coords)[..., None]

    def pair_log(self, xp, u, v):
        return wrap_angle(xp, u - v)

    def distance_from_log(self, xp, a, qu, qv):
        ru, rv = qu[..., 0], qv[..., 0]
        radial = xp.abs(ru - rv) / (ru + rv + 1e-3)
        return self.alpha * xp.abs(a[..., 0]) + (1 - self.alpha) * radial

    def random_element(self, xp, shape, draws, dtype, device):
        return uniform_angle(xp, (*shape, 1), draws, dtype, device)

    def act_on_points(self, xp, g, coords):
        return rotate2(xp, g[:, None, 0], coords)

    def act_on_elements(self, xp, g, elems):
        return wrap_angle(xp, elems + g[:, None, :])

    def exp(self, xp: Any, a: Any) -> Any:
        """The exponential map: algebra coordinates to matrices.

        Parameters
        ----------
        xp : Namespace
            The array namespace of ``a``.
        a : Array, shape (..., 1)
            Rotation angles in radians.

        Returns
        -------
        Array, shape (..., 2, 2)
            The group elements as matrices.
        """
        check_trailing(a, (1,), "a", f"{self!r}.exp")
        return rot2(xp, a[..., 0])

    def log(self, xp: Any, R: Any) -> Any:
        """The logarithm: matrices to algebra coordinates, the inverse of :meth:`exp`.

        Parameters
        ----------
        xp : Namespace
            The array namespace of ``R``.
        R : Array, shape (..., 2, 2)
            Elements of SO(2).

        Returns
        -------
        Array, shape (..., 1)
            The rotation angle in (-π, π].

        Raises
        ------
        ValueError
            Where ``R`` is not in SO(2) to within sqrt(eps) (checked where the values can be
            read, i.e. outside a jax trace).
        """
        check_trailing(R, (2, 2), "R", f"{self!r}.log")
        require_member(xp, not_rotation(xp, R, tolerance(xp, R)), self, "R")
        return xp.atan2(R[..., 1, 0] - R[..., 0, 1], R[..., 0, 0] + R[..., 1, 1])[..., None]

    def __repr__(self) -> str:
        return f"SO2(alpha={self.alpha})"
