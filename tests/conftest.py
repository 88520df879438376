"""Shared fixtures: ``xp`` runs a test on every installed backend; ``dtype`` in float32 and float64.

jax needs x64 for float64; the fixture enables it for the test process (tests may change global
framework settings, the library never does).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from lieconv_core._backend import adapter_for, namespace_for

_CANDIDATES = ["numpy", "array_api_strict", "torch", "jax"]
AVAILABLE = [
    b for b in _CANDIDATES
    if b == "numpy" or importlib.util.find_spec(b) is not None
]


def _enable_jax_x64() -> None:
    import jax

    jax.config.update("jax_enable_x64", True)


@pytest.fixture(params=AVAILABLE)
def backend(request) -> str:
    if request.param == "jax":
        _enable_jax_x64()
    return request.param


@pytest.fixture
def xp(backend):
    return namespace_for(backend)


@pytest.fixture(params=["float64", "float32"])
def dtype(request) -> str:
    return request.param


#: relative tolerances for "same numbers on every backend"
SAME_TOL = {"float64": 1e-10, "float32": 1e-5}


def to_numpy(x) -> np.ndarray:
    """Any backend array -> numpy (float64 for floats)."""
    from lieconv_core._backend import array_namespace

    arr = adapter_for(array_namespace(x)).to_numpy(x)
    return np.asarray(arr)


def asarray(xp, x, dtype=None):
    """numpy -> backend array with an explicit dtype (name or None for ints/bools)."""
    x = np.asarray(x)
    if dtype is None:
        return xp.asarray(x)
    return xp.asarray(x, dtype=getattr(xp, dtype))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


@pytest.fixture(scope="session")
def jax_x64():
    pytest.importorskip("jax")
    _enable_jax_x64()


def apply_net(net, params, state, inputs, train=False, rng=None):
    """net.apply, under jax.jit for jax arrays (eager jax compiles every primitive per shape,
    which makes the suite slow; jit is how jax users run it). Portable draws are identical
    either way (they become constants of the trace)."""
    from lieconv_core._backend import array_namespace, backend_name

    xp = array_namespace(*inputs)
    if backend_name(xp) != "jax":
        return net.apply(params, state, inputs, train=train, rng=rng)
    import jax

    fn = jax.jit(lambda p, s, i: net.apply(p, s, i, train=train, rng=rng))
    return fn(params, state, tuple(inputs))


@pytest.fixture(scope="module")
def torch1():
    """torch with one intra-op thread (much faster for tiny graphs on a shared 2-core machine);
    the previous setting is restored afterwards."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def jax64():
    """jax with x64 enabled (tests may change framework settings; the library never does)."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax
