"""Same numbers on every backend, backend selection, and clear errors for bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import lieconv_core as lc
from lieconv_core import groups as G
from lieconv_core import neighbourhoods as nb
from lieconv_core._backend import adapter_for, namespace_for
from lieconv_core.adapter import ReferenceAdapter

from .conftest import AVAILABLE, SAME_TOL, apply_net, asarray, rel_err, to_numpy

CASES = {
    # group, liftsamples, ds_frac, nbhd, knn
    "T2-fps-ball": (G.T(2), 1, 0.6, 5, False),
    "SE2-fps-ball": (G.SE2(), 2, 0.6, 6, False),
    "SO3-knn": (G.SO3(), 2, 1.0, 6, True),
    "SE3-fps-ball": (G.SE3(), 2, 0.6, 6, False),
}


def _inputs(d, seed=0, bs=2, n=10):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((bs, n, d)) * 1.5
    v = rng.standard_normal((bs, n, 3))
    m = np.ones((bs, n), dtype=bool)
    m[1, -3:] = False
    return x, v, m


def _run(backend, dtype, case, train):
    group, ns, ds, nbhd, knn = CASES[case]
    net = lc.LieResNet(chin=3, num_outputs=2, k=16, num_layers=1, nbhd=nbhd, ds_frac=ds,
                       fill=0.5, liftsamples=ns, group=group, knn=knn)
    xp = namespace_for(backend)
    params, state = net.init(seed=1, dtype=dtype, backend=backend)
    x, v, m = _inputs(group.space_dim)
    out, st = apply_net(net, params, state, (asarray(xp, x, dtype), asarray(xp, v, dtype),
                                             asarray(xp, m)), train=train, rng=11)
    return to_numpy(out), float(to_numpy(st["blocks"]["0"]["conv"]["r"]))


@pytest.mark.parametrize("backend", [b for b in AVAILABLE if b != "numpy"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_same_numbers_as_numpy(backend, dtype, case, train):
    """Same params, inputs and draws: every other backend matches numpy (float64 1e-10, float32
    1e-5)."""
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    out, r = _run(backend, dtype, case, train)
    ref, r_ref = _run("numpy", dtype, case, train)
    assert rel_err(out, ref) <= SAME_TOL[dtype]
    assert abs(r - r_ref) <= SAME_TOL[dtype] * abs(r_ref)


def _grid_cloud(xp, dtype):
    # a 6×6 grid: many exactly equal distances, so tie-breaking decides neighbour order
    g = np.stack(np.meshgrid(np.arange(6.0), np.arange(6.0), indexing="ij"), -1).reshape(1, 36, 2)
    g = np.concatenate([g, g[:, ::-1]], axis=0)
    return lc.lift(G.T(2), asarray(xp, g, dtype), asarray(xp, np.ones((2, 36, 1)), dtype),
                   asarray(xp, np.ones((2, 36), bool)))


def test_neighbour_choice_independent_of_backend_tie_breaking(xp, dtype):
    """kNN and FPS on a grid (exact distance ties) pick the same indices on every backend:
    ties go to the lowest index, whatever the backend's sort or top-k does."""
    ad = adapter_for(xp)
    ref_ad = ReferenceAdapter()
    c = _grid_cloud(xp, dtype)
    cn = _grid_cloud(namespace_for("numpy"), dtype)
    q = (c.elems, None, c.mask)
    idx, valid, _ = nb.neighbourhood(ad, xp, G.T(2), q, q, 9, 2.0, None, True)
    qn = (cn.elems, None, cn.mask)
    idx_ref, _, _ = nb.neighbourhood(ref_ad, namespace_for("numpy"), G.T(2), qn, qn, 9, 2.0,
                                     None, True)
    np.testing.assert_array_equal(to_numpy(idx), idx_ref)
    # lowest index first among equal distances: point 0's 2nd and 3rd neighbours are 1 and 6
    assert list(idx_ref[0, 0, :3]) == [0, 1, 6]
    u = asarray(xp, np.array([0.0, 0.5]), dtype)
    fps = nb.fps(ad, xp, G.T(2), c.elems, None, c.mask, 12, u)
    fps_ref = nb.fps(ref_ad, namespace_for("numpy"), G.T(2), cn.elems, None, cn.mask, 12,
                     np.array([0.0, 0.5]).astype(dtype))
    np.testing.assert_array_equal(to_numpy(fps), fps_ref)


