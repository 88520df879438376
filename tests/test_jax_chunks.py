"""jax's CPU paths: LieConv's query chunks and the neighbour search's chunks under one lax.map
(``JaxAdapter.map_query_chunks``) — same numbers and gradients as the unrolled loop and as numpy,
the map really is in the program, and it keeps XLA's temporary buffer small — and the ball
search's running counts by blocked products (``JaxAdapter.count_true``), exact; the linear
layers' weight gradients without a transposed copy of their input; the kNN selection by
``lax.top_k`` (the stable sort's indices); the fused training-mode batch norm + swish."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lieconv_core import groups as G
from lieconv_core import neighbourhoods as nb
from lieconv_core.adapter import CHUNK_ELEMS_DEVICE, ReferenceAdapter
from lieconv_core.cloud import Cloud, lift
from lieconv_core.nn import LieConv
from lieconv_core.nn.module import Model
from lieconv_core.random import PortableDraws

jax = pytest.importorskip("jax")
jnp = jax.numpy
from lieconv_jax.adapter import JaxAdapter  # noqa: E402

GROUPS = {"T3": G.T(3), "SE2": G.SE2()}


def _mapped(f, *args) -> bool:
    """Whether f's program holds map_query_chunks' lax.map: a scan whose body is rematerialised
    (the search's searchsorted has scans of its own)."""
    def subjaxprs(eqn):
        for v in eqn.params.values():
            for j in v if isinstance(v, (tuple, list)) else (v,):
                j = getattr(j, "jaxpr", j)  # ClosedJaxpr -> Jaxpr
                if hasattr(j, "eqns"):
                    yield j

    def walk(jaxpr, in_scan=False):
        for eqn in jaxpr.eqns:
            if in_scan and eqn.primitive.name.startswith(("remat", "checkpoint")):
                return True
            if any(walk(j, eqn.primitive.name == "scan") for j in subjaxprs(eqn)):
                return True
        return False

    return walk(jax.make_jaxpr(f)(*args).jaxpr)


def _layer(group, n=23, c=5, k=6, chunk_elems=None, seed=0, dtype="float64"):
    """A ball-mode LieConv on one lifted cloud of n points (the last three padding): the conv,
    its params and state, and (elems, q, values, mask) as numpy arrays."""
    conv = LieConv(c, c, group, nbhd=k, mean=True)
    conv.chunk_elems = chunk_elems
    params, state = conv.init_host(np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    x = rng.uniform(-1, 1, (1, n, group.space_dim))
    mask = np.ones((1, n), bool)
    mask[0, -3:] = False
    cloud = lift(group, x, rng.standard_normal((1, n, c)), mask, 1, PortableDraws(3))
    state = dict(state, r=np.asarray(1.0))
    return conv, params, state, cloud, dtype


def _apply(xp, conv, params, state, cloud, dtype):
    def cast(a):
        if a is None:
            return None
        a = np.asarray(a)
        return xp.asarray(a.astype(dtype) if a.dtype.kind == "f" else a)

    tree = jax.tree.map(cast, (params, state))
    cl = Cloud(*(cast(a) for a in cloud))

    def f(p, values):
        ctx = Model.context(xp, False, PortableDraws(0))
        return conv.apply(p, tree[1], cl._replace(values=values), ctx)[0].values

    return f, tree[0], cl.values


@pytest.mark.parametrize("group", list(GROUPS))
def test_mapped_chunks_match_numpy_and_one_chunk(group, jax_x64):
    # 40 elements per chunk at k = 6, width 32: chunks of 5 queries over m = 23 lifted points
    # (SE(2): 23 too, one lift) -> 4 mapped chunks and a shorter last one
    conv, params, state, cloud, dtype = _layer(GROUPS[group], chunk_elems=5 * 6 * 32)
    f, p, v = _apply(jnp, conv, params, state, cloud, dtype)
    out = np.asarray(jax.jit(f)(p, v))
    fn, pn, vn = _apply(np, conv, params, state, cloud, dtype)
    ref = np.asarray(fn(pn, vn))
    assert np.abs(ref).max() > 1e-2 and (ref == 0).any()  # nonzero, and padding zeroed
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)
    one = _layer(GROUPS[group], chunk_elems=CHUNK_ELEMS_DEVICE)[0]
    f1, _, _ = _apply(jnp, one, params, state, cloud, dtype)
    # the map is in the program (a rematerialised scan); control: not with one chunk
    assert _mapped(f, p, v) and not _mapped(f1, p, v)
    np.testing.assert_allclose(np.asarray(jax.jit(f1)(p, v)), ref, rtol=0, atol=1e-12)


def test_mapped_chunks_gradients_match_one_chunk(jax_x64):
    """jax.grad through the rematerialised map = through the single chunk (params and values)."""
    conv, params, state, cloud, dtype = _layer(G.T(3), chunk_elems=5 * 6 * 32)
    f, p, v = _apply(jnp, conv, params, state, cloud, dtype)
    one = _layer(G.T(3), chunk_elems=CHUNK_ELEMS_DEVICE)[0]
    f1, _, _ = _apply(jnp, one, params, state, cloud, dtype)
    w = jnp.asarray(np.random.default_rng(5).standard_normal((1, 23, 5)))

    def grads(fun):
        return jax.jit(jax.grad(lambda p, v: jnp.sum(w * fun(p, v)), argnums=(0, 1)))(p, v)

    g, g1 = grads(f), grads(f1)
    leaves, leaves1 = jax.tree.leaves(g), jax.tree.leaves(g1)
    assert len(leaves) == len(leaves1) > 3
    for a, b in zip(leaves, leaves1):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
    assert max(float(np.abs(np.asarray(a)).max()) for a in leaves) > 0.1


@pytest.mark.parametrize("knn", [False, True], ids=["ball", "knn"])
def test_mapped_search_chunks_match_reference(knn, jax_x64):
    rng = np.random.default_rng(2)
    bs, m, n, k = 2, 17, 30, 5
    group = G.SE2() if knn else G.T(2)
    pts = [lift(group, rng.uniform(-1, 1, (bs, s, 2)), np.zeros((bs, s, 1)), mask, 1,
                PortableDraws(s))
           for s, mask in [(m, np.arange(m)[None, :] < [[m], [m - 4]]),
                           (n, np.arange(n)[None, :] < [[n], [n - 6]])]]
    query, points = ((c.elems, c.q, c.mask) for c in pts)
    prio = np.argsort(rng.random((bs, n)), axis=-1)
    ref = nb.chunked_neighbourhood(ReferenceAdapter(), np, group, query, points, k, 0.9, prio, knn)
    ad = JaxAdapter()

    def search(q, p, pr):
        # 4 queries per chunk (2 clouds × 30 points × 4 = 240 pairs) -> 4 mapped chunks + 1
        return nb.chunked_neighbourhood(ad, jnp, group, q, p, k, 0.9, pr, knn, chunk_pairs=240)

    args = jax.tree.map(jnp.asarray, (query, points, prio))
    assert _mapped(search, *args)
    out = jax.jit(search)(*args)
    for a, b in zip(out, ref):
        if b is None:
            assert a is None
            continue
        np.testing.assert_array_equal(np.asarray(a), b)
    assert np.asarray(out[1]).any() and not np.asarray(out[1]).all()


def test_mapped_chunks_keep_xla_temporaries_small(monkeypatch):
    """The benchmark layer (N = 1000, k = 32, C = 256, float32): with the mapped chunks XLA's
    temporary buffer stays under glibc's 32 MiB mmap threshold (so it is not mapped fresh, page
    faults and all, on every call); the unrolled loop of the same chunks needs far more (control;
    48.8 against 25.5 MiB with jax 0.10)."""
    conv = LieConv(256, 256, G.T(3), nbhd=32, mean=True)
    params, state = conv.init_host(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    cloud = lift(G.T(3), rng.uniform(size=(1, 1000, 3)), rng.standard_normal((1, 1000, 256)),
                 np.ones((1, 1000), bool), 1, PortableDraws(0))

    def temp_bytes():
        f, p, v = _apply(jnp, conv, params, dict(state, r=np.asarray(0.2)), cloud, "float32")
        return jax.jit(f).lower(p, v).compile().memory_analysis().temp_size_in_bytes

    mapped = temp_bytes()
    monkeypatch.setattr(JaxAdapter, "map_query_chunks", ReferenceAdapter.map_query_chunks)
    unrolled = temp_bytes()
    assert mapped < 32 * 2**20
    assert unrolled > 1.5 * mapped


@pytest.mark.parametrize("shape", [(1, 1), (3, 31), (2, 5, 64), (4, 1000), (1, 70001)])
def test_blocked_count_true_is_exact(shape):
    """JaxAdapter.count_true on CPU (32-wide blocks: a product with a triangular matrix of ones
    plus the block totals' running sum, in float32) = the cumulative sum, bit for bit: ragged
    last blocks, leading axes, and counts up to 70,001 (all True: float32 holds them exactly)."""
    rng = np.random.default_rng(len(shape) * 100 + shape[-1])
    sel = rng.random(shape) < 0.3
    if shape[-1] > 10_000:
        sel[...] = True
    ref = np.cumsum(sel, axis=-1, dtype=np.int32)
    f = jax.jit(lambda s: JaxAdapter().count_true(jnp, s, jnp.int32))
    got = np.asarray(f(jnp.asarray(sel)))
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, ref)
    # the blocked product is what ran (control: the reference is a plain cumulative sum)
    assert "dot_general" in str(jax.make_jaxpr(f)(jnp.asarray(sel)))
    assert "dot_general" not in str(jax.make_jaxpr(
        lambda s: ReferenceAdapter.count_true(jnp, s, jnp.int32))(jnp.asarray(sel)))


def test_linear_weight_gradient_needs_no_transposed_copy(monkeypatch):
    """The output linear takes (bs, n, 16·chin) rows; as one 2-D product (the reference's
    ``linear``) XLA:CPU computes its weight gradient from x as it is. As a product with two
    contracted axes (control: ``x @ w + b`` on the 3-D x) it first writes a transposed copy of x,
    (16·chin, bs·n): 1.2 s of the 4.3 s springs training step (k = 384). Here: the gradient of
    a Hamiltonian LieConv's vector field (double backprop, as in training), k = 32, 8 systems."""
    import re

    from lieconv_core.data import springs as S
    from lieconv_core.dynamics import make_model
    from lieconv_core.nn.module import to_backend

    k, bs = 32, 8
    model = make_model("hlieconv", group="T2", k=k, num_layers=1)
    params = to_backend(model.init_host(np.random.default_rng(0)), jnp, jnp.float32)
    data = S.make_splits(n_train=bs, n_val=1, n_test=1, seed=0)["train"]
    z, sys = jnp.asarray(data.z[:, 0], jnp.float32), jnp.asarray(data.sys, jnp.float32)
    transposed = re.compile(rf"= f32\[{16 * k // 4},{bs * 6}\]\S* (fusion|copy|transpose)\(")

    def copies():
        loss = lambda p: jnp.sum(model.vector_field(p, z, sys) ** 2)  # noqa: E731
        txt = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
        return [line for line in txt.splitlines() if transposed.search(line)]

    assert copies() == []
    monkeypatch.setattr(JaxAdapter, "linear", ReferenceAdapter.linear)
    assert copies() == []  # the reference's 2-D product too
    monkeypatch.setattr(JaxAdapter, "linear", lambda self, w, b, x: x @ w + b)
    assert copies()


def test_wide_linear_weight_gradient_in_out_in_layout(monkeypatch, jax_x64):
    """JaxAdapter.linear on CPU for in >= 8·out (LieConv's output linear): in the compiled
    gradient of a Hamiltonian LieConv's vector field (double backprop, as in training) the
    weight gradients of that linear are (out, in) products gᵀ @ x (XLA:CPU: 77–93 GFLOP/s at the
    springs size, against 56 for xᵀ @ g); control: with the reference linear they are (in, out)
    products contracting the rows. Values and the double-backprop gradient equal the
    reference's (float64, 1e-12)."""
    import re

    from lieconv_core.data import springs as S
    from lieconv_core.dynamics import make_model
    from lieconv_core.nn.module import to_backend

    k, bs = 32, 8
    wide, out = 16 * k // 4, k // 4  # the output linear: 16·chin -> chout
    model = make_model("hlieconv", group="T2", k=k, num_layers=1)
    data = S.make_splits(n_train=bs, n_val=1, n_test=1, seed=0)["train"]

    def run(dtype):
        params = to_backend(model.init_host(np.random.default_rng(0)), jnp, dtype)
        z, sys = jnp.asarray(data.z[:, 0], dtype), jnp.asarray(data.sys, dtype)
        loss = lambda p: jnp.sum(model.vector_field(p, z, sys) ** 2)  # noqa: E731
        f = jax.jit(jax.value_and_grad(loss))
        return f(params), f.lower(params).compile().as_text()

    def weight_grads(txt, shape):
        dot = re.compile(rf"= f32\[{shape}\]\S* dot\(.*lhs_contracting_dims=\{{0\}}")
        return [line for line in txt.splitlines() if dot.search(line)]

    (value, grads), _ = run(jnp.float64)
    _, txt = run(jnp.float32)
    assert weight_grads(txt, f"{out},{wide}") and not weight_grads(txt, f"{wide},{out}")
    monkeypatch.setattr(JaxAdapter, "linear", ReferenceAdapter.linear)
    (want_value, want_grads), _ = run(jnp.float64)
    _, txt = run(jnp.float32)
    assert weight_grads(txt, f"{wide},{out}") and not weight_grads(txt, f"{out},{wide}")
    np.testing.assert_allclose(float(value), float(want_value), rtol=1e-12)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,k", [((3, 50), 7), ((2, 4, 300), 32), ((5, 40), 40)])
def test_topk_smallest_matches_stable_sort(shape, k, jax_x64):
    """JaxAdapter.topk_smallest (lax.top_k of the negated scores) = the reference's stable
    argsort, index for index: heavy ties, +inf (invalid points), and 0.0 next to -0.0."""
    rng = np.random.default_rng(shape[-1] + k)
    scores = np.round(rng.random(shape) * 8) / 8  # ~9 distinct values per row: many ties
    scores[..., ::5] = np.inf
    scores[..., 1::7] = 0.0
    scores[..., 3::7] = -0.0
    x = jnp.asarray(scores)
    got = np.asarray(jax.jit(lambda s: JaxAdapter().topk_smallest(jnp, s, k))(x))
    want = np.argsort(scores, axis=-1, kind="stable")[..., :k]
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.asarray(jnp.argsort(x, axis=-1)).dtype
    assert "top_k" in str(jax.make_jaxpr(lambda s: JaxAdapter().topk_smallest(jnp, s, k))(x))
    # control: top_k of the plainly negated scores puts -0.0 (negated: +0.0) before 0.0
    naive = np.asarray(jax.lax.top_k(-x, k)[1])
    assert (naive != want).any()


@pytest.mark.parametrize("masked", [True, False])
def test_fused_bn_swish_matches_reference(masked, jax_x64):
    """JaxAdapter.bn_swish in training mode (one custom_vjp op) = the reference's masked batch
    norm + swish: outputs and new running statistics, gradients with respect to x and the affine
    parameters, and a second derivative (reverse over reverse), float64, with invalid rows."""
    rng = np.random.default_rng(7 + masked)
    x = jnp.asarray(rng.standard_normal((3, 5, 4, 6)) * 2 + 0.5)
    mask = jnp.asarray(rng.random((3, 5, 4)) < 0.7) if masked else None
    p = {"w": jnp.asarray(rng.uniform(0.5, 1.5, 6)), "b": jnp.asarray(rng.standard_normal(6))}
    s = {"mean": jnp.asarray(rng.standard_normal(6)), "var": jnp.asarray(rng.uniform(1, 2, 6))}
    r = jnp.asarray(rng.standard_normal(x.shape))

    def run(ad):
        def loss(x, w, b):
            out, _ = ad.bn_swish(jnp, {"w": w, "b": b}, s, x, mask, True)
            return jnp.sum(out * r)

        out, new_s = ad.bn_swish(jnp, p, s, x, mask, True)
        grads = jax.grad(loss, argnums=(0, 1, 2))(x, p["w"], p["b"])
        second = jax.grad(lambda x: jnp.sum(jax.grad(loss, argnums=1)(x, p["w"], p["b"]) ** 2))(x)
        return out, new_s["mean"], new_s["var"], *grads, second

    got, want = run(JaxAdapter()), run(ReferenceAdapter())
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-10, atol=1e-12)
    if masked:
        assert not np.asarray(got[0])[~np.asarray(mask)].any()  # invalid rows are zeros
    # the fused op is what ran (control: the reference has no custom_vjp)
    jaxpr = str(jax.make_jaxpr(lambda x: JaxAdapter().bn_swish(jnp, p, s, x, mask, True))(x))
    assert "custom_vjp" in jaxpr
    assert "custom_vjp" not in str(jax.make_jaxpr(
        lambda x: ReferenceAdapter().bn_swish(jnp, p, s, x, mask, True))(x))


def test_configure_one_thread_sets_xla_flags(monkeypatch):
    """--threads 1 on jax: XLA's CPU operations on the calling thread, through XLA_FLAGS (which
    XLA reads when its CPU backend starts); a flag the user set is left alone."""
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    JaxAdapter().configure(threads=1)
    assert os.environ["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=1 "
                                       "--xla_cpu_multi_thread_eigen=false")
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
    JaxAdapter().configure(threads=1)
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=true"
    monkeypatch.delenv("XLA_FLAGS")
    JaxAdapter().configure(threads=2)  # control: other counts change nothing
    assert "XLA_FLAGS" not in os.environ
