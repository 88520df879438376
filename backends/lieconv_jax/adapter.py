"""The jax adapter: jit-compatible FPS (lax.fori_loop), autodiff, block_until_ready."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from lieconv_core.adapter import ReferenceAdapter, quantize


class JaxAdapter(ReferenceAdapter):
    name = "jax"

    def gather(self, xp: Any, x: Any, idx: Any) -> Any:
        return jax.vmap(lambda xb, ib: xb[ib])(x, idx)

    def take_along_last(self, xp: Any, x: Any, idx: Any) -> Any:
        return jnp.take_along_axis(x, idx, axis=-1)

    def fps(self, xp, group, elems, q, mask, m, u):
        """One lax.fori_loop over the m steps: jit-friendly, no Python unrolling."""
        bs, n = mask.shape
        count = jnp.cumsum(mask.astype(jnp.int32), axis=1)
        target = jnp.floor(u * count[:, -1].astype(u.dtype)).astype(jnp.int32)
        start = jnp.argmax(count > target[:, None], axis=1)
        dmin0 = jnp.where(mask, jnp.inf, -jnp.inf).astype(elems.dtype)
        take = jax.vmap(lambda xb, ib: xb[ib])

        def body(t, carry):
            chosen, dmin, cur = carry
            chosen = chosen.at[:, t].set(cur)
            e_cur = take(elems, cur)[:, None]
            q_cur = None if q is None else take(q, cur)[:, None]
            d = quantize(jnp, group.pair_distance(jnp, elems, q, e_cur, q_cur))
            dmin = jnp.where(mask, jnp.minimum(dmin, d), dmin)
            return chosen, dmin, jnp.argmax(dmin, axis=1)

        chosen0 = jnp.zeros((bs, m), dtype=start.dtype)
        chosen, _, _ = jax.lax.fori_loop(0, m, body, (chosen0, dmin0, start))
        return chosen.astype(jnp.int64) if jax.config.jax_enable_x64 else chosen

    def grad(self, f: Callable) -> Callable:
        return jax.grad(f)

    def jit(self, f: Callable) -> Callable:
        return jax.jit(f)

    def synchronize(self, x: Any = None) -> None:
        if x is not None:
            jax.block_until_ready(x)

    def to_numpy(self, x: Any):
        import numpy as np

        return np.asarray(x)


ADAPTER = JaxAdapter()