def test_portable_draws_identical_everywhere(xp, dtype):
    from lieconv_core.random import PortableDraws

    a = to_numpy(PortableDraws(3).uniform(xp, (4, 5), getattr(xp, dtype), None))
    b = PortableDraws(3).uniform(np, (4, 5), getattr(np, dtype), None)
    np.testing.assert_array_equal(a, b)
    p = to_numpy(PortableDraws(3).priorities(xp, (2, 7), None))
    np.testing.assert_array_equal(np.sort(p, axis=-1), np.broadcast_to(np.arange(7), (2, 7)))


# --- backend selection -------------------------------------------------------------------------

def _python(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full_env, timeout=120)


def test_import_imports_no_framework():
    res = _python("import lieconv_core, sys; "
                  "print(sorted(m for m in ('torch','jax','cupy') if m in sys.modules))")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_backend_env_var_validated():
    res = _python("import lieconv_core", LIECONV_BACKEND="tensorflow")
    assert res.returncode != 0
    assert "LIECONV_BACKEND='tensorflow'" in res.stderr
    for name in ("numpy", "torch", "jax", "cupy", "array_api_strict"):
        assert name in res.stderr


def test_backend_env_var_picks_default_namespace():
    res = _python("import lieconv_core as lc; net = lc.LieResNet(2, k=8, num_layers=1, "
                  "group=lc.groups.T(2)); p, s = net.init(); "
                  "print(type(p['lin_in']['w']).__module__)",
                  LIECONV_BACKEND="array_api_strict")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().startswith("array_api_strict")


# --- bad input --------------------------------------------------------------------------------

@pytest.fixture
def net_and_params():
    net = lc.LieResNet(chin=3, k=8, num_layers=1, group=G.T(2))
    params, state = net.init(dtype="float64", backend="numpy")
    return net, params, state


def _good(n=5):
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, n, 2)), rng.standard_normal((2, n, 3)), np.ones((2, n), bool)


@pytest.mark.parametrize("bad, exc, words", [
    (lambda x, v, m: (x[0], v, m), ValueError, "coords must have shape"),
    (lambda x, v, m: (np.concatenate([x, x[..., :1]], -1), v, m), ValueError, "coords"),
    (lambda x, v, m: (x, v[:, :3], m), ValueError, "values must have shape"),
    (lambda x, v, m: (x, v[..., :2], m), ValueError, "values must have 3 channels"),
    (lambda x, v, m: (x, v, m[:, :4]), ValueError, "mask must have shape"),
    (lambda x, v, m: (x, v, m.astype(np.float64)), TypeError, "mask must be a bool"),
    (lambda x, v, m: (x.astype(np.int64), v, m), TypeError, "coords must be float"),
    (lambda x, v, m: (x, v.astype(np.float32), m), TypeError, "values dtype"),
    (lambda x, v, m: (np.where(np.arange(5)[None, :, None] == 2, np.nan, x), v, m),
     ValueError, "coords contain NaN"),
    (lambda x, v, m: (np.where(np.arange(5)[None, :, None] == 2, np.inf, x), v, m),
     ValueError, "coords contain NaN or inf"),
    (lambda x, v, m: (x, np.where(np.arange(5)[None, :, None] == 1, np.nan, v), m),
     ValueError, "values contain NaN"),
    (lambda x, v, m: (x.astype(np.float32), v.astype(np.float32), m), TypeError,
     "parameters are float64"),
])
def test_bad_input_named(net_and_params, bad, exc, words):
    net, params, state = net_and_params
    with pytest.raises(exc, match=words):
        net.apply(params, state, bad(*_good()))


