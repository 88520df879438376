"""lieconv_core.asarray and the float64 check: inputs reach the chosen backend with the asked
dtype, and jax without x64 refuses float64 instead of returning float32."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

import lieconv_core as lc
from lieconv_core._backend import backend_name
from lieconv_core.arrays import check_dtype

LIBS = [b for b in ("numpy", "torch", "jax", "array_api_strict") if importlib.util.find_spec(b)]


@pytest.mark.parametrize("backend", LIBS)
def test_asarray_reaches_backend(backend):
    host = np.arange(6.0).reshape(2, 3)
    a = lc.asarray(host, dtype="float32", backend=backend)
    xp = lc.array_namespace(a)
    assert backend_name(xp) == backend
    assert a.dtype == xp.float32 and tuple(a.shape) == (2, 3)
    np.testing.assert_array_equal(np.asarray(lc.asarray(a, backend="numpy")), host)
    m = lc.asarray(np.array([True, False]), backend=backend)
    assert m.dtype == xp.bool


@pytest.mark.parametrize("backend", [b for b in LIBS if b != "numpy"])
def test_asarray_converts_other_libraries(backend):
    a = lc.asarray([[1.0, 2.0]], dtype="float32", backend=backend)
    b = lc.asarray(a, backend="numpy")
    assert isinstance(b, np.ndarray) and b.dtype == np.float32
    np.testing.assert_array_equal(b, [[1.0, 2.0]])


def test_check_dtype_accepts_what_numpy_holds():
    import array_api_compat.numpy as xp

    check_dtype(xp, xp.float64)
    check_dtype(xp, xp.float32)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_jax_float64_without_x64_raises():
    # a fresh interpreter: the x64 flag is global and other tests may have switched it on
    code = """
import numpy as np, lieconv_core as lc
net = lc.LieResNet(chin=1, num_outputs=1, k=8, num_layers=1, group=lc.groups.T(2))
for call in (lambda: net.init(dtype="float64", backend="jax"),
             lambda: lc.asarray(np.ones(3), dtype="float64", backend="jax")):
    try:
        call()
    except ValueError as e:
        assert "jax_enable_x64" in str(e), e
    else:
        raise SystemExit("no error")
assert str(lc.asarray(np.ones(3), backend="jax").dtype) == "float32"   # jax's own narrowing
import jax
jax.config.update("jax_enable_x64", True)
p, s = net.init(dtype="float64", backend="jax")
assert all(str(v.dtype) == "float64" for v in jax.tree_util.tree_leaves(p))
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
