"""The trivial group: no equivariance; the kernel sees both raw positions [x_u, x_v]."""

from __future__ import annotations

from ._checks import check_coords
from .base import Group, norm


class Trivial(Group):
    """Trivial group acting on R^d. Elements are the points themselves; embedding [x_u, x_v].

    The distance is the original's (1 − α)‖Δx‖ (its base-class formula with no algebra part and
    q = x; α = 0.2 by default): a ball of radius r holds the points with ‖Δx‖ < r/(1 − α).
    :meth:`pair_distance` is the Euclidean ‖Δx‖ that the searches evaluate;
    :attr:`distance_scale` is 1 − α.

    Parameters
    ----------
    d : int, default 2
        Dimension of the space.
    alpha : float, default 0.2
        The distance is (1 − α)‖Δx‖.
    """

    euclidean_distance = True
    lie_dim = 0
    q_dim = 0

    def __init__(self, d: int = 2, alpha: float = 0.2):
        if d < 1:
            raise ValueError(f"d must be a positive dimension, got {d}")
        if not alpha < 1:
            raise ValueError(f"alpha must be < 1 (the distance is (1-alpha)·|dx|), got {alpha}")
        self.space_dim = self.elem_dim = d
        self.alpha = float(alpha)

    @property
    def distance_scale(self) -> float:
        return 1 - self.alpha

    @property
    def embed_dim(self) -> int:
        return 2 * self.space_dim

    def lift(self, xp, coords, nsamples, draws):
        check_coords(self, coords)
        return coords, None

    def pair_embed(self, xp, u, qu, v, qv):
        shape = xp.broadcast_arrays(u, v)[0].shape
        return xp.concat([xp.broadcast_to(u, shape), xp.broadcast_to(v, shape)], axis=-1)

    def pair_distance(self, xp, u, qu, v, qv):
        return norm(xp, u - v)

    def random_element(self, xp, shape, draws, dtype, device):
        return xp.zeros((*shape, 0), dtype=dtype, device=device)

    def act_on_points(self, xp, g, coords):
        return coords

    def act_on_elements(self, xp, g, elems):
        return elems

    def __repr__(self) -> str:
        return (f"Trivial({self.space_dim})" if self.alpha == 0.2
                else f"Trivial({self.space_dim}, alpha={self.alpha})")
