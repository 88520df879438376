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
    """What every ``apply`` needs besides params and inputs.

    Parameters
    ----------
    xp : Namespace
        The array namespace of the inputs.
    adapter : object
        The backend adapter (:func:`lieconv_core._backend.adapter_for`) with the fused operations.
    train : bool
        Training mode (batch statistics, random draws) or evaluation mode.
    draws : PortableDraws or lieconv_jax.JaxDraws
        The source of random numbers.
    """

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
    """Flatten a nested dict into dotted names, the layout of the checkpoints.

    Parameters
    ----------
    tree : dict or leaf
        Nested dicts of arrays; keys may not contain ``"."``.
    prefix : str, default ""
        Prepended to every name.

    Returns
    -------
    dict of str to leaf
        ``{"a.b.c": leaf}`` for ``tree["a"]["b"]["c"]``.

    Examples
    --------
    >>> flatten({"conv": {"w": 1, "b": 2}, "out": 3})
    {'conv.w': 1, 'conv.b': 2, 'out': 3}
    """
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            if "." in str(k):
                raise ValueError(f"parameter names may not contain '.', got {k!r}")
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten`: dotted names back to nested dicts.

    Parameters
    ----------
    flat : dict of str to leaf
        ``{"a.b.c": leaf}``.

    Returns
    -------
    dict
        The nested dicts.

    Examples
    --------
    >>> unflatten({"conv.w": 1, "conv.b": 2, "out": 3})
    {'conv': {'w': 1, 'b': 2}, 'out': 3}
    """
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
        """Draw the parameters and state on the host in float64; each model implements this.

        Parameters
        ----------
        gen : numpy.random.Generator
            The random generator (seeded by :meth:`init`).

        Returns
        -------
        params : dict
            Nested dicts of numpy arrays.
        state : dict
            Nested dicts of numpy arrays (batch-norm statistics, radii).
        """
        raise NotImplementedError

    def init(self, seed: int = 0, dtype: Any = "float32", backend: str | None = None,
             device: Any = None, xp: Any = None) -> tuple[dict, dict]:
        """Parameters and state as nested dicts of arrays of the chosen backend.

        Drawn on the host from ``numpy.random.default_rng(seed)`` in float64, then converted, so the
        same seed gives the same numbers on every backend.

        Parameters
        ----------
        seed : int, default 0
            Seed of the host generator.
        dtype : {"float32", "float64"} or dtype, default "float32"
            Floating dtype of the arrays.
        backend : str, optional
            Array library (``"numpy"``, ``"torch"``, ``"jax"``, ...); default ``LIECONV_BACKEND``.
        device : device, optional
            Where the arrays live; default the library's default.
        xp : Namespace, optional
            An array namespace to use instead of ``backend``.

        Returns
        -------
        params : dict
            Nested dicts of arrays (the trained weights).
        state : dict
            Nested dicts of arrays (batch-norm running statistics, radius controllers).

        Raises
        ------
        ValueError
            For a dtype other than float32 / float64, or float64 on jax without ``jax_enable_x64``.
        """
        xp = xp if xp is not None else namespace_for(backend)
        dt = resolve_dtype(xp, dtype)
        check_dtype(xp, dt)  # jax without x64 would silently give float32
        params, state = self.init_host(np.random.default_rng(seed))
        device = device if device is not None else default_device(xp)
        return to_backend(params, xp, dt, device), to_backend(state, xp, dt, device)

    @staticmethod
    def context(xp: Any, train: bool, draws: Any) -> Ctx:
        """The :class:`Ctx` an ``apply`` passes down to its layers.

        Parameters
        ----------
        xp : Namespace
            The array namespace of the inputs.
        train : bool
            Training mode.
        draws : PortableDraws or lieconv_jax.JaxDraws
            The source of random numbers.

        Returns
        -------
        Ctx
            The context, with the backend's adapter.
        """
        return Ctx(xp=xp, adapter=adapter_for(xp), train=bool(train), draws=draws)
