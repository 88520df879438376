"""Cell-list neighbour search (neighbourhoods.cell_list) against the chunked search, the
auto dispatch of ReferenceAdapter.neighbourhood, query-chunked LieConv aggregation, and T(3)
invariance through the grid path (with a control that fails)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lieconv_core as lc
from lieconv_core import groups as G
from lieconv_core import neighbourhoods as nb
from lieconv_core._backend import adapter_for, backend_name
from lieconv_core.adapter import ReferenceAdapter
from lieconv_core.cloud import Cloud
from lieconv_core.neighbourhoods import cell_list as grid
from lieconv_core.nn.lieconv import CHUNK_ELEMS
from lieconv_core.nn.module import Model, to_backend
from lieconv_core.random import PortableDraws

from .conftest import asarray, to_numpy

REF = ReferenceAdapter()


def _cloud(seed, bs, n, m, E, *, pad=0.15, lattice=False, clustered=False, offset=0.0):
    """Points (bs, n, E) with padding (NaN there), queries near valid points, priorities."""
    rng = np.random.default_rng(seed)
    if lattice:
        x = rng.integers(0, 6, size=(bs, n, E)).astype(np.float64)
    else:
        x = rng.uniform(0, 10, size=(bs, n, E))
    if clustered:
        x[:, : n // 2] = x[:, : n // 2] * 0.03 + 2.0
        x[:, -1] = 40.0  # a far outlier
    x = x + offset
    pm = rng.uniform(size=(bs, n)) >= pad
    qi = rng.integers(0, n, size=(bs, m))
    q = np.take_along_axis(x, qi[..., None], axis=1)
    if not lattice:
        q = q + rng.normal(scale=0.05, size=q.shape)
    qm = rng.uniform(size=(bs, m)) >= pad
    x[~pm] = np.nan  # padding may hold anything
    prio = np.stack([rng.permutation(n) for _ in range(bs)])
    return x, pm, q, qm, prio


def _to(xp, arrs, dtype):
    x, pm, q, qm, prio = arrs
    return (asarray(xp, q, dtype), None, asarray(xp, qm)), (asarray(xp, x, dtype), None,
                                                           asarray(xp, pm)), asarray(xp, prio)


def _assert_same(got, want):
    assert got is not None
    for a, b, name in zip(got, want, ("idx", "mask", "counts")):
        if b is None:
            assert a is None, name
            continue
        a, b = to_numpy(a), to_numpy(b)
        assert a.shape == b.shape and a.dtype == b.dtype, (name, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_array_equal(a, b, err_msg=name)


def _both(xp, group, Q, P, k, r, prio, knn, **kw):
    ad = adapter_for(xp)
    want = nb.chunked_neighbourhood(REF, xp, group, Q, P, k, r, prio, knn)
    got = grid.grid_neighbourhood(xp, ad, group, Q, P, k, r, prio, knn, force=True, **kw)
    return got, want


# --- exact equality ------------------------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), E=st.integers(1, 3), bs=st.integers(1, 3),
       n=st.integers(1, 60), m=st.integers(1, 40), dtype=st.sampled_from(["float32", "float64"]),
       knn=st.booleans(), rfrac=st.floats(0.01, 1.5), lattice=st.booleans(),
       clustered=st.booleans(), trivial=st.booleans(), chunk=st.integers(1, 4096))
def test_grid_equals_chunked_search_property(seed, E, bs, n, m, dtype, knn, rfrac, lattice,
                                             clustered, trivial, chunk):
    """Random clouds (padding with NaN, lattices with exact distance ties, clusters with a far
    outlier), any radius: the grid returns exactly the reference's indices, masks and counts."""
    arrs = _cloud(seed, bs, n, m, E, lattice=lattice, clustered=clustered and n > 2)
    Q, P, prio = _to(np, arrs, dtype)
    k = int(np.random.default_rng(seed).integers(1, n + 1))
    group = G.Trivial(E) if trivial else G.T(E)
    r = rfrac * 10 if not lattice else float(round(rfrac * 4))  # lattice: r on a distance
    got, want = _both(np, group, Q, P, k, r, prio, knn, chunk_pairs=chunk)
    if not knn and r <= 0:
        assert got is None  # declines; the reference handles r <= 0
        return
    _assert_same(got, want)


