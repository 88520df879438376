"""RxSO(2): rotations and scalings of R^2 \\ {0}, and its radial-scaling subgroup Rx."""

from __future__ import annotations

from typing import Any

from ._checks import check_coords, check_trailing, not_scaled_rotation, require_member, tolerance
from ._special import wrap_angle
from .base import Group, uniform_angle
from .so2 import rot2, rotate2
from .subgroup import Subgroup


class RxSO2(Group):
    """RxSO(2). Elements a = (log r, θ) (E = 2), transitive on R^2 \\ {0}.

    Distance α|Δθ| + (1−α)|Δ log r|. Points at the origin are outside the domain.

    Parameters
    ----------
    alpha : float, default 0.3
        Weight of the rotational part in the distance.
    """

    elem_dim = lie_dim = 2
    q_dim = 0
    space_dim = 2
    excludes_origin = True

    def __init__(self, alpha: float = 0.3):
        self.alpha = float(alpha)

    def lift(self, xp, coords, nsamples, draws):
        check_coords(self, coords)
        r2 = xp.sum(coords * coords, axis=-1)
        # padded points may sit at the origin; they are masked, but must stay finite
        r2 = xp.where(r2 > 0, r2, xp.ones_like(r2))
        theta = xp.atan2(coords[..., 1], coords[..., 0])
        return xp.stack([xp.log(r2) / 2, theta], axis=-1), None

    def pair_log(self, xp, u, v):
        d = u - v
        return xp.stack([d[..., 0], wrap_angle(xp, d[..., 1])], axis=-1)

    def distance_from_log(self, xp, a, qu, qv):
        return self.alpha * xp.abs(a[..., 1]) + (1 - self.alpha) * xp.abs(a[..., 0])

    def random_element(self, xp, shape, draws, dtype, device):
        scale = 0.5 * draws.normal(xp, (*shape, 1), dtype, device)
        return xp.concat([scale, uniform_angle(xp, (*shape, 1), draws, dtype, device)], axis=-1)

    def act_on_points(self, xp, g, coords):
        return xp.exp(g[:, None, 0:1]) * rotate2(xp, g[:, None, 1], coords)

    def act_on_elements(self, xp, g, elems):
        moved = elems + g[:, None, :]
        return xp.stack([moved[..., 0], wrap_angle(xp, moved[..., 1])], axis=-1)

    def exp(self, xp: Any, a: Any) -> Any:
        """The exponential map: algebra coordinates to matrices.

        Parameters
        ----------
        xp : Namespace
            The array namespace of ``a``.
        a : Array, shape (..., 2)
            (log-scale, angle in radians).

        Returns
        -------
        Array, shape (..., 2, 2)
            The group elements as matrices.
        """
        check_trailing(a, (2,), "a", f"{self!r}.exp")
        return xp.exp(a[..., 0])[..., None, None] * rot2(xp, a[..., 1])

    def log(self, xp: Any, M: Any) -> Any:
        """The logarithm: matrices to algebra coordinates, the inverse of :meth:`exp`.

        Parameters
        ----------
        xp : Namespace
            The array namespace of ``M``.
        M : Array, shape (..., 2, 2)
            Elements of RxSO(2) (a positive multiple of a rotation).

        Returns
        -------
        Array, shape (..., 2)
            (log-scale, angle in (-π, π]).

        Raises
        ------
        ValueError
            Where ``M`` is not in RxSO(2) (a positive multiple of a rotation) to within
            sqrt(eps) (checked where the values can be read, i.e. outside a jax trace).
        """
        check_trailing(M, (2, 2), "M", f"{self!r}.log")
        require_member(xp, not_scaled_rotation(xp, M, tolerance(xp, M)), self, "M")
        det = M[..., 0, 0] * M[..., 1, 1] - M[..., 0, 1] * M[..., 1, 0]
        theta = xp.atan2(M[..., 1, 0] - M[..., 0, 1], M[..., 0, 0] + M[..., 1, 1])
        return xp.stack([xp.log(det) / 2, theta], axis=-1)

    def __repr__(self) -> str:
        return f"RxSO2(alpha={self.alpha})"


def Rx(alpha: float = 0.3) -> Subgroup:
    """Radial scalings of R^2 \\ {0} (the angle becomes the orbit identifier).

    Parameters
    ----------
    alpha : float, default 0.3
        Weight of the algebra part in the distance (as in :class:`RxSO2`).

    Returns
    -------
    Subgroup
        The log-scale coordinate of :class:`RxSO2`.
    """
    return Subgroup(RxSO2(alpha), keep=(0,), name=f"Rx(alpha={float(alpha)})")
