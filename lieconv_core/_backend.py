"""Backend selection and namespace handling.

``LIECONV_BACKEND`` (numpy | torch | jax | cupy | array_api_strict; default numpy) is read once,
when ``lieconv_core`` is imported. It decides the namespace and device of functions that take no
arrays (parameter init, data generation, the CLI). Functions that take arrays follow their inputs.

Nothing here imports a framework at import time: namespaces and adapters are resolved lazily.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import array_api_compat as aac


@dataclass(frozen=True)
class BackendEntry:
    """One registered backend: how to recognise its namespace and where its pieces live.

    Parameters
    ----------
    name : str
        Short name (``LIECONV_BACKEND``, ``--backend``, consistency specs).
    namespace : str
        Import path of the array namespace (``"array_api_compat.torch"``).
    is_namespace : callable
        ``is_namespace(xp) -> bool``: True for this backend's namespace. Later registrations are
        asked first, so a backend may wrap another one's namespace.
    adapter : str
        ``"module:attr"`` of the adapter: an instance, or a class instantiated once.
    trainer : str or None
        ``"module:Class"`` of the training engine's trainer; None: no automatic
        differentiation (forward passes only, on the host runner).
    extra : str or None
        The pyproject extra that installs the backend (None: nothing to install).
    module : str or None
        The framework module that must be importable (nox skips the backend otherwise);
        None: the namespace's own top-level module.
    specs : tuple of str
        ``backend[:device]`` specs of the consistency table and the benchmarks on the host.
    accelerator_specs : tuple of str
        Specs that need an accelerator (listed after every host spec).
    compiles : bool
        The trainer takes ``compile=True`` (``lieconv train --compile``).
    dp_trainer, dp_comm : str or None
        ``"module:attr"`` of the data-parallel trainer and of the function that returns its
        communicator (or None outside a data-parallel launch); None: no data parallelism.
    """

    name: str
    namespace: str
    is_namespace: Callable[[Any], bool]
    adapter: str
    trainer: str | None = None
    extra: str | None = None
    module: str | None = None
    specs: tuple[str, ...] = ()
    accelerator_specs: tuple[str, ...] = ()
    compiles: bool = False
    dp_trainer: str | None = None
    dp_comm: str | None = None

    @property
    def requires(self) -> str:
        """The module that must be importable for the backend to run."""
        return self.module or self.namespace.split(".")[0]


_REGISTRY: dict[str, BackendEntry] = {}
_adapters: dict[Any, Any] = {}


def register_backend(entry: BackendEntry, *, replace: bool = False) -> BackendEntry:
    """Add a backend to the registry that the CLI, the training engine, the consistency table,
    nox and the benchmarks read.

    Parameters
    ----------
    entry : BackendEntry
        The backend.
    replace : bool
        Allow replacing a registered backend of the same name.

    Returns
    -------
    BackendEntry
        ``entry``.
    """
    if entry.name in _REGISTRY and not replace:
        raise ValueError(f"backend {entry.name!r} is registered already")
    _REGISTRY[entry.name] = entry
    _adapters.clear()
    return entry


def unregister_backend(name: str) -> None:
    """Remove a registered backend.

    Parameters
    ----------
    name : str
        The backend's name.
    """
    del _REGISTRY[name]
    _adapters.clear()


def backends() -> tuple[BackendEntry, ...]:
    """The registered backends, in registration order.

    Returns
    -------
    tuple of BackendEntry
    """
    return tuple(_REGISTRY.values())


def backend_names() -> tuple[str, ...]:
    """Names of the registered backends, in registration order.

    Returns
    -------
    tuple of str
    """
    return tuple(_REGISTRY)


def trainable_backends() -> tuple[str, ...]:
    """Names of the registered backends with a trainer (automatic differentiation).

    Returns
    -------
    tuple of str
    """
    return tuple(e.name for e in _REGISTRY.values() if e.trainer)


def compiling_backends() -> tuple[str, ...]:
    """Names of the registered backends whose trainer takes ``compile=True``.

    Returns
    -------
    tuple of str
    """
    return tuple(e.name for e in _REGISTRY.values() if e.compiles)


def get_backend(name: str) -> BackendEntry:
    """The registered backend called ``name``.

    Parameters
    ----------
    name : str
        A backend name (case and ``-``/``_`` do not matter).

    Returns
    -------
    BackendEntry

    Raises
    ------
    ValueError
        When no backend of that name is registered.
    """
    return _REGISTRY[_parse_backend(name, "backend")]


def load(path: str) -> Any:
    """The object at ``"module:attr"``, importing the module.

    Parameters
    ----------
    path : str
        ``"package.module:attribute"``.

    Returns
    -------
    object
    """
    mod, _, attr = path.partition(":")
    return getattr(importlib.import_module(mod), attr)


register_backend(BackendEntry(
    "numpy", "array_api_compat.numpy", aac.is_numpy_namespace,
    "lieconv_core.numpy_adapter:ADAPTER", module="numpy", specs=("numpy",)))
register_backend(BackendEntry(
    "array_api_strict", "array_api_strict", aac.is_array_api_strict_namespace,
    "lieconv_core.adapter:ReferenceAdapter", specs=("array_api_strict",)))
register_backend(BackendEntry(
    "torch", "array_api_compat.torch", aac.is_torch_namespace, "lieconv_torch.adapter:ADAPTER",
    trainer="lieconv_torch.train:TorchTrainer", extra="torch", module="torch",
    specs=("torch:cpu",), accelerator_specs=("torch:cuda",), compiles=True,
    dp_trainer="lieconv_torch.distributed:DistributedTorchTrainer",
    dp_comm="lieconv_torch.distributed:init_from_env"))
register_backend(BackendEntry(
    "jax", "jax.numpy", aac.is_jax_namespace, "lieconv_jax.adapter:ADAPTER",
    trainer="lieconv_jax.train:JaxTrainer", extra="jax", specs=("jax:cpu",),
    accelerator_specs=("jax:gpu",), dp_trainer="lieconv_jax.distributed:ShardedJaxTrainer",
    dp_comm="lieconv_jax.distributed:init_mesh"))
register_backend(BackendEntry(
    "cupy", "array_api_compat.cupy", aac.is_cupy_namespace, "lieconv_cupy.adapter:ADAPTER",
    extra="cupy", module="cupy", accelerator_specs=("cupy",)))


def _parse_backend(name: str | None, source: str) -> str:
    value = (name or "numpy").strip().lower().replace("-", "_")
    if value not in _REGISTRY:
        raise ValueError(
            f"{source}={name!r} is not a known backend; choose one of: {', '.join(_REGISTRY)}"
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
    return importlib.import_module(_REGISTRY[name].namespace)


def backend_of(xp: Any) -> BackendEntry:
    """The registered backend whose namespace ``xp`` is (the latest registration that claims it).

    Parameters
    ----------
    xp : module
        An array namespace.

    Returns
    -------
    BackendEntry

    Raises
    ------
    TypeError
        When no registered backend claims ``xp``.
    """
    for entry in reversed(_REGISTRY.values()):
        if entry.is_namespace(xp):
            return entry
    raise TypeError(f"unsupported array namespace {xp!r}")


def backend_name(xp: Any) -> str:
    """Short name of the registered backend whose namespace ``xp`` is.

    Parameters
    ----------
    xp : module
        An array namespace.

    Returns
    -------
    str
    """
    return backend_of(xp).name


def _lib_of(x: Any) -> str:
    lib = type(x).__module__.split(".")[0]
    return "jax" if lib == "jaxlib" else lib  # jax tracers live in jax, concrete arrays in jaxlib


def array_namespace(*arrays: Any, names: tuple[str, ...] | None = None) -> Any:
    """``array_api_compat.array_namespace`` with errors that name the offending arguments.

    Mixed libraries or mixed devices raise ``TypeError`` naming both; nothing is copied silently.

    Parameters
    ----------
    *arrays : array or None
        The arrays; ``None`` entries and Python ints and floats are ignored.
    names : tuple of str or None
        The argument names used in messages; None: "argument 0", "argument 1", ...

    Returns
    -------
    module
        The arrays' namespace; the default backend's (:func:`namespace_for`) when no array is
        given.

    Raises
    ------
    TypeError
        When the arrays come from different libraries, lie on different devices, or are of an
        unsupported type.
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


def adapter_for(xp: Any) -> Any:
    """The adapter of the backend whose namespace ``xp`` is, loaded the first time it is needed.

    Parameters
    ----------
    xp : module
        An array namespace.

    Returns
    -------
    ReferenceAdapter
        The registered adapter (an instance of :class:`lieconv_core.adapter.ReferenceAdapter`
        or of a subclass).
    """
    cached = _adapters.get(id(xp))
    if cached is not None:
        return cached
    entry = backend_of(xp)
    if entry.name not in _adapters:
        obj = load(entry.adapter)
        _adapters[entry.name] = obj() if isinstance(obj, type) else obj
    _adapters[id(xp)] = _adapters[entry.name]  # namespaces are modules: their id is stable
    return _adapters[entry.name]


def default_device(xp: Any) -> Any:
    """The default device of a namespace (CPU for numpy/strict, the framework default otherwise)."""
    return aac.device(xp.zeros(1))


def index_dtype(xp: Any) -> Any:
    """The namespace's default integer dtype, used for indices (int64; int32 on jax without x64)."""
    return xp.asarray(0).dtype
