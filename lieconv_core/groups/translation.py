"""Translations T(d) and the coordinate subgroups Tx, Ty of T(2)."""

from __future__ import annotations

from typing import Any

from ._checks import check_coords, check_trailing, not_translation, require_member, tolerance
from ._special import eye_like
from .base import Group, norm
from .subgroup import Subgroup


class T(Group):
    """Translation group T(d) acting on R^d. Elements: a = x; log(v⁻¹u) = u − v.

    The distance is the original's α‖Δx‖ (its base-class formula α‖log(v⁻¹u)‖ + (1 − α)‖Δq‖
    with no q; α = 0.2 by default): a ball of radius r holds the points with ‖Δx‖ < r/α.
    :meth:`pair_distance` is the Euclidean ‖Δx‖ that the searches evaluate;
    :attr:`distance_scale` is α.

    Parameters
    ----------
    d : int, default 2
        Dimension of the space.
    alpha : float, default 0.2
        The distance is α‖Δx‖.
    """

    euclidean_distance = True
    q_dim = 0

    def __init__(self, d: int = 2, alpha: float = 0.2):
        if d < 1:
            raise ValueError(f"d must be a positive dimension, got {d}")
        if not 0 < alpha:
            raise ValueError(f"alpha must be > 0 (the distance is alpha·|dx|), got {alpha}")
        self.space_dim = self.elem_dim = self.lie_dim = d
        self.alpha = float(alpha)

    @property
    def distance_scale(self) -> float:
        return self.alpha

    def lift(self, xp, coords, nsamples, draws):
        check_coords(self, coords)
        return coords, None

    def pair_log(self, xp, u, v):
        return u - v

    def distance_from_log(self, xp, a, qu, qv):
        return norm(xp, a)

    def random_element(self, xp, shape, draws, dtype, device):
        return 3 * draws.normal(xp, (*shape, self.space_dim), dtype, device)

    def act_on_points(self, xp, g, coords):
        return coords + g[:, None, :]

    act_on_elements = act_on_points

    def exp(self, xp: Any, a: Any) -> Any:
        """The exponential map: algebra coordinates to matrices.

        Parameters
        ----------
        xp : Namespace
            The array namespace of ``a``.
        a : Array, shape (..., d)
            Translation vectors.

        Returns
        -------
        Array, shape (..., d+1, d+1)
            Homogeneous translation matrices.
        """
        d = self.space_dim
        check_trailing(a, (d,), "a", f"{self!r}.exp")
        top = xp.concat([xp.broadcast_to(eye_like(xp, a, d), (*a.shape[:-1], d, d)),
                         a[..., :, None]], axis=-1)
        bottom = xp.concat([xp.zeros_like(a), xp.ones_like(a[..., :1])], axis=-1)[..., None, :]
        return xp.concat([top, bottom], axis=-2)

    def log(self, xp: Any, M: Any) -> Any:
        """The logarithm: matrices to algebra coordinates, the inverse of :meth:`exp`.

        Parameters
        ----------
        xp : Namespace
            The array namespace of ``M``.
        M : Array, shape (..., d+1, d+1)
            Elements of T(d) (homogeneous translation matrices).

        Returns
        -------
        Array, shape (..., d)
            The translation vectors.

        Raises
        ------
        ValueError
            Where ``M`` is not in T(d) (a homogeneous translation matrix) to within sqrt(eps)
            (checked where the values can be read, i.e. outside a jax trace).
        """
        d = self.space_dim
        check_trailing(M, (d + 1, d + 1), "M", f"{self!r}.log")
        require_member(xp, not_translation(xp, M, tolerance(xp, M)), self, "M")
        return M[..., : self.space_dim, self.space_dim]

    def __repr__(self) -> str:
        d = self.space_dim
        return f"T({d})" if self.alpha == 0.2 else f"T({d}, alpha={self.alpha})"


def Tx() -> Subgroup:
    """Translations along x in R^2 (y becomes the orbit identifier).

    Returns
    -------
    Subgroup
        The x coordinate of ``T(2)``.
    """
    return Subgroup(T(2), keep=(0,), name="Tx")


def Ty() -> Subgroup:
    """Translations along y in R^2 (x becomes the orbit identifier).

    Returns
    -------
    Subgroup
        The y coordinate of ``T(2)``.
    """
    return Subgroup(T(2), keep=(1,), name="Ty")