def test_nan_at_padding_is_fine(net_and_params):
    """NaN coordinates of a masked point give the outputs of the cloud without that point."""
    net, params, state = net_and_params
    x, v, m = _good()
    want, _ = net.apply(params, state, (x[:, :-1], v[:, :-1], m[:, :-1]))
    x[:, -1] = np.nan
    m[:, -1] = False
    out, _ = net.apply(params, state, (x, v, m))
    assert np.abs(want).max() > 1e-3
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


def test_mixed_libraries_type_error_names_both(net_and_params):
    torch = pytest.importorskip("torch")
    net, params, state = net_and_params
    x, v, m = _good()
    with pytest.raises(TypeError, match=r"coords is a numpy array but values is a torch array"):
        net.apply(params, state, (x, torch.asarray(v), m))


def test_params_from_another_library_named(net_and_params):
    pytest.importorskip("torch")
    net, _, _ = net_and_params
    params, state = net.init(dtype="float64", backend="torch")
    with pytest.raises(TypeError, match="coords is a numpy array but params is a torch array"):
        net.apply(params, state, _good())


def test_mixed_devices_type_error_names_both():
    torch = pytest.importorskip("torch")
    x, v, m = (torch.asarray(a) for a in _good())
    with pytest.raises(TypeError, match="coords is on device cpu but values is on device meta"):
        lc.lift(G.T(2), x, v.to("meta"), m)


def test_rxso2_rejects_points_at_origin():
    net = lc.LieResNet(chin=3, k=8, num_layers=1, group=G.RxSO2())
    params, state = net.init(dtype="float64", backend="numpy")
    x, v, m = _good()
    x[0, 1] = 0.0
    with pytest.raises(ValueError, match="not defined at the origin"):
        net.apply(params, state, (x, v, m))
    m[0, 1] = False  # masked: the output of the cloud without that point
    keep = np.array([0, 2, 3, 4])
    want = net.apply(params, state, (x[:1, keep], v[:1, keep], m[:1, keep]))[0]
    np.testing.assert_allclose(net.apply(params, state, (x, v, m))[0][:1], want, rtol=1e-12,
                               atol=1e-12)


def test_config_errors():
    with pytest.raises(ValueError, match="unknown group 'SU3'"):
        G.by_name("SU3")
    with pytest.raises(ValueError, match="ds_frac"):
        lc.LieConv(4, 4, G.T(2), ds_frac=0.0)
    with pytest.raises(ValueError, match="k must have 3 entries"):
        lc.LieResNet(3, k=[8, 8], num_layers=2)
    with pytest.raises(ValueError, match="dtype must be"):
        lc.LieResNet(3, k=8, num_layers=1).init(dtype="float16")
    with pytest.raises(ValueError, match="nsamples"):
        lc.lift(G.T(2), *_good(), nsamples=0)


def test_jax_jit_and_grad_with_captured_inputs(jax_x64):
    """Traced params with concrete captured inputs: no spurious device mismatch under jit/grad."""
    import jax
    import jax.numpy as jnp

    net = lc.LieResNet(chin=3, k=8, num_layers=1, group=G.T(2))
    params, state = net.init(dtype="float64", backend="jax")
    x, v, m = (jnp.asarray(a) for a in _good())
    out = jax.jit(lambda p: net.apply(p, state, (x, v, m))[0])(params)
    eager = net.apply(params, state, (x, v, m))[0]
    np.testing.assert_allclose(np.asarray(out), np.asarray(eager), rtol=1e-12)
    g = jax.grad(lambda p: jnp.sum(net.apply(p, state, (x, v, m))[0]))(params)
    np.testing.assert_allclose(np.asarray(g["lin_out"]["b"]), [2.0])


def test_torch_module_wrapper_matches_functional_apply():
    torch = pytest.importorskip("torch")
    from lieconv_torch import FunctionalModule

    net = lc.LieResNet(chin=3, num_outputs=2, k=16, num_layers=1, nbhd=4, group=G.SE2(),
                       liftsamples=2)
    params, state = net.init(seed=0, dtype="float64", backend="torch")
    module = FunctionalModule(net, params, state, dtype="float64")
    inputs = tuple(torch.asarray(a) for a in _good())
    out = module(*inputs, rng=3)  # training mode by default, as in torch
    ref, new_state = net.apply(params, state, inputs, train=True, rng=3)
    np.testing.assert_allclose(out.detach().numpy(), ref.numpy(), rtol=1e-12)
    r = module.state.tree()["blocks"]["0"]["conv"]["r"]
    assert float(r) == float(new_state["blocks"]["0"]["conv"]["r"]) != 2.0
    out.sum().backward()
    assert all(p.grad is not None for p in module.parameters())


