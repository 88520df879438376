"""Pallas kernels of the jax adapter (interpret=True on CPU) against the reference adapter.

The interpreter is slow, so the cases are few and tiny; on a GPU machine set
LIECONV_PALLAS_COMPILED=1 to run the compiled kernels instead (scripts/gpu_check.sh does).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("jax.experimental.pallas")
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _kernel_cases import assert_close, make_case  # noqa: E402

from lieconv_core import neighbourhoods as nb  # noqa: E402
from lieconv_core.adapter import ReferenceAdapter  # noqa: E402

COMPILED = os.environ.get("LIECONV_PALLAS_COMPILED") == "1" and jax.default_backend() == "gpu"
MODE = "auto" if COMPILED else "interpret"

#: (case, dtype) pairs: ties on grids, padding, k > in-ball count, a single-point cloud. The
#: interpreter is slow, so CPU runs take a few; compiled on a GPU every case and dtype runs.
if COMPILED:
    from _kernel_cases import CASES  # noqa: E402

    SEARCH_CASES = CONV_CASES = [(c, d) for c in CASES for d in ("float64", "float32")]
else:
    SEARCH_CASES = [("T2-grid", "float64"), ("T3-random", "float32"), ("single-point", "float64")]
    CONV_CASES = [("T2-grid", "float64"), ("T3-random", "float32")]


@pytest.fixture(scope="module", autouse=True)
def x64():
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", prev)


@pytest.fixture(scope="module")
def env():
    from lieconv_jax.adapter import JaxAdapter

    return JaxAdapter(MODE), ReferenceAdapter()


def _j(a):
    return jnp.asarray(np.asarray(a))


@contextlib.contextmanager
def kernels_run(*names):
    """Assert that the block traced each Pallas kernel in ``names`` (not the reference
    fallback): jax's caches are cleared first, so every kernel the block uses is traced anew."""
    from lieconv_jax import pallas

    jax.clear_caches()
    pallas.TRACES.clear()
    yield
    missing = [n for n in names if pallas.TRACES[n] == 0]
    assert not missing, f"kernels not run: {missing} (ran: {dict(pallas.TRACES)})"


@pytest.mark.parametrize("case,dtype", SEARCH_CASES)
def test_fps_and_neighbourhood(env, case, dtype):
    ad, ref = env
    c = make_case(case, dtype)
    x, mask, u = _j(c["x"]), _j(c["mask"]), _j(c["u"])
    with kernels_run("fps"):
        got = nb.fps(ad, jnp, c["group"], x, None, mask, c["m"], u)
    want = nb.fps(ref, jnp, c["group"], x, None, mask, c["m"], u)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert got.dtype == want.dtype
    q = (_j(c["qe"]), None, _j(c["qmask"]))
    p = (x, None, mask)
    for knn in (False, True):
        with kernels_run("knn" if knn else "ball"):
            got = nb.neighbourhood(ad, jnp, c["group"], q, p, c["k"], _j(c["r"]),
                                   _j(c["prio"]), knn)
        want = nb.neighbourhood(ref, jnp, c["group"], q, p, c["k"], _j(c["r"]), _j(c["prio"]), knn)
        np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(want[0]), f"idx knn={knn}")
        np.testing.assert_array_equal(np.asarray(got[1]), np.asarray(want[1]), f"mask knn={knn}")
        assert got[0].dtype == want[0].dtype
        if knn:
            assert got[2] is None
        else:
            np.testing.assert_array_equal(np.asarray(got[2]), np.asarray(want[2]), "counts")


