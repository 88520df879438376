"""Data-parallel training, the framework-free part: the launcher's environment, the hook that sums
batch statistics over the data-parallel processes, and the split of a global batch into shares.

Batch statistics (the masked batch norm's mean and variance, the radius controller's fill) are
statistics of the whole global batch. In one process that is the batch itself; when a torch
trainer runs one share of the batch per process it installs a differentiable all-reduce with
:func:`summing_over`, and :func:`dp_sum` / :func:`dp_mean_rows` turn each per-share sum into the
global one. Without it (one process, or jax, whose sharded jitted program computes global
statistics by itself) both are plain reductions and nothing changes.

Random draws of the model (lifts, FPS starts, ball subsets) are made for the global batch and
each process keeps its rows (:class:`ShareDraws`), so every sample sees the numbers it would see
in one process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

_SUM: Callable[[Any], Any] | None = None


def launcher_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) from a ``torchrun``-style launcher's environment
    (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or None when there is none or it has one
    process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise RuntimeError(f"malformed launcher environment (RANK, WORLD_SIZE, LOCAL_RANK): "
                           f"{exc}") from exc
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise RuntimeError(f"launcher environment: RANK {rank} outside WORLD_SIZE {world}")
    return rank, world, local


def process_rank() -> int:
    """This process's rank under a launcher (0 without one): rank 0 writes files and prints."""
    env = launcher_env()
    if env is not None:
        return env[0]
    return int(os.environ.get("JAX_PROCESS_ID", "0") or 0)


@contextlib.contextmanager
def summing_over(fn: Callable[[Any], Any]) -> Iterator[None]:
    """Context manager within which :func:`dp_sum` sums over the data-parallel processes.

    Parameters
    ----------
    fn : callable
        A differentiable sum of an array over the data-parallel processes, returning an array of
        the same shape; the previous one is restored on exit.

    Yields
    ------
    None
    """
    global _SUM
    old, _SUM = _SUM, fn
    try:
        yield
    finally:
        _SUM = old


def active() -> bool:
    """Whether a sum over data-parallel processes is installed."""
    return _SUM is not None


def dp_sum(x: Any) -> Any:
    """An array summed over the data-parallel processes.

    Parameters
    ----------
    x : array
        Any shape; every process passes the same shape.

    Returns
    -------
    array
        Same shape as ``x``: the sum over processes under :func:`summing_over`, ``x`` itself in
        one process.
    """
    return x if _SUM is None else _SUM(x)


def dp_mean_rows(xp: Any, v: Any) -> Any:
    """The mean of the rows of v (n, ...) over the global batch: ``xp.mean(v)`` in one process,
    (Σ over processes of Σ v) / (Σ over processes of n) otherwise."""
    if _SUM is None:
        return xp.mean(v)
    n = xp.asarray(float(v.shape[0]), dtype=v.dtype, device=getattr(v, "device", None))
    both = _SUM(xp.stack([xp.sum(v), n]))
    return both[0] / both[1]


def share(size: int, rank: int, world: int) -> slice:
    """The rows of process ``rank`` in a global batch of ``size`` rows split ``world`` ways
    (equal shares; ValueError unless ``world`` divides ``size``)."""
    if size % world:
        raise ValueError(f"a global batch of {size} does not split into {world} equal shares; "
                         f"use a batch size that is a multiple of {world}")
    n = size // world
    return slice(rank * n, (rank + 1) * n)


def take_share(batch: dict, rank: int, world: int) -> dict:
    """The rows of process ``rank`` of every array in a host batch (leading axis)."""
    sizes = {np.shape(v)[0] for v in batch.values()}
    if len(sizes) != 1:
        raise ValueError(f"batch arrays disagree in their leading axis: {sorted(sizes)}")
    sl = share(sizes.pop(), rank, world)
    return {k: np.asarray(v)[sl] for k, v in batch.items()}


class ShareDraws:
    """Random draws of one process's share of a global batch: every draw whose leading axis is
    the share's size is made for the global batch (leading axis ``global_size``) from ``inner``
    and sliced to the share, so a sample's numbers do not depend on how the batch is split.

    Parameters
    ----------
    inner : Draws
        The global batch's draws (:class:`lieconv_core.random.PortableDraws`).
    rows : slice
        The share's rows of the global batch.
    global_size : int
        Rows of the global batch.
    """

    def __init__(self, inner: Any, rows: slice, global_size: int):
        self.inner, self.rows, self.global_size = inner, rows, int(global_size)
        self.local_size = rows.stop - rows.start

    def _draw(self, method: str, xp: Any, shape: tuple, *args: Any) -> Any:
        shape = tuple(shape)
        if not shape or shape[0] != self.local_size:
            raise ValueError(f"a data-parallel draw of shape {shape} has no leading batch axis "
                             f"of {self.local_size}")
        out = getattr(self.inner, method)(xp, (self.global_size, *shape[1:]), *args)
        return out[self.rows]

    def uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
        """Uniform draws on [0, 1): the share's rows of the global batch's draw.

        Parameters
        ----------
        xp : module
            The array namespace.
        shape : tuple of int
            The share's shape; its leading axis must be the share's size.
        dtype : dtype
            Floating dtype of the draws.
        device : object
            The device.

        Returns
        -------
        array
            ``shape``, of ``dtype``.

        Raises
        ------
        ValueError
            When ``shape`` has no leading axis of the share's size.
        """
        return self._draw("uniform", xp, shape, dtype, device)

    def normal(self, xp: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
        """Standard normal draws: the share's rows of the global batch's draw.

        Parameters
        ----------
        xp : module
            The array namespace.
        shape : tuple of int
            The share's shape; its leading axis must be the share's size.
        dtype : dtype
            Floating dtype of the draws.
        device : object
            The device.

        Returns
        -------
        array
            ``shape``, of ``dtype``.

        Raises
        ------
        ValueError
            When ``shape`` has no leading axis of the share's size.
        """
        return self._draw("normal", xp, shape, dtype, device)

    def priorities(self, xp: Any, shape: tuple[int, ...], device: Any) -> Any:
        """Random permutations along the last axis: the share's rows of the global draw.

        Parameters
        ----------
        xp : module
            The array namespace.
        shape : tuple of int
            The share's shape; its leading axis must be the share's size.
        device : object
            The device.

        Returns
        -------
        array
            Integers of ``shape``, each row along the last axis a permutation of
            ``range(shape[-1])``.

        Raises
        ------
        ValueError
            When ``shape`` has no leading axis of the share's size.
        """
        return self._draw("priorities", xp, shape, device)
