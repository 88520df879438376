"""Backend selection and namespace handling.

``LIECONV_BACKEND`` (numpy | torch | jax | cupy | array_api_strict; default numpy) is read once,
when ``lieconv_core`` is imported. It decides the namespace and device of functions that take no
arrays (parameter init, data generation, the CLI). Functions that take arrays follow their inputs.

Nothing here imports a framework at import time: namespaces and adapters are resolved lazily.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import array_api_compat as aac

BACKENDS = ("numpy", "torch", "jax", "cupy", "array_api_strict")


def _parse_backend(name: str | None, source: str) -> str:
    value = (name or "numpy").strip().lower().replace("-", "_")
    if value not in BACKENDS:
        raise ValueError(
            f"{source}={name!r} is not a known backend; choose one of: {', '.join(BACKENDS)}"
        )
    return value


#: The backend chosen at import time through ``LIECONV_BACKEND``.
BACKEND: str = _parse_backend(os.environ.get("LIECONV_BACKEND"), "LIECONV_BACKEND")


def namespace_for(backend: str | None = None) -> Any:
    """The array namespace for a backend name (default: ``LIECONV_BACKEND``).

    Imports the framework on first use only.

    Parameters
    ----------
    backend : {"numpy", "torch", "jax", "cupy", "array_api_strict"} or None
        The backend; None means the one chosen at import through ``LIECONV_BACKEND``.

    Returns
    -------
    module
        An array-API namespace (``array_api_compat``'s wrapper for numpy, torch and cupy).
    """
    name = BACKEND if backend is None else _parse_backend(backend, "backend")
    if name == "numpy":
        import array_api_compat.numpy as xp
    elif name == "torch":
        import array_api_compat.torch as xp
    elif name == "jax":
        import jax.numpy as xp
    elif name == "cupy":
        import array_api_compat.cupy as xp
    else:
        import array_api_strict as xp
    return xp


def backend_name(xp: Any) -> str:
    """Short backend name of a namespace (one of ``BACKENDS``)."""
    if aac.is_numpy_namespace(xp):
        return "numpy"
    if aac.is_torch_namespace(xp):
        return "torch"
    if aac.is_jax_namespace(xp):
        return "jax"
    if aac.is_cupy_namespace(xp):
        return "cupy"
    if aac.is_array_api_strict_namespace(xp):
        return "array_api_strict"
    raise TypeError(f"unsupported array namespace {xp!r}")


def _lib_of(x: Any) -> str:
    lib = type(x).__module__.split(".")[0]
    return "jax" if lib == "jaxlib" else lib  # jax tracers live in jax, concrete arrays in jaxlib


def array_namespace(*arrays: Any, names: tuple[str, ...] | None = None) -> Any:
    """``array_api_compat.array_namespace`` with errors that name the offending arguments.

    Mixed libraries or mixed devices raise ``TypeError`` naming both; nothing is copied silently.
    ``None`` entries are ignored. ``names`` gives the argument names used in messages.
    """
    names = names or tuple(f"argument {i}" for i in range(len(arrays)))
    pairs = [(n, a) for n, a in zip(names, arrays)
             if a is not None and not isinstance(a, int | float)]
    if not pairs:
        return namespace_for()
    first_name, first = pairs[0]
    for name, arr in pairs[1:]:
        if _lib_of(arr) != _lib_of(first):
            raise TypeError(
                f"{first_name} is a {_lib_of(first)} array but {name} is a {_lib_of(arr)} array; "
                "pass arrays from one library (convert explicitly, nothing is copied silently)"
            )
    try:
        xp = aac.array_namespace(*(a for _, a in pairs))
    except TypeError as exc:
        kind = type(first).__name__
        raise TypeError(f"{first_name}: unsupported array type {kind} ({exc})") from exc
    dev0 = _device_or_none(first)
    for name, arr in pairs[1:]:
        dev = _device_or_none(arr)
        # traced values (jax.jit) have no device: nothing to compare
        if dev0 is not None and dev is not None and str(dev) != str(dev0):
            raise TypeError(
                f"{first_name} is on device {dev0} but {name} is on device {dev}; "
                "move them to one device explicitly"
            )
    return xp


def _device_or_none(x: Any) -> Any:
    try:
        return aac.device(x)
    except Exception:  # e.g. abstract tracers
        return None


_ADAPTER_MODULES = {
    "torch": "lieconv_torch.adapter",
    "jax": "lieconv_jax.adapter",
    "cupy": "lieconv_cupy.adapter",
}
_adapters: dict[str, Any] = {}


def adapter_for(xp: Any) -> Any:
    """The adapter object for a namespace, imported lazily the first time it is needed.

    numpy and array_api_strict use the pure array-API reference adapter.
    """
    cached = _adapters.get(id(xp))
    if cached is not None:
        return cached
    name = backend_name(xp)
    if name not in _adapters:
        if name in _ADAPTER_MODULES:
            mod = importlib.import_module(_ADAPTER_MODULES[name])
            _adapters[name] = mod.ADAPTER
        else:
            from .adapter import ReferenceAdapter

            _adapters[name] = ReferenceAdapter()
    _adapters[id(xp)] = _adapters[name]  # namespaces are modules: their id is stable
    return _adapters[name]


def default_device(xp: Any) -> Any:
    """The default device of a namespace (CPU for numpy/strict, the framework default otherwise)."""
    return aac.device(xp.zeros(1))


def index_dtype(xp: Any) -> Any:
    """The namespace's default integer dtype, used for indices (int64; int32 on jax without x64)."""
    return xp.asarray(0).dtype