@pytest.mark.parametrize("knn", [False, True], ids=["ball", "knn"])
def test_grid_equals_chunked_search_backends(xp, dtype, knn):
    """numpy, array_api_strict and torch: exact equality on padded clouds at several radii,
    plus a Tx (subgroup of T(2)) case with orbit ids. jax declines (data-dependent shapes)."""
    arrs = _cloud(3, 2, 240, 90, 3, clustered=True)
    Q, P, prio = _to(xp, arrs, dtype)
    if backend_name(xp) == "jax":
        assert grid.grid_neighbourhood(xp, adapter_for(xp), G.T(3), Q, P, 8, 1.0, prio, knn,
                                       force=True) is None
        return
    radii = [0.7, 2.5] if not knn else [None]
    for r in radii:
        r_arr = r if r is None else asarray(xp, np.asarray(r), dtype)  # r as the layer holds it
        got, want = _both(xp, G.T(3), Q, P, 8, r_arr, prio, knn, chunk_pairs=3000)
        _assert_same(got, want)
    x, pm, q, qm, prio2 = _cloud(4, 2, 150, 60, 2)
    Q2 = (asarray(xp, q, dtype), asarray(xp, q[..., 1:], dtype), asarray(xp, qm))
    P2 = (asarray(xp, x, dtype), asarray(xp, x[..., 1:], dtype), asarray(xp, pm))
    got, want = _both(xp, G.Tx(), Q2, P2, 6, 1.3, asarray(xp, prio2), knn)
    _assert_same(got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("offset", [0.0, 1000.5], ids=["origin", "offset"])
def test_lattice_radius_exactly_on_a_distance(dtype, offset):
    """Integer lattice (exact distance ties everywhere), r exactly 1 and 2 (points at exactly
    distance r are outside: d < r), near and far from the origin, float32 and float64."""
    arrs = _cloud(5, 1, 300, 300, 3, pad=0.0, lattice=True, offset=offset)
    Q, P, prio = _to(np, arrs, dtype)
    for r in (1.0, 2.0, np.asarray(1.0, dtype=dtype)):
        _assert_same(*_both(np, G.T(3), Q, P, 12, r, prio, False))
    _assert_same(*_both(np, G.T(3), Q, P, 12, None, None, True))


def test_knn_retries_larger_blocks_and_falls_back(monkeypatch):
    """kNN: a far outlier needs larger blocks; a cloud with fewer than k valid points goes to the
    reference; both paths give the reference's answer."""
    reaches, fallbacks = [], []
    ranges, ref_rows = grid._Grid._ranges, grid._Grid._reference_rows

    def spy_ranges(self, rows, reach):
        reaches.append(reach)
        return ranges(self, rows, reach)

    def spy_ref(self, rows, *a):
        fallbacks.append(int(rows.shape[0]))
        return ref_rows(self, rows, *a)

    monkeypatch.setattr(grid._Grid, "_ranges", spy_ranges)
    monkeypatch.setattr(grid._Grid, "_reference_rows", spy_ref)
    x, pm, q, qm, prio = _cloud(6, 2, 200, 200, 3, pad=0.0, clustered=True)
    q, qm = x.copy(), pm.copy()
    pm[1, 5:] = False  # cloud 1: 5 valid points < k
    x[1, 5:] = np.nan
    Q, P, prio = _to(np, (x, pm, q, qm, prio), "float64")
    _assert_same(*_both(np, G.T(3), Q, P, 10, None, None, True))
    assert max(reaches) > 1 and sum(fallbacks) > 0


# --- distances bounded by the positions (SE(2), SE(3)) --------------------------------------------

def _lifted(seed, group, bs, n, m, ns, dtype, xp=np, pad=0.15):
    """A lifted cloud (ns samples per point: pairs at the same position, different rotations)
    with NaN padding, queries at random lifted entries, priorities."""
    from lieconv_core.cloud import lift

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, size=(bs, n, group.space_dim))
    v = np.zeros((bs, n, 1))
    pm = rng.uniform(size=(bs, n)) >= pad
    c = lift(group, x, v, np.ones((bs, n), bool), ns, rng=seed)
    e = np.array(c.elems)
    pm = np.repeat(pm, ns, axis=1)
    qi = rng.integers(0, n * ns, size=(bs, m))
    qe = np.take_along_axis(e, qi[..., None], axis=1)
    qm = rng.uniform(size=(bs, m)) >= pad
    e[~pm] = np.nan
    prio = np.stack([rng.permutation(n * ns) for _ in range(bs)])
    Q = (asarray(xp, qe, dtype), None, asarray(xp, qm))
    P = (asarray(xp, e, dtype), None, asarray(xp, pm))
    return Q, P, asarray(xp, prio)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), se3=st.booleans(), alpha=st.floats(0.0, 0.9),
       bs=st.integers(1, 2), n=st.integers(1, 40), m=st.integers(1, 30), ns=st.integers(1, 4),
       dtype=st.sampled_from(["float32", "float64"]), rfrac=st.floats(0.02, 1.2),
       chunk=st.integers(1, 4096))
