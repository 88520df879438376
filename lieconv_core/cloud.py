"""Lifted point clouds: input validation, the lift to group elements, and subsampling by index."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ._backend import adapter_for, array_namespace
from .groups.base import Group, repeat_samples
from .random import as_draws


class Cloud(NamedTuple):
    """A lifted point cloud, the state carried between LieConv layers.

    Parameters
    ----------
    elems : array, shape (bs, n, E)
        Group elements (``E = group.elem_dim``).
    q : array, shape (bs, n, q_dim), or None
        Orbit identifiers (None for transitive groups).
    values : array, shape (bs, n, c)
        Features.
    mask : bool array, shape (bs, n)
        False for padding.
    """

    elems: Any
    q: Any
    values: Any
    mask: Any


def _is_floating(xp: Any, x: Any) -> bool:
    return x.dtype in (xp.float32, xp.float64)


def _concrete_any(x: Any) -> bool | None:
    """bool(x) for a 0-d bool array, or None when it cannot be evaluated now (e.g. jax tracers)."""
    try:
        return bool(x)
    except Exception:  # traced values (jax.jit) have no concrete value: skip data checks
        return None


def default_mask(xp: Any, coords: Any, mask: Any) -> Any:
    """mask, or where it is None an all-True (bs, n) mask (every point of coords (bs, n, d)
    valid)."""
    if mask is not None:
        return mask
    return xp.ones_like(coords[..., 0], dtype=xp.bool)


def coord_bound(xp: Any, dtype: Any) -> float:
    """The largest coordinate magnitude accepted: sqrt(finfo(dtype).max) / 1024, so that squared
    distances (and the weight net's activations on the pair embeddings) stay finite."""
    return math.sqrt(float(xp.finfo(dtype).max)) / 1024


def validate_inputs(group: Group, coords: Any, values: Any, mask: Any, chin: int | None = None,
                    check_finite: bool = True) -> Any:
    """Check (coords, values, mask) and return their namespace; errors name the argument.
    mask None: every point valid. Data checks (finite, magnitude below :func:`coord_bound`,
    the group's domain) run where values can be read (not while a compiler traces)."""
    xp = array_namespace(coords, values, mask, names=("coords", "values", "mask"))
    if coords.ndim != 3 or coords.shape[-1] != group.space_dim:
        raise ValueError(
            f"coords must have shape (batch, points, {group.space_dim}) for {group!r}, "
            f"got {tuple(coords.shape)}"
        )
    mask = default_mask(xp, coords, mask)
    if not _is_floating(xp, coords):
        raise TypeError(f"coords must be float32 or float64, got {coords.dtype}")
    if values.ndim != 3 or tuple(values.shape[:2]) != tuple(coords.shape[:2]):
        raise ValueError(
            f"values must have shape (batch, points, channels) = {tuple(coords.shape[:2])} + (c,), "
            f"got {tuple(values.shape)}"
        )
    if chin is not None and values.shape[-1] != chin:
        raise ValueError(f"values must have {chin} channels, got {values.shape[-1]}")
    if values.dtype != coords.dtype:
        raise TypeError(f"values dtype {values.dtype} differs from coords dtype {coords.dtype}")
    if tuple(mask.shape) != tuple(coords.shape[:2]):
        raise ValueError(
            f"mask must have shape {tuple(coords.shape[:2])} (batch, points), "
            f"got {tuple(mask.shape)}"
        )
    if mask.dtype != xp.bool:
        raise TypeError(f"mask must be a bool array, got {mask.dtype}")
    if check_finite and not adapter_for(xp).tracing():
        finite = xp.all(xp.isfinite(coords), axis=-1)
        if _concrete_any(xp.any(mask & ~finite)):
            raise ValueError("coords contain NaN or inf at valid (unmasked) points")
        bound = coord_bound(xp, coords.dtype)
        if _concrete_any(xp.any(mask & xp.any(xp.abs(coords) > bound, axis=-1))):
            raise ValueError(f"coords must have magnitude at most {bound:.3g} in "
                             f"{coords.dtype} at valid points (squared distances overflow)")
        vfinite = xp.all(xp.isfinite(values), axis=-1)
        if _concrete_any(xp.any(mask & ~vfinite)):
            raise ValueError("values contain NaN or inf at valid (unmasked) points")
        if group.excludes_origin:
            at_origin = xp.all(coords == 0, axis=-1)
            if _concrete_any(xp.any(mask & at_origin)):
                raise ValueError(
                    f"coords: {group!r} is not defined at the origin; mask such points")
    return xp


def lift(group: Group, coords: Any, values: Any, mask: Any, nsamples: int = 1,
         rng: Any = None) -> Cloud:
    """Lift points to group elements.

    Parameters
    ----------
    group : Group
        The group whose elements the points become.
    coords : array, shape (bs, n, d)
        Point coordinates (``d = group.space_dim``).
    values : array, shape (bs, n, c)
        Features.
    mask : bool array, shape (bs, n), or None
        False for padding; None: every point is valid.
    nsamples : int
        Stabilizer samples per point (``ns``); used by groups with a random lift.
    rng : int, numpy.random.Generator or draws object, optional
        Source of the random draws (portable by default, see ``lieconv_core.random``).

    Returns
    -------
    Cloud
        ``bs × n·ns`` entries, point-major: entry ``i·ns + s`` is sample s of point i.

    Examples
    --------
    >>> import numpy as np, lieconv_core as lc
    >>> x = np.zeros((1, 4, 2)); v = np.ones((1, 4, 3)); m = np.ones((1, 4), bool)
    >>> cloud = lc.lift(lc.groups.SE2(), x, v, m, nsamples=2, rng=0)
    >>> cloud.elems.shape, cloud.values.shape
    ((1, 8, 9), (1, 8, 3))
    """
    xp = validate_inputs(group, coords, values, mask)
    return lift_unchecked(group, coords, values, default_mask(xp, coords, mask), nsamples, rng)


def lift_unchecked(group: Group, coords: Any, values: Any, mask: Any, nsamples: int,
                   rng: Any) -> Cloud:
    if int(nsamples) < 1:
        raise ValueError(f"nsamples must be >= 1, got {nsamples}")
    xp = array_namespace(coords, values, mask)
    ns = int(nsamples) if group.random_lift else 1
    # padded points may hold anything (NaN included): lift them from (1, ..., 1) instead (a point
    # every group's lift is defined at), so that pair embeddings, which are computed for masked
    # slots too and zeroed or masked out later, stay finite (a NaN times a zero weight is NaN)
    coords = xp.where(mask[..., None], coords, xp.ones_like(coords))
    elems, q = group.lift(xp, coords, ns, as_draws(rng))
    if not group.random_lift:
        elems = repeat_samples(xp, elems, int(nsamples))
        q = None if q is None else repeat_samples(xp, q, int(nsamples))
    ns = int(nsamples)
    return Cloud(elems, q, repeat_samples(xp, values, ns), repeat_samples(xp, mask, ns))


def take(adapter: Any, xp: Any, cloud: Cloud, idx: Any) -> Cloud:
    """Gather every field of a cloud at indices idx (bs, m)."""
    g = adapter.gather
    return Cloud(g(xp, cloud.elems, idx), None if cloud.q is None else g(xp, cloud.q, idx),
                 g(xp, cloud.values, idx), g(xp, cloud.mask, idx))
