"""Native jax draws for use under ``jax.jit`` (host-side portable draws would be baked into the
trace as constants). Same methods as :class:`lieconv_core.random.PortableDraws`; different
numbers."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


class JaxDraws:
    """Draws from a jax PRNG key; each call consumes a fresh subkey (in trace order under jit)."""

    def __init__(self, key: Any):
        self.key = jax.random.key(key) if isinstance(key, int) else key

    def _next(self) -> Any:
        self.key, sub = jax.random.split(self.key)
        return sub

    def uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
        return jax.random.uniform(self._next(), shape, dtype=dtype)

    def normal(self, xp: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
        return jax.random.normal(self._next(), shape, dtype=dtype)

    def priorities(self, xp: Any, shape: tuple[int, ...], device: Any = None) -> Any:
        u = jax.random.uniform(self._next(), shape)
        return jnp.argsort(u, axis=-1)