def test_grid_equals_chunked_search_bounded_groups(seed, se3, alpha, bs, n, m, ns, dtype, rfrac,
                                                   chunk):
    """SE(2) and SE(3) (any α < 1, several lift samples per point, padding, any radius): the cell
    list over positions returns the reference's indices, masks and in-ball counts exactly."""
    group = G.SE3(alpha) if se3 else G.SE2(alpha)
    Q, P, prio = _lifted(seed, group, bs, n, m, ns, dtype)
    k = int(np.random.default_rng(seed).integers(1, n * ns + 1))
    _assert_same(*_both(np, group, Q, P, k, rfrac * 10, prio, False, chunk_pairs=chunk))


def test_grid_bounded_groups_backends(xp, dtype):
    """SE(2) (α = 0.05, the RotMNIST value) and SE(3) on every backend that takes the grid, at
    radii from a handful of neighbours to most of the cloud; kNN and orbit ids decline."""
    for group, ns in ((G.SE2(0.05), 2), (G.SE3(0.2), 3)):
        Q, P, prio = _lifted(8, group, 2, 120, 70, ns, dtype, xp=xp)
        if backend_name(xp) == "jax":
            assert grid.grid_neighbourhood(xp, adapter_for(xp), group, Q, P, 8, 1.0, prio, False,
                                           force=True) is None
            continue
        for r in (0.6, 1.5, 4.0):
            r_arr = asarray(xp, np.asarray(r), dtype)
            _assert_same(*_both(xp, group, Q, P, 8, r_arr, prio, False, chunk_pairs=2000))
        ad = adapter_for(xp)
        assert grid.grid_neighbourhood(xp, ad, group, Q, P, 8, None, None, True,
                                       force=True) is None
        Qq, Pq = (Q[0], Q[0][..., :1], Q[2]), (P[0], P[0][..., :1], P[2])
        assert grid.grid_neighbourhood(xp, ad, group, Qq, Pq, 8, 1.0, prio, False,
                                       force=True) is None


@pytest.mark.parametrize("se3", [False, True], ids=["SE2", "SE3"])
def test_position_bound_holds_and_a_wrong_bound_is_caught(se3, monkeypatch):
    """pair_distance >= (1 − α)·‖x_u − x_v‖ on random pairs (angles up to π included), float64.
    Control: claiming the bound c = 1 where it is 1 − α = 0.5 shrinks the searched cells below the
    ball, and the equality test against the reference fails."""
    from lieconv_core.groups.base import norm

    group = G.SE3(0.5) if se3 else G.SE2(0.5)
    a = group.random_element(np, (4000,), PortableDraws(1), np.float64, None)
    b = group.random_element(np, (4000,), PortableDraws(2), np.float64, None)
    a[:500, : group.lie_dim - group.space_dim] *= np.pi / np.linalg.norm(
        a[:500, : group.lie_dim - group.space_dim], axis=-1, keepdims=True)  # angle exactly π
    u, v = (np.reshape(group.exp(np, t), (4000, -1)) for t in (a, b))
    d = group.pair_distance(np, u, None, v, None)
    dx = norm(np, group.position(np, u) - group.position(np, v))
    assert np.all(d >= group.position_bound() * dx * (1 - 1e-12))
    assert np.min(d / dx) < 0.6  # and it is nearly attained: c = 1 − α is the right constant

    Q, P, prio = _lifted(9, group, 1, 150, 80, 2, "float64")
    _assert_same(*_both(np, group, Q, P, 12, 2.0, prio, False))
    monkeypatch.setattr(type(group), "position_bound", lambda self: 1.0)
    got, want = _both(np, group, Q, P, 12, 2.0, prio, False)
    with pytest.raises(AssertionError):
        _assert_same(got, want)


# --- dispatch ------------------------------------------------------------------------------------

