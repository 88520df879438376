"""Native jax draws for use under ``jax.jit`` (host-side portable draws would be baked into the
trace as constants). Same methods as :class:`lieconv_core.random.PortableDraws`; different
numbers."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


class JaxDraws:
    """Draws from a jax PRNG key; each call consumes a fresh subkey (in trace order under jit).

    Parameters
    ----------
    key : int or jax PRNG key
        An int is turned into ``jax.random.key(key)``.

    Examples
    --------
    >>> import jax, lieconv_core as lc
    >>> from lieconv_jax import JaxDraws
    >>> net = lc.LieResNet(chin=1, num_outputs=1, k=16, num_layers=1, group=lc.groups.T(2))
    >>> params, state = net.init(seed=0, backend="jax")
    >>> f = jax.jit(lambda p, s, x, key: net.apply(p, s, x, rng=JaxDraws(key))[0])
    >>> ones = jax.numpy.ones
    >>> x = (ones((2, 5, 2), "float32"), ones((2, 5, 1), "float32"), ones((2, 5), bool))
    >>> f(params, state, x, jax.random.key(0)).shape
    (2, 1)
    """

    def __init__(self, key: Any):
        self.key = jax.random.key(key) if isinstance(key, int) else key

    def _next(self) -> Any:
        self.key, sub = jax.random.split(self.key)
        return sub

    def uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
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
        return jax.random.uniform(self._next(), shape, dtype=dtype)

    def normal(self, xp: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
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
        return jax.random.normal(self._next(), shape, dtype=dtype)

    def priorities(self, xp: Any, shape: tuple[int, ...], device: Any = None) -> Any:
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
        u = jax.random.uniform(self._next(), shape)
        return jnp.argsort(u, axis=-1)
