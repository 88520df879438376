"""Random draws for lifts, FPS start points and neighbourhood sampling.

Portable mode (the default): draws come from ``numpy.random.Generator`` on the host and are moved to
the target namespace/device, so every backend sees identical samples and gives identical numbers.
Adapters may offer native generators (e.g. ``lieconv_jax.JaxDraws`` for use under ``jax.jit``) with
the same four methods.

Every method takes the target namespace ``xp``, the ``shape`` and (where relevant) the ``dtype``
and ``device`` of the result.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Draws(Protocol):
    """What the core needs from a random source."""

    def uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
        """Uniform draws on [0, 1).

        Parameters
        ----------
        xp : Namespace
            The namespace of the result.
        shape : tuple of int
            Shape of the result.
        dtype : dtype of ``xp``
            Floating dtype of the result.
        device : device
            Where the result lives.

        Returns
        -------
        Array, shape ``shape``
            The draws.
        """

    def normal(self, xp: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
        """Standard normal draws.

        Parameters
        ----------
        xp : Namespace
            The namespace of the result.
        shape : tuple of int
            Shape of the result.
        dtype : dtype of ``xp``
            Floating dtype of the result.
        device : device
            Where the result lives.

        Returns
        -------
        Array, shape ``shape``
            The draws.
        """

    def priorities(self, xp: Any, shape: tuple[int, ...], device: Any) -> Any:
        """Random permutations of ``range(shape[-1])`` along the last axis (no ties).

        Parameters
        ----------
        xp : Namespace
            The namespace of the result.
        shape : tuple of int
            Shape of the result.
        device : device
            Where the result lives.

        Returns
        -------
        Array of int, shape ``shape``
            Each row along the last axis a permutation.
        """


class PortableDraws:
    """Host-side draws from one ``numpy.random.Generator``; identical on every backend.

    Floats are drawn in float64 and rounded to ``dtype`` on the host, so float32 draws are the same
    bits on every backend too. Passing an int ``rng`` to ``apply`` or :func:`lieconv_core.lift`
    makes one of these from that seed.

    Parameters
    ----------
    seed : int, numpy.random.Generator or None
        Seed of the host generator (or the generator itself).
    """

    def __init__(self, seed: int | np.random.Generator | None = 0):
        self._seed = seed
        self._gen = seed if isinstance(seed, np.random.Generator) else None

    @property
    def gen(self) -> np.random.Generator:
        """The generator, made from the seed at the first draw: a network that draws nothing
        (kNN / all-point neighbourhoods, no subsampling) then runs no numpy at all, which lets
        torch.compile trace it in one graph."""
        if self._gen is None:
            self._gen = np.random.default_rng(self._seed)
        return self._gen

    @staticmethod
    def _to(xp: Any, arr: np.ndarray, dtype: Any, device: Any) -> Any:
        from ._backend import adapter_for

        return adapter_for(xp).from_host(xp, arr, dtype, device)

    def uniform(self, xp, shape, dtype, device):
        """Uniform draws on [0, 1).

        Parameters
        ----------
        xp : Namespace
            The namespace of the result.
        shape : tuple of int
            Shape of the result.
        dtype : dtype of ``xp``
            Floating dtype of the result.
        device : device
            Where the result lives.

        Returns
        -------
        Array, shape ``shape``
            The draws.
        """
        return self._to(xp, self.gen.random(shape), dtype, device)

    def normal(self, xp, shape, dtype, device):
        """Standard normal draws.

        Parameters
        ----------
        xp : Namespace
            The namespace of the result.
        shape : tuple of int
            Shape of the result.
        dtype : dtype of ``xp``
            Floating dtype of the result.
        device : device
            Where the result lives.

        Returns
        -------
        Array, shape ``shape``
            The draws.
        """
        return self._to(xp, self.gen.standard_normal(shape), dtype, device)

    def priorities(self, xp, shape, device):
        """Random permutations of ``range(shape[-1])`` along the last axis (no ties).

        Parameters
        ----------
        xp : Namespace
            The namespace of the result.
        shape : tuple of int
            Shape of the result.
        device : device
            Where the result lives.

        Returns
        -------
        Array of int, shape ``shape``
            Each row along the last axis a permutation.
        """
        n = shape[-1]
        base = np.broadcast_to(np.arange(n, dtype=np.int64), shape)
        perm = self.gen.permuted(base.reshape(-1, n), axis=1).reshape(shape)
        return self._to(xp, perm, xp.asarray(0).dtype, device)


def as_draws(rng: Any) -> Draws:
    """Turn ``rng`` (None, int seed, numpy Generator, or a Draws object) into a Draws object.

    ``None`` means seed 0, so that calls without ``rng`` are reproducible.
    """
    if rng is None or isinstance(rng, int | np.integer | np.random.Generator):
        if rng is None:
            rng = 0
        return PortableDraws(rng if isinstance(rng, np.random.Generator) else int(rng))
    if all(hasattr(rng, m) for m in ("uniform", "normal", "priorities")):
        return rng
    raise TypeError(
        "rng must be None, an int seed, a numpy.random.Generator or a Draws object, "
        f"got {type(rng).__name__}"
    )