def test_auto_dispatch_uses_grid_only_where_it_pays():
    """ReferenceAdapter.neighbourhood (auto): the grid on a large cloud with a small radius; the
    chunked search for a radius large relative to the cloud, for few pairs, for groups with no
    position bound, for priorities that are not a permutation and for non-scalar r. Same answer
    always."""
    n = 2100  # 2100² > GRID_MIN_PAIRS
    rng = np.random.default_rng(7)
    x = rng.uniform(size=(1, n, 3))
    m = np.ones((1, n), bool)
    prio = rng.permutation(n)[None]
    Q = P = (x, None, m)
    args = (np, REF, G.T(3), Q, P, 16)
    assert grid.grid_neighbourhood(*args, 0.1, prio, False) is not None
    assert grid.grid_neighbourhood(*args, None, None, True) is not None
    assert grid.grid_neighbourhood(*args, 0.6, prio, False) is None  # r large: would not pay

    class DeviceAdapter(type(REF)):  # GPU-like: no host reads (no data-dependent shapes)
        def compact_pairs(self, x):
            return False

    dev_args = (np, DeviceAdapter(), G.T(3), Q, P, 16)
    assert grid.grid_neighbourhood(*dev_args, 0.1, prio, False) is None
    assert grid.grid_neighbourhood(*dev_args, 0.1, prio, False, force=True) is not None
    for r in (0.1, 0.6):
        _assert_same(nb.neighbourhood(REF, np, G.T(3), Q, P, 16, r, prio, False),
                     nb.neighbourhood(REF, np, G.T(3), Q, P, 16, r, prio, False, grid=False))
    small = (x[:, :50], None, m[:, :50])
    assert grid.grid_neighbourhood(np, REF, G.T(3), small, small, 8, 0.1, np.arange(50)[None],
                                   False) is None
    assert grid.grid_neighbourhood(*args, 0.1, prio // 2, False) is None  # not a permutation
    assert grid.grid_neighbourhood(*args, np.full((1,), 0.1), prio, False) is None
    # SE(2) (distance >= (1 − α)·‖Δx‖): the grid over positions, 2100 lifted entries
    from lieconv_core.cloud import lift

    c2 = lift(G.SE2(0.05), x[:, : n // 2, :2], x[:, : n // 2, :1], m[:, : n // 2], 2, rng=3)
    Q2 = P2 = (c2.elems, None, c2.mask)
    assert grid.grid_neighbourhood(np, REF, G.SE2(0.05), Q2, P2, 16, 0.05, prio, False) is not None
    # bounded groups take the grid from GRID_MIN_PAIRS_BOUNDED pairs on (here 1050² > 2^20)
    half = tuple(a[:, : n // 2] for a in (c2.elems, c2.mask))
    Qh = (half[0], None, half[1])
    assert grid.GRID_MIN_PAIRS_BOUNDED < (n // 2) ** 2 <= grid.GRID_MIN_PAIRS
    ph = rng.permutation(n // 2)[None]
    assert grid.grid_neighbourhood(np, REF, G.SE2(0.05), Qh, Qh, 16, 0.05, ph, False) is not None
    xh = (x[:, : n // 2], None, m[:, : n // 2])
    assert grid.grid_neighbourhood(np, REF, G.T(3), xh, xh, 16, 0.05, ph,
                                   False) is None  # Euclidean: below GRID_MIN_PAIRS
    assert grid.grid_neighbourhood(np, REF, G.SO2(), (x[..., :2], x[..., :1], m),
                                   (x[..., :2], x[..., :1], m), 16, 0.05, prio, False) is None
    _assert_same(nb.neighbourhood(REF, np, G.SE2(0.05), Q2, P2, 16, 0.05, prio, False),
                 nb.neighbourhood(REF, np, G.SE2(0.05), Q2, P2, 16, 0.05, prio, False, grid=False))
    assert grid.euclidean_distance(G.T(3)) and grid.euclidean_distance(G.Trivial(2))
    assert grid.euclidean_distance(G.Tx()) and not grid.euclidean_distance(G.Rx())
    assert not any(grid.euclidean_distance(g) for g in (G.SO2(), G.SE2(), G.SE3()))

    class MyT(G.T):  # a subclass that keeps the distance keeps the declaration
        pass

    class ScaledT(G.T):  # one that changes a distance hook without declaring again: declined
        def pair_distance(self, xp, u, qu, v, qv):
            return 2 * super().pair_distance(xp, u, qu, v, qv)

    assert grid.euclidean_distance(MyT(3)) and not grid.euclidean_distance(ScaledT(3))


# --- chunked aggregation -------------------------------------------------------------------------

def _conv_inputs(xp, dtype, n=60, chin=5, seed=0):
    gen = np.random.default_rng(seed)
    x = gen.uniform(0, 3, size=(2, n, 3))
    v = gen.standard_normal((2, n, chin))
    m = np.ones((2, n), bool)
    m[1, -7:] = False
    return Cloud(asarray(xp, x, dtype), None, asarray(xp, v, dtype), asarray(xp, m))


def _conv_params(xp, conv, dtype, seed=0):
    params, state = conv.init_host(np.random.default_rng(seed))
    gen = np.random.default_rng(seed + 1)
    for i in state["wn"]:  # non-trivial running statistics, so the folded BN matters
        state["wn"][i]["mean"] = gen.normal(size=state["wn"][i]["mean"].shape)
        state["wn"][i]["var"] = gen.uniform(0.5, 2, size=state["wn"][i]["var"].shape)
    state["r"] = state["r_train"] = np.asarray(1.2)
    return to_backend(params, xp, getattr(xp, dtype)), to_backend(state, xp, getattr(xp, dtype))


@pytest.mark.parametrize("backend_", ["numpy", "torch"])
@pytest.mark.parametrize("bn,train", [(True, False), (False, False), (False, True)],
                         ids=["bn-eval", "eval", "train-nobn"])
def test_chunked_apply_matches_unchunked(backend_, bn, train):
    """Query chunks down to one query each give the same outputs as one chunk (float64, ≤1e-12;
    in practice bit-identical) in eval mode (BN folded) and in training mode without BN."""
    if backend_ == "torch":
        pytest.importorskip("torch")
    from lieconv_core._backend import namespace_for

    xp = namespace_for(backend_)
    conv = lc.LieConv(5, 4, G.T(3), nbhd=9, mean=True, bn=bn)
    params, state = _conv_params(xp, conv, "float64")
    cloud = _conv_inputs(xp, "float64")
    outs = []
    for elems in (CHUNK_ELEMS, 9 * 32 * 2 * 7, 1):
        conv.chunk_elems = elems
        steps = conv.query_chunk(2, 60, 9)
        ctx = Model.context(xp, train, PortableDraws(3))
        out, _ = conv.apply(params, state, cloud, ctx)
        outs.append((steps, to_numpy(out.values)))
    assert [s for s, _ in outs] == [60, 7, 1]
    assert np.abs(outs[0][1]).max() > 1e-3
    for _, o in outs[1:]:
        np.testing.assert_allclose(o, outs[0][1], rtol=0, atol=1e-12)


def test_automatic_query_chunks_keep_enough_rows_for_the_output_gemm():
    """chunk_elems None: the adapter's element bound, raised to MIN_CHUNK_ROWS rows (bs·chunk)
    where it would give fewer; an explicit chunk_elems is honoured exactly."""
    from lieconv_core.nn.lieconv import MIN_CHUNK_ROWS

    conv = lc.LieConv(256, 256, G.T(3), nbhd=32)
    assert conv.query_chunk(1, 1000, 32, 1 << 21) == MIN_CHUNK_ROWS  # 256 by the bound alone
    assert conv.query_chunk(4, 1000, 32, 1 << 21) == MIN_CHUNK_ROWS // 4
    assert conv.query_chunk(1, 100, 32, 1 << 21) == 100  # never more than m
    small = lc.LieConv(32, 32, G.T(2), nbhd=25)
    assert small.query_chunk(25, 883, 25, 1 << 21) == (1 << 21) // (25 * 25 * 32)  # 104 >= 512/25
    conv.chunk_elems = 1 << 21
    assert conv.query_chunk(1, 1000, 32) == 256


# --- invariance through the grid -----------------------------------------------------------------

def test_t3_layer_invariant_through_grid_path_and_control_fails(monkeypatch):
    """A T(3) LieConv layer on 2100 points (the auto dispatch takes the grid path: checked): a
    random translation leaves the outputs unchanged (≤1e-9, float64, same draws). Control: the
    same check on a Trivial(3) layer, also through the grid, fails by orders of magnitude."""
    used = []
    orig = grid.grid_neighbourhood

    def spy(*a, **kw):
        out = orig(*a, **kw)
        used.append(out is not None)
        return out

    monkeypatch.setattr(grid, "grid_neighbourhood", spy)
    n = 2100
    gen = np.random.default_rng(11)
    x = gen.uniform(size=(1, n, 3))
    v = gen.standard_normal((1, n, 3))
    m = np.ones((1, n), bool)
    shift = 3 * gen.standard_normal((1, 3))

    def run(group, coords):
        conv = lc.LieConv(3, 4, group, nbhd=16, mean=True)
        params, state = conv.init_host(np.random.default_rng(0))
        # a ball of Euclidean radius 0.13 (≈ 19 points at density 2100) under the group's
        # distance (the original's 0.2‖Δx‖ for T(3), 0.8‖Δx‖ for Trivial(3))
        state["r"] = state["r_train"] = np.asarray(0.13 * group.distance_scale)
        cloud = lc.lift(group, coords, v, m)
        out, _ = conv.apply(params, state, cloud, Model.context(np, False, PortableDraws(5)))
        return out.values

    out = run(G.T(3), x)
    out_g = run(G.T(3), x + shift[:, None, :])
    assert all(used) and len(used) == 2
    assert np.abs(out).max() > 1e-3
    np.testing.assert_allclose(out_g, out, rtol=0, atol=1e-9)
    ctrl = run(G.Trivial(3), x)
    ctrl_g = run(G.Trivial(3), x + shift[:, None, :])
    assert all(used) and len(used) == 4
    assert np.abs(ctrl_g - ctrl).max() > 1e-6
