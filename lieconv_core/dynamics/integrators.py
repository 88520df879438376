"""Fixed-step ODE integrators written once against the array API.

They only use arithmetic on arrays and ``xp.stack``, so they run on numpy, under torch autograd
(training differentiates through the whole rollout) and inside ``jax.jit`` / ``jax.grad``.

A vector field is a callable ``f(z) -> dz/dt`` (autonomous). States are arrays of any shape; for
:func:`leapfrog_step` they must have the layout ``(..., 2, n, d)`` (q = z[..., 0], p = z[..., 1]).
Time grids are host sequences of floats (numpy arrays or lists), never traced values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

METHODS = ("rk4", "leapfrog")


def rk4_step(f: Callable[[Any], Any], z: Any, dt: float) -> Any:
    """One classic 4th-order Runge–Kutta step."""
    k1 = f(z)
    k2 = f(z + (dt / 2) * k1)
    k3 = f(z + (dt / 2) * k2)
    k4 = f(z + dt * k3)
    return z + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


def _qp(z: Any) -> tuple[Any, Any]:
    return z[..., 0, :, :], z[..., 1, :, :]


def leapfrog_step(f: Callable[[Any], Any], z: Any, dt: float, xp: Any,
                  force: Any = None) -> tuple[Any, Any]:
    """One kick–drift–kick (velocity Verlet) step for a separable Hamiltonian H = T(p) + V(q).

    Uses ṗ = f(z)[..., 1] (must depend on q only) and q̇ = f(z)[..., 0] (must depend on p only):
    symplectic and time-reversible for separable H (all Hamiltonian models here are separable);
    for a general vector field it is just a 2nd-order splitting. ``force`` is ṗ at z if already
    known (it is the last kick's force of the previous step). Returns (z_new, force at z_new).
    """
    q, p = _qp(z)
    if force is None:
        force = _qp(f(z))[1]
    p_half = p + (dt / 2) * force
    qdot = _qp(f(xp.stack([q, p_half], axis=-3)))[0]
    q_new = q + dt * qdot
    force_new = _qp(f(xp.stack([q_new, p_half], axis=-3)))[1]
    p_new = p_half + (dt / 2) * force_new
    return xp.stack([q_new, p_new], axis=-3), force_new


def odeint(f: Callable[[Any], Any], z0: Any, ts: Sequence[float], method: str = "rk4",
           substeps: int = 1, xp: Any = None) -> Any:
    """Integrate ż = f(z) through a time grid with fixed steps.

    Parameters
    ----------
    f : callable
        The vector field, ``f(z) -> ż`` with ż of z's shape.
    z0 : Array, shape (bs, ...)
        The initial states at ``ts[0]``.
    ts : sequence of float
        The time grid (T times).
    method : str, default "rk4"
        The integrator (one of ``METHODS``).
    substeps : int, default 1
        Fixed steps per grid interval.
    xp : Namespace, optional
        The namespace of ``z0`` (found from it when None).

    Returns
    -------
    Array, shape (bs, T, ...)
        The states at the grid times; ``[:, 0]`` is ``z0``.

    Raises
    ------
    ValueError
        For an unknown ``method``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown integrator {method!r}; choose one of: {', '.join(METHODS)}")
    if xp is None:
        from .._backend import array_namespace

        xp = array_namespace(z0)
    ts = [float(t) for t in ts]
    out, z, force = [z0], z0, None
    for a, b in zip(ts[:-1], ts[1:]):
        dt = (b - a) / substeps
        for _ in range(substeps):
            if method == "rk4":
                z = rk4_step(f, z, dt)
            else:
                z, force = leapfrog_step(f, z, dt, xp, force)
        out.append(z)
    return xp.stack(out, axis=1)
