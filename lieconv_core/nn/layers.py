"""Small functional building blocks: linear layers, Swish, masked batch norm, global pooling.

Parameters are created on the host in float64 from a ``numpy.random.Generator`` (so every backend
starts from the same numbers) and converted by :func:`lieconv_core.nn.module.to_backend`.
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat as aac
import numpy as np

from .._backend import adapter_for
from ..parallel import active, dp_sum

BN_MOMENTUM = 0.1
#: batch norm divides by √max(var, BN_EPS), the original's ``MaskBatchNormNd`` (not torch's
#: √(var + eps)): the two differ by ~1e-5 relative in eval mode and by up to √2 where a channel's
#: batch variance is near eps (docs/original.md)
BN_EPS = 1e-5


def linear_init(gen: np.random.Generator, fan_in: int, fan_out: int) -> dict[str, np.ndarray]:
    """PyTorch's default nn.Linear init: weight and bias ~ U(±1/sqrt(fan_in)). w is (in, out)."""
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return {
        "w": gen.uniform(-bound, bound, size=(fan_in, fan_out)),
        "b": gen.uniform(-bound, bound, size=(fan_out,)),
    }


def linear(p: dict[str, Any], x: Any) -> Any:
    """x @ w + b: (..., in) -> (..., out), through the adapter (torch: bias inside the GEMM)."""
    return adapter_for(aac.array_namespace(x)).linear(p["w"], p["b"], x)


def swish(xp: Any, x: Any) -> Any:
    """swish(x) = x · sigmoid(x), elementwise.

    The adapter's implementation: a fused native op on torch and jax; the reference uses
    sigmoid(x) = (1 + tanh(x/2)) / 2, which cannot overflow.

    Parameters
    ----------
    xp : Namespace
        The array namespace of ``x``.
    x : Array
        Any shape.

    Returns
    -------
    Array
        Same shape and dtype as ``x``.
    """
    return adapter_for(xp).swish(xp, x)


def bn_scale(xp: Any, w: Any, var: Any) -> Any:
    """The per-channel batch-norm scale w / √max(var, eps) (the original's convention): (c,)."""
    return w / xp.sqrt(xp.clip(var, min=BN_EPS))


def bn_init(channels: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Masked batch-norm params (affine w, b) and state (running mean and variance)."""
    params = {"w": np.ones(channels), "b": np.zeros(channels)}
    state = {"mean": np.zeros(channels), "var": np.ones(channels)}
    return params, state


def masked_batchnorm(
    xp: Any, p: dict[str, Any], s: dict[str, Any], x: Any, mask: Any, train: bool
) -> tuple[Any, dict[str, Any]]:
    """Batch norm over the valid entries only.

    In training mode the statistics are the mean and the biased variance over valid entries, and
    the running statistics move by momentum 0.1 (running variance unbiased, as in PyTorch). The
    scale is w / √max(var, eps) (:func:`bn_scale`, the original's). Invalid entries come out as
    zeros.

    Parameters
    ----------
    xp : Namespace
        The array namespace of ``x``.
    p : dict
        Affine parameters ``{"w": (c,), "b": (c,)}``.
    s : dict
        Running statistics ``{"mean": (c,), "var": (c,)}``.
    x : Array, shape (..., c)
        The features.
    mask : Array of bool, shape (...), or None
        Valid entries; None when every entry is valid.
    train : bool
        Normalise by the batch statistics and update the running ones (True), or by the running
        ones (False).

    Returns
    -------
    out : Array, shape (..., c)
        The normalised features.
    state : dict
        The new running statistics (``s`` itself in eval mode).
    """
    if train:
        # the sums run over the global batch: dp_sum adds them up over data-parallel processes
        # (the identity in one process)
        axes = tuple(range(x.ndim - 1))
        if mask is None:
            n = dp_sum(xp.asarray(float(max(1, math.prod(x.shape[:-1]))), dtype=x.dtype,
                                  device=aac.device(x)))
            mean = dp_sum(xp.sum(x, axis=axes)) / n
            xc = x - mean
            var = dp_sum(xp.sum(xc * xc, axis=axes)) / n
        else:
            w = xp.astype(mask, x.dtype)[..., None]
            count = dp_sum(xp.sum(w))
            n = xp.maximum(count, xp.ones_like(count))
            mean = dp_sum(xp.sum(x * w, axis=axes)) / n
            xc = x - mean
            xcw = xc * w  # w is 0 or 1: (xc·w)² = w·xc²
            var = dp_sum(xp.sum(xcw * xcw, axis=axes)) / n
        unbiased = var * n / xp.maximum(n - 1, xp.ones_like(n))
        new_s = {
            "mean": (1 - BN_MOMENTUM) * s["mean"] + BN_MOMENTUM * mean,
            "var": (1 - BN_MOMENTUM) * s["var"] + BN_MOMENTUM * unbiased,
        }
    else:
        new_s = s
        xc = x - s["mean"]
        var = s["var"]
    # the per-channel scale is folded first: one pass over x (and one in the backward) instead of
    # a division by the (c,) standard deviation and a multiplication by the (c,) weight
    y = xc * bn_scale(xp, p["w"], var) + p["b"]
    return zero_invalid(xp, y, mask), new_s


def zero_invalid(xp: Any, x: Any, mask: Any) -> Any:
    """x (..., c) with zeros where mask (...) is False — or x itself, with no pass over it (and
    none in its derivatives), when the adapter knows every entry valid
    (:meth:`~lieconv_core.adapter.ReferenceAdapter.all_true`; spring systems, unpadded clouds)."""
    if mask is None or adapter_for(xp).all_true(xp, mask):
        return x
    return xp.where(mask[..., None], x, xp.zeros_like(x))


def bn_swish(xp: Any, p: dict[str, Any], s: dict[str, Any], x: Any, mask: Any, train: bool
             ) -> tuple[Any, dict[str, Any]]:
    """swish(masked_batchnorm(x)), new BN state: the adapter's implementation (torch fuses it in
    training mode; see :meth:`lieconv_core.adapter.ReferenceAdapter.bn_swish`). Under data-parallel
    training (:func:`lieconv_core.parallel.summing_over`) the training-mode statistics are those of
    the global batch: the composition of :func:`masked_batchnorm` and :func:`swish`, whose sums
    go through the installed all-reduce."""
    if train and active():
        y, new_s = masked_batchnorm(xp, p, s, x, mask, train)
        return swish(xp, y), new_s
    return adapter_for(xp).bn_swish(xp, p, s, x, mask, train)


def masked_pool(xp: Any, x: Any, mask: Any, mean: bool = True) -> Any:
    """Global pooling of each cloud over its valid points.

    Parameters
    ----------
    xp : Namespace
        The array namespace of ``x``.
    x : Array, shape (bs, n, c)
        Point features.
    mask : Array of bool, shape (bs, n)
        Valid points.
    mean : bool, default True
        Average (True) or sum (False) over the valid points.

    Returns
    -------
    Array, shape (bs, c)
        The pooled features; an all-masked cloud pools to zeros.
    """
    w = xp.astype(mask, x.dtype)[..., None]
    total = xp.sum(zero_invalid(xp, x, mask), axis=1)
    if not mean:
        return total
    count = xp.sum(w, axis=1)
    return total / xp.maximum(count, xp.ones_like(count))