@pytest.mark.parametrize("lib", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_euclidean_fps_fast_paths_match_the_reference(lib, dtype, request):
    """The in-place numpy FPS loop (numpy arrays and torch CPU tensors) and jax's fori_loop
    (Euclidean groups, contiguous coordinate components) pick exactly the indices of the pure
    array-API loop (run on array_api_strict): NaN padding, grid ties, three groups."""
    import array_api_strict as strict

    from lieconv_core.adapter import ReferenceAdapter
    from lieconv_core.groups import T, Trivial

    pytest.importorskip(lib)
    if lib == "jax" and dtype == "float64":
        request.getfixturevalue("jax_x64")
    rng = np.random.default_rng(5)
    for g, grid in ((T(3), True), (T(2), False), (Trivial(3), True)):
        d = g.space_dim
        x = (rng.integers(0, 5, size=(3, 300, d)) if grid else rng.normal(size=(3, 300, d)))
        x = x.astype(dtype)
        mask = rng.random((3, 300)) > 0.2
        x[~mask] = np.nan
        u = rng.random(3).astype(dtype)
        want = np.from_dlpack(nb.fps(
            ReferenceAdapter(), strict, g, strict.asarray(x), None, strict.asarray(mask), 80,
            strict.asarray(u)))
        if lib == "numpy":
            import array_api_compat.numpy as npx

            got = nb.fps(ReferenceAdapter(), npx, g, x, None, mask, 80, u)
        elif lib == "torch":
            import torch
            from lieconv_torch.adapter import ADAPTER, xp_torch

            got = nb.fps(ADAPTER, xp_torch(), g, torch.as_tensor(x), None,
                         torch.as_tensor(mask), 80, torch.as_tensor(u)).numpy()
        else:
            import jax.numpy as jnp
            from lieconv_jax.adapter import ADAPTER

            got = np.asarray(nb.fps(ADAPTER, jnp, g, jnp.asarray(x), None, jnp.asarray(mask), 80,
                                    jnp.asarray(u)))
        np.testing.assert_array_equal(got, want, err_msg=f"{g} {dtype}")


def test_first_k_then_rest_is_the_stable_argsort_order(xp):
    """The sort-free ball-neighbourhood order equals argsort(where(sel, 0, 1), stable)[:k] on
    every backend, with the array-API row search and with the adapter's (torch: native batched
    searchsorted): random rows, empty and full rows, k = 1 and k = n, two leading axes."""
    from lieconv_core._backend import adapter_for
    from lieconv_core.neighbourhoods.primitives import first_k_then_rest

    rng = np.random.default_rng(3)
    for n, k, p in ((1, 1, 0.5), (7, 3, 0.5), (50, 50, 0.3), (64, 9, 0.9), (33, 5, 0.05)):
        sel = rng.random((2, 6, n)) < p
        sel[0, 0] = False
        sel[0, 1] = True
        want = np.argsort(np.where(sel, 0, 1), axis=-1, kind="stable")[..., :k]
        got = to_numpy(first_k_then_rest(xp, asarray(xp, sel), k))
        np.testing.assert_array_equal(got, want, err_msg=f"n={n} k={k}")
        native = first_k_then_rest(xp, asarray(xp, sel), k, adapter_for(xp).search_rows)
        np.testing.assert_array_equal(to_numpy(native), want, err_msg=f"adapter n={n} k={k}")


def test_first_k_then_rest_shortcut_and_counts(xp):
    """With an ``all_true`` check, rows that all hold at least k True entries skip the False
    half: the same positions as without it; ``counts`` returns the True entries per row. The
    check is host-evaluated here, so the shortcut runs on every backend (jax's adapter never
    takes it under jit)."""
    from lieconv_core.neighbourhoods.primitives import first_k_then_rest

    rng = np.random.default_rng(4)
    seen = []

    def all_true(xp_, m):
        seen.append(bool(np.all(to_numpy(m))))
        return seen[-1]

    for n, k, p in ((40, 4, 0.95), (40, 15, 0.3), (12, 12, 1.0), (9, 3, 0.0)):
        sel = rng.random((3, 5, n)) < p
        want = np.argsort(np.where(sel, 0, 1), axis=-1, kind="stable")[..., :k]
        pos, cnt = first_k_then_rest(xp, asarray(xp, sel), k, all_true=all_true, counts=True)
        np.testing.assert_array_equal(to_numpy(pos), want, err_msg=f"n={n} k={k} p={p}")
        np.testing.assert_array_equal(to_numpy(cnt), sel.sum(-1))
    assert seen == [True, False, True, False]  # the shortcut ran where every row had k entries


def test_torch_compile_smoke_dense_network_in_one_graph(monkeypatch):
    """The optional torch.compile path: a FunctionalModule of a dense-path LieResNet (every
    point a neighbour, as for molecules and spring systems) in eval mode compiles into one graph
    with no breaks and, through inductor, gives eager's numbers (float64, 1e-10). Control: with
    the adapter's ``tracing`` hook off, the host reads (input checks, all-valid shortcut) split
    the graph."""
    torch = pytest.importorskip("torch")
    import torch._dynamo as dynamo
    from lieconv_torch import FunctionalModule
    from lieconv_torch.adapter import TorchAdapter

    net = lc.LieResNet(chin=2, num_outputs=2, k=8, num_layers=2, nbhd=None, group=G.T(3),
                       knn=True, fill=1.0)
    params, state = net.init(seed=0, dtype="float64", backend="torch")
    module = FunctionalModule(net, params, state, dtype="float64").eval()
    gen = np.random.default_rng(0)
    inputs = (torch.asarray(gen.normal(size=(2, 5, 3))), torch.asarray(gen.normal(size=(2, 5, 2))),
              torch.ones((2, 5), dtype=torch.bool))
    with torch.no_grad():
        want = module(*inputs)
        dynamo.reset()
        explained = dynamo.explain(module)(*inputs)
        assert explained.graph_count == 1 and explained.graph_break_count == 0, \
            explained.break_reasons
        got = torch.compile(module)(*inputs)  # inductor: fused loops, sums in another order
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        monkeypatch.setattr(TorchAdapter, "tracing", lambda self: False)
        monkeypatch.setattr(TorchAdapter, "all_true",
                            lambda self, xp, m: m.device.type == "cpu" and bool(torch.all(m)))
        dynamo.reset()
        assert dynamo.explain(module)(*inputs).graph_break_count > 0
    dynamo.reset()


class _DeviceArray:
    """Stands for a GPU array (a torch CUDA tensor, a cupy array): no ``__array__`` and no DLPack
    export to the host, but ``to_device("cpu")`` works."""

    def __init__(self, data: np.ndarray):
        self.data = data

    def __array__(self, dtype=None, copy=None):
        raise TypeError("can't convert a device array to numpy; copy it to the host first")

    def __dlpack__(self, **kwargs):
        raise BufferError("Unsupported device in DLTensor.")

    def to_device(self, device, /, *, stream=None):
        assert device == "cpu"
        return self.data


def test_reference_to_numpy_brings_device_arrays_to_the_host():
    """The reference adapter's to_numpy (used by the cell-list neighbourhood search on any
    namespace) copies a device array to the host; calling ``np.asarray`` or ``np.from_dlpack`` on
    it fails, as it did for CUDA tensors on the H200 (2026-11-30)."""
    from lieconv_core.adapter import ReferenceAdapter

    want = np.arange(6.0).reshape(2, 3)
    x = _DeviceArray(want)
    for direct in (np.asarray, np.from_dlpack):  # control: what the adapter used to do
        with pytest.raises((TypeError, BufferError)):
            direct(x)
    np.testing.assert_array_equal(ReferenceAdapter().to_numpy(x), want)
