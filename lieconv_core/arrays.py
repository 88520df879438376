"""Array types used in public signatures, and the conversion of host data to the chosen backend.

``Array`` and ``Namespace`` name what a signature expects: any array of a supported library
(numpy, torch, jax, cupy, array-api-strict) and an array-API namespace module. They are aliases of
``typing.Any``, since the libraries share no common base class; they document intent and give
type checkers a single name to refine later.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np

from ._backend import backend_name, default_device, namespace_for

#: An array of any supported library: ``numpy.ndarray``, ``torch.Tensor``, ``jax.Array``,
#: ``cupy.ndarray`` or an array-api-strict array.
Array: TypeAlias = Any

#: An array-API namespace, as returned by :func:`lieconv_core.namespace_for` or
#: :func:`lieconv_core.array_namespace`.
Namespace: TypeAlias = Any

__all__ = ["Array", "Namespace", "asarray", "check_dtype"]


def check_dtype(xp: Namespace, dtype: Any) -> None:
    """Raise if the namespace cannot hold ``dtype`` as asked.

    jax without its x64 flag turns a float64 request into float32 with only a warning; this
    check makes that an error, so a float64 computation never runs silently in float32.

    Parameters
    ----------
    xp : Namespace
        The array namespace that will create the arrays.
    dtype : dtype of ``xp``
        The requested floating dtype, e.g. ``xp.float64``.

    Raises
    ------
    ValueError
        When an array created with ``dtype`` comes out with another dtype (jax float64 while
        ``jax_enable_x64`` is off).

    Examples
    --------
    >>> import array_api_compat.numpy as xp
    >>> check_dtype(xp, xp.float64)      # numpy holds float64: no error
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = xp.asarray(0.0, dtype=dtype).dtype
    if got != dtype:
        raise ValueError(
            f"{getattr(dtype, '__name__', dtype)} was requested but this array library gives "
            f"{got}; for float64 on jax call "
            "jax.config.update('jax_enable_x64', True) before creating any array")


def asarray(x: Any, dtype: Any = None, backend: str | None = None, device: Any = None) -> Array:
    """Convert host data (numpy arrays, lists, scalars) to an array of the chosen backend.

    This is how inputs reach the backend that ``LIECONV_BACKEND`` selects: code written with
    numpy inputs runs unchanged on torch or jax when its inputs pass through ``asarray``.

    Parameters
    ----------
    x : array_like
        Data to convert: a numpy array, a nested list, a scalar, or an array of any supported
        library (converted through the host when it is of another library).
    dtype : {"float32", "float64", "bool", "int32", "int64"}, dtype or None
        The dtype of the result. None keeps ``x``'s own where the library holds it (numpy's
        float64 stays float64, except on jax without ``jax_enable_x64``, which narrows it to
        float32 as ``jax.numpy.asarray`` does); an explicit dtype is honoured or raises.
    backend : {"numpy", "torch", "jax", "cupy", "array_api_strict"} or None
        The target library; None means the one chosen with ``LIECONV_BACKEND``.
    device : device or None
        Where the result lives (e.g. ``"cuda"`` for torch); None means the library's default.

    Returns
    -------
    Array
        An array of the target library with ``x``'s shape and values.

    Raises
    ------
    ValueError
        When the dtype cannot be honoured (float64 on jax without ``jax_enable_x64``).

    Examples
    --------
    >>> import numpy as np
    >>> a = asarray(np.ones((2, 3)), dtype="float32", backend="numpy")
    >>> a.shape, str(a.dtype)
    ((2, 3), 'float32')
    """
    xp = namespace_for(backend)
    host = np.asarray(x) if not _is_of(xp, x) else x
    if isinstance(dtype, str):
        dtype = getattr(xp, dtype)
    if dtype is not None:
        check_dtype(xp, dtype)
    elif isinstance(host, np.ndarray):
        # keep the host dtype where the library holds it (jax without x64 narrows 64-bit types,
        # as jax itself does)
        dtype = getattr(xp, host.dtype.name, None)
        try:
            check_dtype(xp, dtype)
        except (ValueError, TypeError):
            dtype = None
    if device is None:
        device = default_device(xp)
    if device is None:
        return xp.asarray(host, dtype=dtype)
    return xp.asarray(host, dtype=dtype, device=device)


def _is_of(xp: Namespace, x: Any) -> bool:
    """Whether ``x`` is already an array of ``xp``'s library."""
    import array_api_compat as aac

    if isinstance(x, np.ndarray | np.generic) or not aac.is_array_api_obj(x):
        return False
    return backend_name(aac.array_namespace(x)) == backend_name(xp)
