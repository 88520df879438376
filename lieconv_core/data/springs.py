"""The 6-body spring system of the LieConv paper: simulator, conserved quantities and
the train/val/test chunks.

State layout used everywhere in this package: ``z`` has shape ``(..., 2, n, d)`` with
``z[..., 0, :, :]`` the positions q and ``z[..., 1, :, :]`` the momenta p. System parameters
``sys`` have shape ``(..., n, 2)`` with columns [m_i, k_i].

Physics: H = Σ_i ‖p_i‖²/2m_i + ½ Σ_{i,j} k_i k_j ‖q_i − q_j‖² (ordered pairs, zero rest length),
m ~ U(0.1, 3.1), k ~ U(0, 5), q0 ~ 0.4·N(0, I), p0 ~ 0.6·N(0, I). Ground truth: classic RK4 in
float64 on t = linspace(0, 5, 500), vectorised over systems in numpy.

Momentum centring (``center``):

* ``"none"`` (default): p0 is used as drawn, so every system carries its own random net momentum
  and its centre of mass drifts. This is (to within 1/sqrt(10000)) the distribution the original
  code trained on, and it keeps total linear momentum a non-trivial conserved quantity for the
  conservation checks.
* ``"system"``: subtract each system's mean momentum over its particles: Σ_i p_i = 0 per system.
* ``"dataset"``: the original code's choice: subtract the mean of p0 over the *systems* axis (of all
  systems drawn), which leaves each system with a net momentum.

The quantities H, P (total linear momentum) and L (total angular momentum) are written against the
array API and accept numpy, torch or jax arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

N_PARTICLES = 6
DIM = 2
T_END = 5.0
N_STEPS = 500
N_SYSTEMS = 10_000
SPLITS = {"train": 3000, "val": 200, "test": 2000}
CHUNK_LEN = 5
CENTER_CHOICES = ("none", "system", "dataset")


def _xp(*arrays: Any) -> Any:
    from .._backend import array_namespace

    return array_namespace(*arrays)


def energy(z: Any, sys: Any) -> Any:
    """The total energy H(z) of spring systems (any array library).

    Parameters
    ----------
    z : Array, shape (..., 2, n, d)
        Positions and momenta.
    sys : Array, shape (..., n, 2)
        Masses and spring constants [m_i, k_i].

    Returns
    -------
    Array, shape (...)
        H = Σ_i ‖p_i‖²/2m_i + ½ Σ_{i,j} k_i k_j ‖q_i − q_j‖².
    """
    xp = _xp(z, sys)
    q, p = z[..., 0, :, :], z[..., 1, :, :]
    m, k = sys[..., 0], sys[..., 1]
    kinetic = xp.sum(xp.sum(p * p, axis=-1) / (2 * m), axis=-1)
    diff = q[..., :, None, :] - q[..., None, :, :]
    kk = k[..., :, None] * k[..., None, :]
    potential = 0.5 * xp.sum(kk * xp.sum(diff * diff, axis=-1), axis=(-2, -1))
    return kinetic + potential


def linear_momentum(z: Any) -> Any:
    """The total linear momentum Σ_i p_i (any array library).

    Parameters
    ----------
    z : Array, shape (..., 2, n, d)
        Positions and momenta.

    Returns
    -------
    Array, shape (..., d)
        The sum of the momenta.
    """
    xp = _xp(z)
    return xp.sum(z[..., 1, :, :], axis=-2)


def angular_momentum(z: Any) -> Any:
    """The total angular momentum about the origin, Σ_i q_i × p_i, in the plane (any array library).

    Parameters
    ----------
    z : Array, shape (..., 2, n, 2)
        Positions and momenta.

    Returns
    -------
    Array, shape (...)
        The scalar angular momentum.
    """
    xp = _xp(z)
    q, p = z[..., 0, :, :], z[..., 1, :, :]
    return xp.sum(q[..., 0] * p[..., 1] - q[..., 1] * p[..., 0], axis=-1)


def vector_field(z: np.ndarray, sys: np.ndarray) -> np.ndarray:
    """Exact ż = (∂H/∂p, −∂H/∂q) for z (..., 2, n, d): O(n) per system.

    ∂V/∂q_a = 2 k_a Σ_j k_j (q_a − q_j) = 2 k_a (K q_a − Σ_j k_j q_j), K = Σ_j k_j.
    """
    xp = _xp(z, sys)
    q, p = z[..., 0, :, :], z[..., 1, :, :]
    m, k = sys[..., 0:1], sys[..., 1:2]
    ksum = xp.sum(k, axis=-2, keepdims=True)
    kq = xp.sum(k * q, axis=-2, keepdims=True)
    dv = 2 * k * (ksum * q - kq)
    return xp.stack([p / m, -dv], axis=-3)


def rk4_step(f, z, dt):
    k1 = f(z)
    k2 = f(z + (dt / 2) * k1)
    k3 = f(z + (dt / 2) * k2)
    k4 = f(z + dt * k3)
    return z + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


def time_grid(n_steps: int = N_STEPS, t_end: float = T_END) -> np.ndarray:
    return np.linspace(0.0, t_end, n_steps)


def draw_systems(n_systems: int, seed: int = 0, center: str = "none",
                 n: int = N_PARTICLES) -> tuple[np.ndarray, np.ndarray]:
    """Random initial states and system parameters, float64, from ``seed``.

    Parameters
    ----------
    n_systems : int
        How many systems (``N``).
    seed : int, default 0
        Seed of the generator.
    center : {"none", "system", "dataset"}, default "none"
        Momentum centring (see the module documentation).
    n : int, default 6
        Particles per system.

    Returns
    -------
    z0 : numpy.ndarray, shape (N, 2, n, 2)
        Initial positions q0 ~ 0.4·N(0, I) and momenta p0 ~ 0.6·N(0, I).
    sys : numpy.ndarray, shape (N, n, 2)
        Masses m ~ U(0.1, 3.1) and spring constants k ~ U(0, 5).
    """
    if center not in CENTER_CHOICES:
        raise ValueError(f"center must be one of {CENTER_CHOICES}, got {center!r}")
    if n_systems < 1:
        raise ValueError(f"n_systems must be >= 1, got {n_systems}")
    gen = np.random.default_rng(seed)
    m = gen.uniform(0.1, 3.1, size=(n_systems, n))
    k = gen.uniform(0.0, 5.0, size=(n_systems, n))
    q0 = 0.4 * gen.standard_normal((n_systems, n, DIM))
    p0 = 0.6 * gen.standard_normal((n_systems, n, DIM))
    if center == "system":
        p0 = p0 - p0.mean(axis=1, keepdims=True)
    elif center == "dataset":
        p0 = p0 - p0.mean(axis=0, keepdims=True)
    return np.stack([q0, p0], axis=1), np.stack([m, k], axis=-1)


def simulate(z0: np.ndarray, sys: np.ndarray, t: np.ndarray | None = None,
             substeps: int = 1, record: np.ndarray | None = None) -> np.ndarray:
    """Float64 RK4 ground-truth trajectories.

    Parameters
    ----------
    z0 : numpy.ndarray, shape (N, 2, n, d)
        Initial states.
    sys : numpy.ndarray, shape (N, n, 2)
        Masses and spring constants.
    t : numpy.ndarray, shape (T,), optional
        A uniform time grid; default ``linspace(0, 5, 500)``.
    substeps : int, default 1
        RK4 steps per grid interval.
    record : numpy.ndarray of int, shape (N, L), optional
        Keep only these step indices per system (memory O(N·L) instead of O(N·T)).

    Returns
    -------
    numpy.ndarray, shape (N, T, 2, n, d)
        The states at every grid time, or (N, L, 2, n, d) at the ``record`` steps.

    Raises
    ------
    ValueError
        When ``z0`` or ``sys`` is not finite.
    """
    z = np.asarray(z0, dtype=np.float64)
    sys = np.asarray(sys, dtype=np.float64)
    t = time_grid() if t is None else np.asarray(t, dtype=np.float64)
    if not (np.all(np.isfinite(z)) and np.all(np.isfinite(sys))):
        raise ValueError("simulate: z0 and sys must be finite")
    dt = float(t[1] - t[0]) / substeps if len(t) > 1 else 0.0

    def f(zz):
        return vector_field(zz, sys)

    if record is None:
        out = np.empty((z.shape[0], len(t), *z.shape[1:]))
        out[:, 0] = z
        for i in range(1, len(t)):
            for _ in range(substeps):
                z = rk4_step(f, z, dt)
            out[:, i] = z
        return out
    record = np.asarray(record)
    out = np.empty((z.shape[0], record.shape[1], *z.shape[1:]))
    flat = record.ravel()
    order = np.argsort(flat, kind="stable")
    rows_all, cols_all = np.divmod(order, record.shape[1])
    bounds = np.searchsorted(flat[order], np.arange(int(flat.max()) + 2))
    for i in range(int(flat.max()) + 1):
        if i > 0:
            for _ in range(substeps):
                z = rk4_step(f, z, dt)
        lo, hi = bounds[i], bounds[i + 1]
        if hi > lo:
            out[rows_all[lo:hi], cols_all[lo:hi]] = z[rows_all[lo:hi]]
    return out


@dataclass
class Split:
    """One split: chunks z (N, L, 2, n, 2) of consecutive steps, sys (N, n, 2), times ts (L,)
    relative to the chunk start, and the start step of each chunk."""

    z: np.ndarray
    sys: np.ndarray
    ts: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return self.z.shape[0]


def split_indices(n_train: int = SPLITS["train"], n_val: int = SPLITS["val"],
                  n_test: int = SPLITS["test"]) -> dict[str, np.ndarray]:
    """Fixed layout over the 10,000 systems: train pool [0, 3000), val [3000, 3200),
    test [3200, 5200). n_train <= 3000 takes the first n_train of the pool (so smaller training
    sets are nested in larger ones)."""
    if not 1 <= n_train <= SPLITS["train"]:
        raise ValueError(f"n_train must be in [1, {SPLITS['train']}], got {n_train}")
    if not 1 <= n_val <= SPLITS["val"] or not 1 <= n_test <= SPLITS["test"]:
        raise ValueError("n_val must be in [1, 200] and n_test in [1, 2000]")
    tr, va = SPLITS["train"], SPLITS["train"] + SPLITS["val"]
    return {"train": np.arange(n_train), "val": np.arange(tr, tr + n_val),
            "test": np.arange(va, va + n_test)}


def make_splits(n_train: int = SPLITS["train"], n_val: int = SPLITS["val"],
                n_test: int = SPLITS["test"], seed: int = 0, center: str = "none",
                chunk_len: int = CHUNK_LEN, n_steps: int = N_STEPS) -> dict[str, Split]:
    """The train, validation and test chunks of the springs task, all from ``seed``.

    Each system of :func:`split_indices` contributes one chunk of ``chunk_len`` consecutive steps
    of its float64 RK4 trajectory, starting uniformly in [0, n_steps − chunk_len].

    Parameters
    ----------
    n_train, n_val, n_test : int
        Systems per split (at most 3000, 200, 2000; smaller sets are nested in larger ones).
    seed : int, default 0
        Seed of the systems and the chunk starts.
    center : {"none", "system", "dataset"}, default "none"
        Momentum centring.
    chunk_len : int, default 5
        Steps per chunk.
    n_steps : int, default 500
        Steps of the full trajectories.

    Returns
    -------
    dict of str to Split
        ``{"train", "val", "test"}``: chunks z (N, chunk_len, 2, n, 2), sys (N, n, 2), times ts
        (chunk_len,) relative to the chunk start, and each chunk's start step.
    """
    z0, sys = draw_systems(N_SYSTEMS, seed=seed, center=center)
    starts = np.random.default_rng([seed, 1]).integers(0, n_steps - chunk_len + 1, size=N_SYSTEMS)
    idx = split_indices(n_train, n_val, n_test)
    sel = np.concatenate(list(idx.values()))
    record = starts[sel, None] + np.arange(chunk_len)[None, :]
    t = time_grid(n_steps)
    chunks = simulate(z0[sel], sys[sel], t, record=record)
    out, pos = {}, 0
    ts = t[:chunk_len] - t[0]
    for name, ids in idx.items():
        sl = slice(pos, pos + len(ids))
        out[name] = Split(chunks[sl], sys[ids], ts, starts[ids])
        pos += len(ids)
    return out


def test_trajectories(n: int = 100, seed: int = 0, center: str = "none",
                      n_steps: int = N_STEPS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full ground-truth trajectories of the first ``n`` test systems, ``n_steps`` points of the
    data's time grid (step ``T_END / (N_STEPS - 1)``; longer rollouts continue it past
    ``T_END``).

    Returns (zs (n, n_steps, 2, 6, 2), sys (n, 6, 2), t (n_steps,))."""
    z0, sys = draw_systems(N_SYSTEMS, seed=seed, center=center)
    ids = split_indices()["test"][:n]
    t = time_grid()
    if n_steps <= len(t):
        t = t[:n_steps]
    else:
        t = np.arange(n_steps) * (T_END / (N_STEPS - 1))
    return simulate(z0[ids], sys[ids], t), sys[ids], t


test_trajectories.__test__ = False  # not a pytest test
