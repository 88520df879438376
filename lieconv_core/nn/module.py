"""Functional model plumbing: parameter trees, dtype/device conversion, and the call context.

A model is a config object with ``init(seed, dtype, backend, device) -> (params, state)`` and
``apply(params, state, inputs, train=..., rng=...) -> (outputs, new_state)``. params and state are
plain nested dicts of arrays (pytrees for jax; registered as parameters/buffers by lieconv_torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._backend import adapter_for, default_device, namespace_for
from ..arrays import check_dtype


@dataclass(frozen=True)
class Ctx:
    """What every apply needs besides params and inputs."""

    xp: Any
    adapter: Any
    train: bool
    draws: Any


def resolve_dtype(xp: Any, dtype: Any) -> Any:
    """'float32' / 'float64' / a namespace dtype -> the namespace dtype."""
    if isinstance(dtype, str):
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        return getattr(xp, dtype)
    if dtype in (xp.float32, xp.float64):
        return dtype
    raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")


def to_backend(tree: Any, xp: Any, dtype: Any, device: Any = None) -> Any:
    """Convert a nested dict of numpy arrays to ``xp`` arrays (floats to ``dtype``)."""
    if isinstance(tree, dict):
        return {k: to_backend(v, xp, dtype, device) for k, v in tree.items()}
    arr = np.asarray(tree)
    dt = dtype if arr.dtype.kind == "f" else getattr(xp, arr.dtype.name)
    if device is None:
        return xp.asarray(arr, dtype=dt)
    return xp.asarray(arr, dtype=dt, device=device)


def tree_leaves(tree: Any) -> list[Any]:
    """Leaves of a nested dict in sorted-key order."""
    if isinstance(tree, dict):
        return [leaf for k in sorted(tree) for leaf in tree_leaves(tree[k])]
    return [tree]


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'a.b.c': leaf}."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            if "." in str(k):
                raise ValueError(f"parameter names may not contain '.', got {k!r}")
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """{'a.b.c': leaf} -> nested dict."""
    out: dict[str, Any] = {}
    for key, leaf in flat.items():
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return out


class Model:
    """Mixin for top-level models: host-side init, then conversion to the chosen backend."""

    def init_host(self, gen: np.random.Generator) -> tuple[dict, dict]:
        raise NotImplementedError

    def init(self, seed: int = 0, dtype: Any = "float32", backend: str | None = None,
             device: Any = None, xp: Any = None) -> tuple[dict, dict]:
        """Parameters and state as nested dicts of arrays.

        Drawn on the host from ``numpy.random.default_rng(seed)`` in float64, then converted to
        ``dtype`` on ``backend`` (default ``LIECONV_BACKEND``) or namespace ``xp``, on ``device``.
        The same seed gives the same numbers on every backend.
        """
        xp = xp if xp is not None else namespace_for(backend)
        dt = resolve_dtype(xp, dtype)
        check_dtype(xp, dt)  # jax without x64 would silently give float32
        params, state = self.init_host(np.random.default_rng(seed))
        device = device if device is not None else default_device(xp)
        return to_backend(params, xp, dt, device), to_backend(state, xp, dt, device)

    @staticmethod
    def context(xp: Any, train: bool, draws: Any) -> Ctx:
        return Ctx(xp=xp, adapter=adapter_for(xp), train=bool(train), draws=draws)
