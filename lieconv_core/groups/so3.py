"""SO(3) acting on R^3 by rotation about the origin; the radius is the orbit identifier."""

from __future__ import annotations

import math
from typing import Any

from array_api_compat import device as _dev

from ._checks import check_coords, check_trailing, not_rotation, require_member, tolerance
from ._special import eye_like, hat3, so3_exp, so3_log, so3_log_parts, transpose_product
from .base import Group, norm


def quat_to_rotmat(xp: Any, q: Any) -> Any:
    """(..., 4) quaternions (w, x, y, z), any norm > 0 -> (..., 3, 3) rotations."""
    q = q / norm(xp, q)[..., None]
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        xp.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
        xp.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
        xp.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
    ]
    return xp.stack(rows, axis=-2)


def haar_rotations(xp: Any, shape: tuple[int, ...], draws: Any, dtype: Any, device: Any) -> Any:
    """Haar-random rotations (*shape, 3, 3) from uniform unit quaternions (normalised Gaussians)."""
    return quat_to_rotmat(xp, draws.normal(xp, (*shape, 4), dtype, device))


def align_e1(xp: Any, n: Any) -> Any:
    """A rotation R_p with R_p e1 = n for unit vectors n (..., 3).

    Uses R = I + K + K²/(1 + c) (K = hat(a × n), c = a·n) for a = ±e1, choosing the sign of a so
    that 1 + c ≥ 1; for a = −e1 the result is composed with the π-rotation about e3 that maps e1 to
    −e1. Any R_p with R_p e1 = n gives the same lift distribution once composed with a uniform
    stabilizer angle, so this branch choice does not affect equivariance.
    """
    sgn = xp.where(n[..., 0] < 0, -xp.ones_like(n[..., 0]), xp.ones_like(n[..., 0]))
    zero = xp.zeros_like(sgn)
    a = xp.stack([sgn, zero, zero], axis=-1)
    cross = xp.stack([a[..., 1] * n[..., 2] - a[..., 2] * n[..., 1],
                      a[..., 2] * n[..., 0] - a[..., 0] * n[..., 2],
                      a[..., 0] * n[..., 1] - a[..., 1] * n[..., 0]], axis=-1)
    c = sgn * n[..., 0]
    K = hat3(xp, cross)
    R = eye_like(xp, n, 3) + K + (K @ K) / (1 + c)[..., None, None]
    flip = xp.stack([sgn, sgn, xp.ones_like(sgn)], axis=-1)  # diag(±1, ±1, 1)
    return R * flip[..., None, :]


def rot_e1(xp: Any, theta: Any) -> Any:
    """(...,) -> (..., 3, 3) rotations about e1."""
    c, s = xp.cos(theta), xp.sin(theta)
    z, o = xp.zeros_like(theta), xp.ones_like(theta)
    rows = [xp.stack([o, z, z], axis=-1), xp.stack([z, c, -s], axis=-1),
            xp.stack([z, s, c], axis=-1)]
    return xp.stack(rows, axis=-2)


class SO3(Group):
    """SO(3). Lift g = R_p·R_e1(θ_s) with θ_s uniform on [0, 2π) (exact equivariance in
    distribution; the original drew θ_s ∝ sin²(θ/2), which is not uniform on the stabilizer);
    q = ‖x‖.

    Elements: flattened 3×3 rotations (E = 9). Distance α‖ω‖ + (1−α)|Δq|.

    Parameters
    ----------
    alpha : float, default 0.2
        Weight of the rotational part in the distance.

    Examples
    --------
    >>> import numpy as np
    >>> from lieconv_core.groups import SO3
    >>> omega = np.array([[0.0, 0.0, np.pi / 2]])     # a quarter turn about z
    >>> R = SO3().exp(np, omega)                       # (1, 3, 3)
    >>> bool(np.allclose(R[0] @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]))
    True
    >>> bool(np.allclose(SO3().log(np, R), omega))
    True
    """

    elem_dim = 9
    lie_dim = 3
    q_dim = 1
    space_dim = 3
    random_lift = True

    def __init__(self, alpha: float = 0.2):
        self.alpha = float(alpha)

    def lift(self, xp, coords, nsamples, draws):
        check_coords(self, coords)
        bs, n, _ = coords.shape
        r = norm(xp, coords)
        safe_r = xp.where(r > 0, r, xp.ones_like(r))
        e1 = xp.zeros_like(coords) + xp.asarray([1.0, 0.0, 0.0], dtype=coords.dtype,
                                                  device=_dev(coords))
        nhat = xp.where((r > 0)[..., None], coords / safe_r[..., None], e1)
        Rp = align_e1(xp, nhat)[:, :, None, ...]  # (bs, n, 1, 3, 3)
        theta = 2 * math.pi * draws.uniform(xp, (bs, n, nsamples), coords.dtype, _dev(coords))
        R = Rp @ rot_e1(xp, theta)
        q = xp.broadcast_to(r[:, :, None, None], (bs, n, nsamples, 1))
        return xp.reshape(R, (bs, n * nsamples, 9)), xp.reshape(q, (bs, n * nsamples, 1))

    def pair_log(self, xp, u, v):
        Ru, Rv = ([[e[..., 3 * i + j] for j in range(3)] for i in range(3)] for e in (u, v))
        return xp.stack(so3_log_parts(xp, transpose_product(Rv, Ru)), axis=-1)

    def distance_from_log(self, xp, a, qu, qv):
        return self.alpha * norm(xp, a) + (1 - self.alpha) * xp.abs(qu[..., 0] - qv[..., 0])

    def random_element(self, xp, shape, draws, dtype, device):
        return so3_log(xp, haar_rotations(xp, shape, draws, dtype, device))

    def act_on_points(self, xp, g, coords):
        return (so3_exp(xp, g)[:, None] @ coords[..., None])[..., 0]

    def act_on_elements(self, xp, g, elems):
        U = xp.reshape(elems, (*elems.shape[:-1], 3, 3))
        return xp.reshape(so3_exp(xp, g)[:, None] @ U, elems.shape)

    def exp(self, xp: Any, a: Any) -> Any:
        """The exponential map: algebra coordinates to matrices.

        Parameters
        ----------
        xp : Namespace
            The array namespace of ``a``.
        a : Array, shape (..., 3)
            Axis-angle vectors ω (rotation by ‖ω‖ radians about ω).

        Returns
        -------
        Array, shape (..., 3, 3)
            The group elements as matrices.
        """
        check_trailing(a, (3,), "a", f"{self!r}.exp")
        return so3_exp(xp, a)

    def log(self, xp: Any, R: Any) -> Any:
        """The logarithm: matrices to algebra coordinates, the inverse of :meth:`exp`.

        Parameters
        ----------
        xp : Namespace
            The array namespace of ``R``.
        R : Array, shape (..., 3, 3)
            Elements of SO(3).

        Returns
        -------
        Array, shape (..., 3)
            Axis-angle vectors, accurate up to and including a rotation angle of π.

        Raises
        ------
        ValueError
            Where ``R`` is not in SO(3) to within sqrt(eps) (checked where the values can be
            read, i.e. outside a jax trace).
        """
        check_trailing(R, (3, 3), "R", f"{self!r}.log")
        require_member(xp, not_rotation(xp, R, tolerance(xp, R)), self, "R")
        return so3_log(xp, R)

    def __repr__(self) -> str:
        return f"SO3(alpha={self.alpha})"