@pytest.mark.parametrize("case,dtype", CONV_CASES)
def test_pointconv_forward_backward(env, case, dtype):
    ad, ref = env
    c = make_case(case, dtype)
    q = (_j(c["qe"]), None, _j(c["qmask"]))
    p = (_j(c["x"]), None, _j(c["mask"]))
    idx, nmask, _ = nb.neighbourhood(ref, jnp, c["group"], q, p, c["k"], _j(c["r"]),
                                     _j(c["prio"]), False)
    layers = [(_j(w), _j(b)) for w, b in c["layers"]]
    emb, values, g = _j(c["emb"]), _j(c["values"]), _j(c["grad_out"])
    outs = []
    with kernels_run("pointconv_fwd", "pointconv_bwd"):
        out, vjp = jax.vjp(lambda L, e, v: ad.pointconv(jnp, L, e, v, idx, nmask),
                           layers, emb, values)
        outs.append((out, vjp(g)))
    out, vjp = jax.vjp(lambda L, e, v: ref.pointconv(jnp, L, e, v, idx, nmask),
                       layers, emb, values)
    outs.append((out, vjp(g)))
    (o1, g1), (o2, g2) = outs
    assert o1.dtype == o2.dtype
    assert_close(o1, o2, dtype, "forward")
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        assert a.shape == b.shape
        assert_close(a, b, dtype, "gradient")


def test_pointconv_double_backward(env):
    """grad of a grad (the Hamiltonian models) through the custom_vjp."""
    ad, ref = env
    c = make_case("single-point", "float64")
    idx = jnp.zeros((c["bs"], c["m"], c["k"]), jnp.int64)
    nmask = jnp.ones((c["bs"], c["m"], c["k"]), bool)
    layers = [(_j(w), _j(b)) for w, b in c["layers"]]
    emb, values = _j(c["emb"]), _j(c["values"])

    def outer(a):
        def inner(e):
            return jnp.sum(a.pointconv(jnp, layers, e, values, idx, nmask) ** 2)

        return jax.grad(lambda v: jnp.sum(jax.grad(inner)(emb * v[0, 0, 0]) ** 2))(values)

    with kernels_run("pointconv_fwd", "pointconv_bwd"):
        got = jax.jit(lambda: outer(ad))()
    assert_close(got, outer(ref), "float64", "double backward")


def test_hamiltonian_training_step_through_kernels(monkeypatch):
    """A jitted HLieConv training step (gradient of a gradient through the whole network, with
    the positions flowing into the integer-valued neighbour search) gives the same loss and the
    same updated parameters through the Pallas kernels as through the lax/XLA path. (On jax 0.11
    this failed with "Linearization failed" until the search inputs were stop_gradient-ed.)"""
    from lieconv_jax.adapter import JaxAdapter

    import lieconv_core._backend as B
    from lieconv_core import LieConv
    from lieconv_core.app import springs as springs_app
    from lieconv_core.data import springs as S
    from lieconv_core.dynamics import make_model

    # all particles are neighbours (k >= n), where the layer would take its index-free dense
    # path; this test is about the kernels, so keep the indexed search + fused pointconv
    monkeypatch.setattr(LieConv, "dense", False)
    tr = S.make_splits(n_train=4, n_val=1, n_test=1, seed=0)["train"]
    model = make_model("hlieconv", group="T2", k=16, num_layers=1)
    host = model.init_host(np.random.default_rng(0))
    from lieconv_jax import pallas

    results = []
    for mode in (MODE, "never"):
        # the adapter registry, as LIECONV_JAX_KERNELS=<mode> would set it up in a new process
        monkeypatch.setattr(B, "_adapters", {"jax": JaxAdapter(mode)})
        jax.clear_caches()
        pallas.TRACES.clear()
        t = springs_app.trainer("jax", model, host, tr.ts, lr=1e-3, total_steps=10, dtype="float64")
        loss = t.step({"z": tr.z, "sys": tr.sys})
        results.append((loss, t.params_host()))
        ran = {n for n, c in pallas.TRACES.items() if c}
        # the kernel path really ran (and the "never" control ran none of it)
        assert ran >= ({"pointconv_fwd", "pointconv_bwd"} if mode == MODE else set()), ran
        assert mode == MODE or not ran, ran
    (l1, p1), (l2, p2) = results
    assert np.isfinite(l1)
    np.testing.assert_allclose(l1, l2, rtol=1e-12)
    for name in p1:
        np.testing.assert_allclose(p1[name], p2[name], rtol=1e-10, atol=1e-12, err_msg=name)


def test_lax_fps_stays_default_on_cpu():
    from lieconv_jax.adapter import JaxAdapter

    if jax.default_backend() == "gpu":
        pytest.skip("GPU: Pallas is the default")
    assert JaxAdapter("auto")._pallas(jnp.zeros(3)) is None
