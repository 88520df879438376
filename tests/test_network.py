"""LieResNet: invariance under each group (exact where the configuration is deterministic, in
distribution otherwise), controls that are not invariant, padding/permutation invariance, edge
cases, and the radius controller."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import lieconv_core as lc
from lieconv_core import groups as G
from lieconv_core import neighbourhoods as nb
from lieconv_core.random import PortableDraws

from .conftest import apply_net, asarray, to_numpy

DETERMINISTIC_LIFT = [G.T(2), G.T(3), G.SO2(), G.RxSO2(), G.Tx(), G.Rx()]
RANDOM_LIFT = [G.SE2(), G.SO3(), G.SE3()]


def make_inputs(d: int, bs: int = 3, n: int = 14, chin: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((bs, n, d)) * 1.5
    v = rng.standard_normal((bs, n, chin))
    m = np.ones((bs, n), dtype=bool)
    m[min(1, bs - 1), n - 4:] = False  # one padded cloud
    return x, v, m


def small_net(group, **kw):
    cfg = dict(chin=3, num_outputs=2, k=16, num_layers=2, nbhd=None, fill=0.5,
               liftsamples=2 if group.random_lift else 1, group=group)
    cfg.update(kw)
    return lc.LieResNet(**cfg)


def transform(group, x, seed=7):
    g = group.random_element(np, (x.shape[0],), PortableDraws(seed), np.float64, None)
    return g, group.act_on_points(np, g, x)


@pytest.mark.parametrize("group", DETERMINISTIC_LIFT, ids=repr)
@pytest.mark.parametrize("subsample", [False, True], ids=["all", "fps+random-ball"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_invariant_deterministic_lift(group, subsample, train):
    """Same draws, transformed input: identical outputs (≤1e-9), even with FPS subsampling and
    random ball neighbourhoods, because every decision depends only on invariant distances."""
    kw = dict(ds_frac=0.6, nbhd=5) if subsample else {}
    net = small_net(group, **kw)
    params, state = net.init(seed=1, dtype="float64", backend="numpy")
    x, v, m = make_inputs(group.space_dim)
    _, gx = transform(group, x)
    out, st = net.apply(params, state, (x, v, m), train=train, rng=5)
    out_g, st_g = net.apply(params, state, (gx, v, m), train=train, rng=5)
    assert np.abs(out).max() > 1e-3
    np.testing.assert_allclose(out_g, out, atol=1e-9, rtol=0)
    np.testing.assert_allclose(st_g["blocks"]["0"]["conv"]["r"], st["blocks"]["0"]["conv"]["r"],
                               atol=1e-12)


@pytest.mark.parametrize("group", RANDOM_LIFT, ids=repr)
@pytest.mark.parametrize("subsample", [False, True], ids=["all", "fps+random-ball"])
def test_invariant_on_lifted_elements(group, subsample):
    """For random lifts, g·(lift of x) is a lift of g·x: the network on lifted elements
    transformed by g must give identical outputs (≤1e-9)."""
    kw = dict(ds_frac=0.6, nbhd=5) if subsample else {}
    net = small_net(group, **kw)
    params, state = net.init(seed=1, dtype="float64", backend="numpy")
    x, v, m = make_inputs(group.space_dim)
    cloud = lc.lift(group, x, v, m, nsamples=2, rng=4)
    g = group.random_element(np, (x.shape[0],), PortableDraws(9), np.float64, None)
    moved = cloud._replace(elems=group.act_on_elements(np, g, cloud.elems))
    out, _ = net.apply_lifted(params, state, cloud, train=True, rng=5)
    out_g, _ = net.apply_lifted(params, state, moved, train=True, rng=5)
    np.testing.assert_allclose(out_g, out, atol=1e-9, rtol=0)


@pytest.mark.parametrize("group", [G.T(2), G.SO2()], ids=repr)
def test_trivial_group_control_is_not_invariant(group):
    """Control: the same check (atol 1e-9) applied to a Trivial-group network fails by orders of
    magnitude (a freshly initialised network is only mildly sensitive to absolute position)."""
    net = small_net(G.Trivial(2))
    params, state = net.init(seed=1, dtype="float64", backend="numpy")
    x, v, m = make_inputs(2)
    _, gx = transform(group, x)
    out, _ = net.apply(params, state, (x, v, m), rng=5)
    out_g, _ = net.apply(params, state, (gx, v, m), rng=5)
    assert np.abs(out_g - out).max() > 1e-6


class _FixedPhaseSE2(G.SE2):
    """A broken SE(2) lift (stabilizer phase always 0): not equivariant in distribution."""

    def lift(self, xp, coords, nsamples, draws):
        class Zero:
            def uniform(self, xp, shape, dtype, device):
                return xp.zeros(shape, dtype=dtype)

        return super().lift(xp, coords, nsamples, Zero())


def _output_samples(group, x, v, m, seeds):
    net = small_net(group, liftsamples=1, num_outputs=1)
    params, state = net.init(seed=3, dtype="float64", backend="numpy")
    return np.array([net.apply(params, state, (x, v, m), rng=s)[0][0, 0] for s in seeds])


def test_se2_invariant_in_distribution_and_control_fails():
    """End to end with random lifts: the outputs for x and g·x have the same distribution over
    lift draws (two-sample KS), while a lift with a fixed stabilizer phase is detectably not."""
    x, v, m = make_inputs(2, bs=1, n=8)
    m[:] = True
    g = np.array([[2.1, 0.7, -1.3]])
    gx = G.SE2().act_on_points(np, g, x)
    seeds_a, seeds_b = range(0, 150), range(1000, 1150)
    a = _output_samples(G.SE2(), x, v, m, seeds_a)
    b = _output_samples(G.SE2(), gx, v, m, seeds_b)
    assert a.std() > 1e-6  # the output really depends on the lift draws
    assert stats.ks_2samp(a, b).pvalue > 1e-3
    a = _output_samples(_FixedPhaseSE2(), x, v, m, seeds_a)
    b = _output_samples(_FixedPhaseSE2(), gx, v, m, seeds_b)
    assert stats.ks_2samp(a, b).pvalue < 1e-3


def test_padding_and_permutation_invariance(xp, dtype):
    group = G.SE2()
    net = small_net(group, liftsamples=1)
    params, state = net.init(seed=2, dtype=dtype, xp=xp)
    x, v, m = make_inputs(2, bs=2, n=10)
    m[:] = True
    out, _ = apply_net(net, params, state, tuple(asarray(xp, a, t) for a, t in
                                                 ((x, dtype), (v, dtype), (m, None))), rng=1)
    # padding: extra points with garbage (even NaN) coordinates and features, masked off
    xp_pad = np.concatenate([x, np.full((2, 5, 2), np.nan)], axis=1)
    v_pad = np.concatenate([v, np.full((2, 5, 3), 1e6)], axis=1)
    m_pad = np.concatenate([m, np.zeros((2, 5), bool)], axis=1)
    perm = np.random.default_rng(0).permutation(15)
    tol = 1e-9 if dtype == "float64" else 1e-4
    where_now = np.argsort(perm)[:10]  # new position of original point i
    for xs, vs, ms, pos in ((xp_pad, v_pad, m_pad, np.arange(10)),
                            (xp_pad[:, perm], v_pad[:, perm], m_pad[:, perm], where_now)):
        # lift phases are drawn per point: hand each real point its own draw
        out2, _ = apply_net(net, params, state, (asarray(xp, xs, dtype), asarray(xp, vs, dtype),
                                                 asarray(xp, ms)), rng=_PermutedDraws(1, pos, 15))
        np.testing.assert_allclose(to_numpy(out2), to_numpy(out), atol=tol, rtol=tol)


@pytest.mark.parametrize("nbhd", [5, None], ids=["ball", "dense"])
def test_nan_padding_in_training_mode(xp, nbhd):
    """Training mode (batch statistics over valid pairs) with NaN in the padded points'
    coordinates and features: the outputs and the new state are finite and equal to those with
    finite garbage there (float64, 1e-12) — padding cannot leak into the statistics. (Before the
    lift replaced padded coordinates, NaN embeddings of masked pairs made everything NaN.)"""
    net = small_net(G.SE2(), nbhd=nbhd)
    params, state = net.init(seed=4, dtype="float64", xp=xp)
    x, v, m = make_inputs(2, bs=2, n=10)
    results = []
    for fill in (np.nan, 1e3):
        xs, vs = x.copy(), v.copy()
        xs[~m], vs[~m] = fill, fill
        out, new = apply_net(net, params, state, (asarray(xp, xs, "float64"),
                                                  asarray(xp, vs, "float64"), asarray(xp, m)),
                             train=True, rng=2)
        flat = {k: to_numpy(a) for k, a in lc.nn.module.flatten(new).items()}
        assert np.all(np.isfinite(to_numpy(out))) and all(np.all(np.isfinite(a))
                                                           for a in flat.values())
        results.append((to_numpy(out), flat))
    (o1, s1), (o2, s2) = results
    assert np.abs(o1).max() > 1e-3
    np.testing.assert_allclose(o1, o2, rtol=1e-12, atol=1e-12)
    for key in s1:
        np.testing.assert_allclose(s1[key], s2[key], rtol=1e-12, atol=1e-12, err_msg=key)


class _PermutedDraws(PortableDraws):
    """Per-point draws of the unpadded cloud, moved to each point's position (``positions[i]``)
    in a padded/permuted cloud of n entries, so that each real point keeps its stabilizer phase."""

    def __init__(self, seed, positions, n):
        super().__init__(seed)
        self.positions, self.n = positions, n

    def uniform(self, xp, shape, dtype, device):
        if len(shape) == 3 and shape[1] == self.n:
            base = self.gen.random((shape[0], len(self.positions), shape[2]))
            full = np.zeros(shape)
            full[:, self.positions] = base
            return self._to(xp, full, dtype, device)
        return super().uniform(xp, shape, dtype, device)


def test_edge_cases(xp):
    net = small_net(G.T(2), nbhd=50)  # nbhd > n is clipped
    params, state = net.init(seed=0, dtype="float64", xp=xp)
    x, v, m = make_inputs(2, bs=3, n=6)
    m[2] = False  # an all-masked cloud pools to zeros
    out, _ = apply_net(net, params, state, (asarray(xp, x, "float64"), asarray(xp, v, "float64"),
                                            asarray(xp, m)))
    out = to_numpy(out)
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[2], 0.0)
    ref = small_net(G.T(2), nbhd=6)
    out_ref, _ = apply_net(ref, params, state, (asarray(xp, x, "float64"),
                                                asarray(xp, v, "float64"), asarray(xp, m)))
    np.testing.assert_allclose(out, to_numpy(out_ref), atol=1e-12)
    # a single-point cloud
    out1, _ = apply_net(net, params, state, (asarray(xp, x[:, :1], "float64"),
                                             asarray(xp, v[:, :1], "float64"),
                                             asarray(xp, m[:, :1])))
    # ... gives the outputs of that point padded with masked ones (computed in numpy)
    np_params, np_state = net.init(seed=0, dtype="float64", backend="numpy")
    m1 = m.copy()
    m1[:, 1:] = False
    want1, _ = net.apply(np_params, np_state, (x, v, m1))
    assert to_numpy(out1).shape == (3, 2) and np.abs(want1).max() > 1e-3
    np.testing.assert_allclose(to_numpy(out1), want1, rtol=1e-10, atol=1e-12)


def test_subsampling_edge_cases():
    """FPS picks each valid point before repeating one, never padding; extra queries are masked."""
    net = small_net(G.T(2), ds_frac=0.5, nbhd=3, num_layers=1)
    params, state = net.init(seed=0, dtype="float64", backend="numpy")
    x, v, m = make_inputs(2, bs=2, n=10)
    m[1, 2:] = False  # 2 valid points, 5 queries
    out, _ = net.apply(params, state, (x, v, m), train=True, rng=0)
    assert np.all(np.isfinite(out))
    from lieconv_core.adapter import ReferenceAdapter

    cloud = lc.lift(G.T(2), x, v, m)
    idx = nb.fps(ReferenceAdapter(), np, G.T(2), cloud.elems, None, cloud.mask, 5,
                 np.array([0.3, 0.9]))
    assert len(set(idx[0].tolist())) == 5
    assert set(idx[1].tolist()) <= {0, 1} and set(idx[1, :2].tolist()) == {0, 1}


def _observed_fill(x, r):
    """Mean fraction of points within T(2) distance r: the original's 0.2‖Δx‖ < r."""
    d = 0.2 * np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)
    return (d < r).sum(-1).mean() / x.shape[1]


@pytest.mark.parametrize("target", [0.2, 0.6])
def test_radius_controller_reaches_target_fill(target):
    """The controller r <- r + 0.5 (fill - observed) settles near the target fill. T(2)'s
    distance is the original's 0.2‖Δx‖, so a step of r moves the ball's Euclidean radius 5x as
    far: batches of 16 clouds keep the batch-to-batch noise of the observed fill small enough."""
    group = G.T(2)
    net = small_net(group, fill=target, nbhd=None, num_layers=1, bn=False)
    params, state = net.init(seed=0, dtype="float64", backend="numpy")
    rng = np.random.default_rng(0)
    for step in range(40):
        x = rng.standard_normal((16, 30, 2))
        v = rng.standard_normal((16, 30, 3))
        m = np.ones((16, 30), bool)
        _, state = net.apply(params, state, (x, v, m), train=True, rng=step)
    r = float(state["blocks"]["0"]["conv"]["r_train"])  # the controller's radius
    assert r != 2.0
    x = rng.standard_normal((64, 30, 2))
    assert abs(_observed_fill(x, r) - target) < 0.05
    # eval mode: the radii are frozen
    _, state2 = net.apply(params, state, (x[:16], v, m), train=False)
    for key in ("r", "r_train", "r_count"):
        assert float(state2["blocks"]["0"]["conv"][key]) == float(state["blocks"]["0"]["conv"][key])


def test_knn_option_matches_brute_force():
    net_conv = lc.LieConv(3, 4, G.T(2), nbhd=4, knn=True)
    from lieconv_core.adapter import ReferenceAdapter

    x, v, m = make_inputs(2, bs=2, n=9)
    cloud = lc.lift(G.T(2), x, v, m)
    idx, valid, _ = nb.neighbourhood(
        ReferenceAdapter(), np, G.T(2), (cloud.elems, None, cloud.mask),
        (cloud.elems, None, cloud.mask), 4, 2.0, None, True)
    d = np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)
    d = np.where(m[:, None, :], d, np.inf)
    for b in range(2):
        for i in range(9):
            if m[b, i]:
                assert set(idx[b, i]) == set(np.argsort(d[b, i], kind="stable")[:4])
    assert net_conv.knn


def test_ball_neighbourhood_is_uniform_subset():
    """Random ball neighbourhoods: every in-ball point is chosen with probability k/|ball|."""
    from lieconv_core.adapter import ReferenceAdapter

    x = np.random.default_rng(0).standard_normal((1, 12, 2))
    cloud = lc.lift(G.T(2), x, np.ones((1, 12, 1)), np.ones((1, 12), bool))
    counts = np.zeros(12)
    trials = 3000
    d = np.linalg.norm(x[0, 0] - x[0], axis=-1)
    r = np.sort(d)[8] + 1e-9  # 9 points in the ball of query 0
    draws = PortableDraws(0)
    for _ in range(trials):
        prio = draws.priorities(np, (1, 12), None)
        idx, valid, cnt = nb.neighbourhood(
            ReferenceAdapter(), np, G.T(2), (cloud.elems[:, :1], None, cloud.mask[:, :1]),
            (cloud.elems, None, cloud.mask), 4, r, prio, False)
        assert valid.sum() == 4 and cnt[0, 0] == 9
        counts[idx[0, 0][valid[0, 0]]] += 1
    inball = d < r
    assert counts[~inball].sum() == 0
    freq = counts[inball] / trials
    np.testing.assert_allclose(freq, 4 / 9, atol=0.04)
    assert math.isclose(freq.sum(), 4.0)


@pytest.mark.parametrize("group", [G.T(2), G.SE2()], ids=repr)
@pytest.mark.parametrize("knn", [False, True], ids=["ball", "knn"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train+bn"])
def test_dense_path_matches_indexed_path(monkeypatch, group, knn, train):
    """With k >= n the layer skips the neighbour indices (one (m·16, n) @ (n, c) product per
    cloud); it must give the indexed path's outputs, radius updates and BN statistics (same
    pairs, other summation order: float64 to 1e-12), with padding, lifts and query chunks."""
    net = small_net(group, knn=knn, bn=True)
    params, state = net.init(seed=1, dtype="float64", backend="numpy")
    x, v, m = make_inputs(group.space_dim)
    convs = [blk.conv for blk in net.blocks]
    results = []
    for dense in (True, False):
        monkeypatch.setattr(lc.LieConv, "dense", dense)
        for conv in convs:
            monkeypatch.setattr(conv, "chunk_elems", 3 * 28 * 32)  # several query chunks
        results.append(net.apply(params, state, (x, v, m), train=train, rng=5))
    (out_d, st_d), (out_i, st_i) = results
    assert np.abs(out_i).max() > 1e-3
    np.testing.assert_allclose(out_d, out_i, atol=1e-12, rtol=1e-12)
    flat_d, flat_i = lc.nn.module.flatten(st_d), lc.nn.module.flatten(st_i)
    for key in flat_i:
        np.testing.assert_allclose(flat_d[key], flat_i[key], atol=1e-12, rtol=1e-12,
                                   err_msg=key)
    if not knn and train:  # the radius really moved: the counts took part
        assert float(st_i["blocks"]["0"]["conv"]["r"]) != float(state["blocks"]["0"]["conv"]["r"])


def test_dense_path_is_taken_only_when_every_point_is_a_candidate(monkeypatch):
    """Auto choice: dense exactly when k >= n (a control that the test above compares two
    different code paths)."""
    from lieconv_core.nn import lieconv as lieconv_mod

    calls = []
    orig = lieconv_mod.dense_neighbourhood

    def spy(*args, **kw):
        calls.append(1)
        return orig(*args, **kw)

    monkeypatch.setattr(lieconv_mod, "dense_neighbourhood", spy)
    x, v, m = make_inputs(2)
    for nbhd, expect in ((None, True), (14, True), (13, False)):
        calls.clear()
        net = small_net(G.T(2), nbhd=nbhd)
        params, state = net.init(seed=1, dtype="float64", backend="numpy")
        net.apply(params, state, (x, v, m), rng=5)
        assert bool(calls) == expect, nbhd


@pytest.mark.parametrize("group", [G.SE2(), G.SO3(), G.SE3()], ids=repr)
@pytest.mark.parametrize("nbhd,knn", [(5, False), (6, True), (None, False)],
                         ids=["ball", "knn", "dense"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_shared_pair_logs_match_per_layer_logs(monkeypatch, group, nbhd, knn, train):
    """Without subsampling the layers share one all-pairs log/distance computation
    (LieConv.pairs): same outputs and radius updates as computing them in every layer (float64,
    1e-12), and the all-pairs logs are computed once per forward, not once per layer."""
    from lieconv_core.nn import lieconv as L

    net = small_net(group, nbhd=nbhd, knn=knn, num_layers=3)
    params, state = net.init(seed=1, dtype="float64", backend="numpy")
    x, v, m = make_inputs(group.space_dim)
    calls = []
    log, distance = type(group).pair_log, type(group).feature_distance

    def spy_log(self, xp, u, w):
        calls.append(("log", tuple(np.broadcast_shapes(u.shape, w.shape))))
        return log(self, xp, u, w)

    def spy_distance(self, xp, u, qu, w, qw):  # SE(2) has its own, log-free distance
        calls.append(("distance", tuple(np.broadcast_shapes(u.shape[:-1], w.shape[:-1]))))
        return distance(self, xp, u, qu, w, qw)

    monkeypatch.setattr(type(group), "pair_log", spy_log)
    if "feature_distance" in vars(type(group)):  # (patching an inherited one changes the path)
        monkeypatch.setattr(type(group), "feature_distance", spy_distance)
    results, all_logs, all_work = [], [], []
    for cache_max in (L.PAIR_CACHE_MAX, 0):
        monkeypatch.setattr(L, "PAIR_CACHE_MAX", cache_max)
        calls.clear()
        results.append(net.apply(params, state, (x, v, m), train=train, rng=5))
        n = x.shape[1] * (2 if group.random_lift else 1)
        all_logs.append(sum(1 for kind, s in calls if kind == "log" and s[1:3] == (n, n)))
        all_work.append(sum(1 for _, s in calls if s[1:3] == (n, n)))
    (out_c, st_c), (out_u, st_u) = results
    assert np.abs(out_u).max() > 1e-3
    np.testing.assert_allclose(out_c, out_u, atol=1e-12, rtol=1e-12)
    for key, val in lc.nn.module.flatten(st_u).items():
        np.testing.assert_allclose(lc.nn.module.flatten(st_c)[key], val, atol=1e-12, err_msg=key)
    assert all_logs[0] == 1  # shared: the all-pairs logs once for all three layers
    assert all_work[1] >= 3  # unshared: all-pairs logs or distances in every layer


@pytest.mark.parametrize("group", [G.T(2), G.SO2(), G.SE2(), G.SE3()], ids=repr)
@pytest.mark.parametrize("nbhd,ds", [(5, 1.0), (5, 0.6), (12, 1.0), (None, 1.0)],
                         ids=["ball", "fps+ball", "wide-ball", "dense"])
@pytest.mark.parametrize("train", [False, True], ids=["eval", "train+bn"])
def test_compacted_weight_net_matches_all_slots(monkeypatch, group, nbhd, ds, train):
    """LieConv.compact: the weight net on the valid pairs only (gathered, then put back with
    zeros), and the unused trailing slots dropped, give the outputs and new state (BN statistics,
    radii) of the weight net on every slot — float64 to 1e-12 — on the indexed and dense paths,
    with subsampling, orbit ids (SO(2)), shared pair logs (SE(3) without subsampling), padding
    and query chunks. The compacted path is really taken on every layer (and slots are really
    dropped with the wide ball), and a control that puts the weights back one row off fails."""
    from lieconv_core.nn import lieconv as L

    drop = L._drop_empty_slots
    widths = []

    def spy_drop(xp, idx, mask):
        out = drop(xp, idx, mask)
        widths.append((mask.shape[-1], out[1].shape[-1]))
        return out

    monkeypatch.setattr(L, "_drop_empty_slots", spy_drop)

    net = small_net(group, nbhd=nbhd, ds_frac=ds, fill=0.3, bn=True)
    params, state = net.init(seed=1, dtype="float64", backend="numpy")
    if nbhd == 12:  # small balls: fewer than 12 points in every ball (T(2): ‖Δx‖ < 0.8)
        for blk in state["blocks"].values():
            r = 0.3 if isinstance(group, G.SO2) else 0.8 * group.distance_scale
            blk["conv"]["r"] = blk["conv"]["r_train"] = np.asarray(r)
    x, v, m = make_inputs(group.space_dim)
    for blk in net.blocks:
        monkeypatch.setattr(blk.conv, "chunk_elems", 3 * 28 * 32)  # several query chunks (eval)
    taken = []
    orig = L.LieConv._compaction

    def spy(self, xp, ad, mask):
        out = orig(self, xp, ad, mask)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(L.LieConv, "_compaction", spy)
    results = {}
    for compact in (False, True):
        monkeypatch.setattr(L.LieConv, "compact", compact)
        taken.clear()
        widths.clear()
        results[compact] = net.apply(params, state, (x, v, m), train=train, rng=5)
        assert all(taken) == compact and len(taken) >= 2
    if nbhd == 12:
        assert any(kk < k for k, kk in widths), widths
    (out_c, st_c), (out_f, st_f) = results[True], results[False]
    assert np.abs(out_f).max() > 1e-3
    np.testing.assert_allclose(out_c, out_f, atol=1e-12, rtol=1e-12)
    for key, val in lc.nn.module.flatten(st_f).items():
        np.testing.assert_allclose(lc.nn.module.flatten(st_c)[key], val, atol=1e-12,
                                   rtol=1e-12, err_msg=key)
    expand = L._expand
    monkeypatch.setattr(L, "_expand", lambda xp, w, e, shape: expand(xp, w, (e + 1) % (
        w.shape[0] + 1), shape))
    out_bad, _ = net.apply(params, state, (x, v, m), train=train, rng=5)
    assert np.abs(out_bad - out_f).max() > 1e-6  # far outside the 1e-12 above


def test_compaction_is_automatic_only_for_sparse_slots(monkeypatch):
    """compact=None compacts a layer's pairs when at most COMPACT_MAX_FILL of its slots are valid,
    and never on an adapter that does not allow it (jax: data-dependent shapes)."""
    from lieconv_core.adapter import ReferenceAdapter
    from lieconv_core.nn import lieconv as L

    conv = L.LieConv(4, 4, G.T(2))
    ad = ReferenceAdapter()
    mask = np.zeros((2, 3, 10), dtype=bool)
    mask[..., :8] = True  # 80% valid
    assert conv._compaction(np, ad, mask) is not None
    mask[0, 0, 8] = True  # just above
    assert conv._compaction(np, ad, mask) is None
    conv.compact = True
    sel, expand = conv._compaction(np, ad, mask)
    assert sel.shape == (49,) and np.array_equal(np.reshape(mask, -1)[sel], np.ones(49, bool))
    assert np.array_equal(expand[np.reshape(mask, -1)], np.arange(49))
    assert np.all(expand[~np.reshape(mask, -1)] == 49)
    monkeypatch.setattr(ReferenceAdapter, "compact_pairs", lambda self, x: False)
    assert conv._compaction(np, ad, mask) is None


def test_zero_invalid_skips_its_pass_only_on_fully_valid_masks(monkeypatch):
    """zero_invalid returns x itself when the adapter knows every entry valid (numpy, torch on
    CPU), zeros the invalid rows otherwise, and jax never claims to know; a LieResNet with
    batch norm on fully valid clouds gives bit-identical outputs, BN statistics and input
    gradients (torch) with the shortcut disabled. Control: one invalid point changes them."""
    from lieconv_core.adapter import ReferenceAdapter
    from lieconv_core.nn.layers import zero_invalid

    x = np.arange(12.0).reshape(2, 3, 2)
    full = np.ones((2, 3), dtype=bool)
    assert zero_invalid(np, x, full) is x
    part = full.copy()
    part[1, 2] = False
    got = zero_invalid(np, x, part)
    assert np.all(got[1, 2] == 0) and np.array_equal(got[part], x[part])
    jax_adapter = pytest.importorskip("lieconv_jax.adapter").ADAPTER
    assert jax_adapter.all_true(None, full) is False
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xpt

    from lieconv_core._backend import adapter_for

    xt = torch.from_numpy(x)
    assert zero_invalid(xpt, xt, torch.from_numpy(full)) is xt
    net = lc.LieResNet(chin=2, num_outputs=3, k=16, nbhd=5, num_layers=2, group=G.T(2),
                       fill=0.5, bn=True)
    params, state = net.init(seed=1, dtype="float64", backend="torch")
    gen = np.random.default_rng(2)
    coords = torch.from_numpy(gen.normal(size=(3, 8, 2))).requires_grad_()
    vals = torch.from_numpy(gen.normal(size=(3, 8, 2)))

    def run(mask):
        out, st = net.apply(params, state, (coords, vals, torch.from_numpy(mask)), train=True,
                            rng=4)
        (g,) = torch.autograd.grad(torch.sum(out ** 2), coords)
        return [out.detach(), g] + list(lc.nn.module.flatten(st).values())

    mask = np.ones((3, 8), dtype=bool)
    fast = run(mask)
    monkeypatch.setattr(type(adapter_for(xpt)), "all_true", lambda self, xp, m: False)
    slow = run(mask)
    for a, b in zip(fast, slow):
        assert torch.equal(a, b)
    mask[2, 7] = False
    assert torch.max(torch.abs(run(mask)[0] - slow[0])) > 1e-6
    assert ReferenceAdapter().all_true(np, part) is False


def test_torch_compacted_weight_net_gradients(torch1):
    """torch, float64, training mode: compacted and all-slot weight nets give the same loss
    gradients for every parameter (1e-10 relative) — the gathers' backward (index_add) and the
    mask-free fused batch norm included."""
    import array_api_compat.torch as xpt

    from lieconv_core.nn import lieconv as L
    from lieconv_core.nn.module import tree_leaves

    torch = torch1
    net = small_net(G.SE2(), nbhd=5, fill=0.3, bn=True)
    x, v, m = make_inputs(2)
    inputs = (asarray(xpt, x, "float64"), asarray(xpt, v, "float64"), asarray(xpt, m))
    grads = {}
    for compact in (False, True):
        params, state = net.init(seed=1, dtype="float64", backend="torch")
        leaves = tree_leaves(params)
        for leaf in leaves:
            leaf.requires_grad_(True)
        L.LieConv.compact = compact
        try:
            out, _ = net.apply(params, state, inputs, train=True, rng=5)
        finally:
            L.LieConv.compact = None
        grads[compact] = torch.autograd.grad(torch.sum(out * out), leaves)
    for gc, gf in zip(grads[True], grads[False]):
        torch.testing.assert_close(gc, gf, rtol=1e-10, atol=1e-12)
    assert max(float(torch.abs(g).max()) for g in grads[False]) > 1e-3


def test_masked_batchnorm_matches_torch_batch_norm_on_valid_entries():
    """Training mode: the output on valid entries, and the running statistics, are those of
    torch's batch_norm applied to the valid entries alone (biased variance to normalise,
    unbiased in the running variance, momentum 0.1); invalid entries come out as zeros, and
    eval mode uses the running statistics. The variances here are far above eps, where the
    original's √max(var, eps) is √var: torch's batch_norm with a negligible eps. A control
    that also counts the masked entries (filled with large values) is far off."""
    torch = pytest.importorskip("torch")
    from lieconv_core.nn.layers import masked_batchnorm

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7, 5, 4)) * 2 + 1
    mask = rng.random((3, 7, 5)) < 0.6
    x[~mask] = 1e3  # garbage in padded entries must not matter
    p = {"w": rng.random(4) + 0.5, "b": rng.standard_normal(4)}
    s = {"mean": rng.standard_normal(4), "var": rng.random(4) + 0.5}
    y, new_s = masked_batchnorm(np, p, s, x, mask, True)
    rm, rv = torch.tensor(s["mean"]), torch.tensor(s["var"])
    want = torch.nn.functional.batch_norm(
        torch.tensor(x[mask]), rm, rv, torch.tensor(p["w"]), torch.tensor(p["b"]),
        training=True, momentum=0.1, eps=1e-300).numpy()
    np.testing.assert_allclose(y[mask], want, rtol=1e-10, atol=1e-12)
    assert np.all(y[~mask] == 0)
    np.testing.assert_allclose(new_s["mean"], rm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(new_s["var"], rv.numpy(), rtol=1e-12)
    y_eval, same = masked_batchnorm(np, p, new_s, x, mask, False)
    want_eval = torch.nn.functional.batch_norm(
        torch.tensor(x[mask]), rm, rv, torch.tensor(p["w"]), torch.tensor(p["b"]),
        training=False, eps=1e-300).numpy()
    np.testing.assert_allclose(y_eval[mask], want_eval, rtol=1e-10, atol=1e-12)
    assert same is new_s
    control, _ = masked_batchnorm(np, p, s, x, np.ones_like(mask), True)
    assert np.abs(control[mask] - want).max() > 0.1


def test_masked_batchnorm_clamps_the_variance_at_eps():
    """The original's MaskBatchNormNd divides by √max(var, eps), not torch's √(var + eps): a
    channel with batch variance eps/4 is scaled by 1/√eps (training), a channel with running
    variance below eps likewise (eval), and a channel well above eps by 1/√var exactly. Control:
    torch's convention is >10% off on the near-constant channel."""
    from lieconv_core.nn.layers import BN_EPS, masked_batchnorm

    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 2))
    z = (x[:, 0] - x[:, 0].mean()) / x[:, 0].std()
    x[:, 0] = 3 + 0.5 * np.sqrt(BN_EPS) * z  # batch variance eps/4
    p = {"w": np.array([1.5, 0.5]), "b": np.array([0.1, -0.2])}
    s = {"mean": np.zeros(2), "var": np.array([1e-9, 4.0])}
    y, _ = masked_batchnorm(np, p, s, x, None, True)
    mean, var = x.mean(0), x.var(0)
    assert var[0] < BN_EPS / 2 and var[1] > 0.1
    want = (x - mean) * (p["w"] / np.sqrt([BN_EPS, var[1]])) + p["b"]
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-15)
    torch_conv = (x - mean) * (p["w"] / np.sqrt(var + BN_EPS)) + p["b"]
    assert np.abs(torch_conv[:, 0] - want[:, 0]).max() > 0.1 * np.abs(want[:, 0] - 0.1).max()
    y_eval, _ = masked_batchnorm(np, p, s, x, None, False)
    want_eval = x * (p["w"] / np.sqrt([BN_EPS, 4.0])) + p["b"]
    np.testing.assert_allclose(y_eval, want_eval, rtol=1e-13, atol=1e-15)


def test_fused_bn_swish_clamped_variance_gradients(jax_x64):
    """torch's and jax's fused training-mode bn_swish against the reference composition under
    autograd on a batch with one channel below eps (σ is constant there, so the gradient has no
    x̂ term for it): outputs and gradients for x, w, b to 1e-12."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xpt
    from lieconv_torch.adapter import ADAPTER

    from lieconv_core.adapter import ReferenceAdapter
    from lieconv_core.nn.layers import BN_EPS

    rng = np.random.default_rng(2)
    xn = rng.standard_normal((40, 3))
    xn[:, 1] = 1 + 0.3 * np.sqrt(BN_EPS) * xn[:, 1]
    maskn = rng.random(40) < 0.8
    gn = rng.standard_normal((40, 3))
    pn = {"w": np.array([1.2, 0.7, 0.9]), "b": np.array([0.1, 0.2, -0.3])}
    s = {"mean": torch.zeros(3, dtype=torch.float64), "var": torch.ones(3, dtype=torch.float64)}
    res = []
    for ad in (ReferenceAdapter(), ADAPTER):
        x = torch.tensor(xn, requires_grad=True)
        p = {k: torch.tensor(v, requires_grad=True) for k, v in pn.items()}
        y, _ = ad.bn_swish(xpt, p, s, x, torch.tensor(maskn), True)
        grads = torch.autograd.grad(torch.sum(y * torch.tensor(gn)), (x, p["w"], p["b"]))
        res.append([t.detach().numpy() for t in (y, *grads)])
    for want, got in zip(*res):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    import jax
    import jax.numpy as jnp
    from lieconv_jax.adapter import ADAPTER as JAD

    def loss(x, w, b):
        y, _ = JAD.bn_swish(jnp, {"w": w, "b": b}, {"mean": jnp.zeros(3), "var": jnp.ones(3)},
                            x, jnp.asarray(maskn), True)
        return jnp.sum(y * gn)

    jg = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(xn), jnp.asarray(pn["w"]),
                                          jnp.asarray(pn["b"]))
    for want, got in zip(res[0][1:], jg):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)


def test_torch_eval_bn_swish_matches_the_reference(torch1):
    """torch's eval-mode bn_swish (in-place passes when autograd does not need them) gives the
    reference's numbers (float64, 1e-13), zeros at masked entries even where x is NaN there, the
    reference's gradients when autograd needs them, and mask None; control: other running
    statistics change the output."""
    import array_api_compat.torch as xpt
    from lieconv_torch.adapter import ADAPTER

    from lieconv_core.adapter import ReferenceAdapter

    torch = torch1
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 9, 6, generator=gen, dtype=torch.float64) * 2 + 1
    mask = torch.rand(4, 9, generator=gen) < 0.7
    x[~mask] = float("nan")
    p = {"w": torch.rand(6, generator=gen, dtype=torch.float64) + 0.5,
         "b": torch.randn(6, generator=gen, dtype=torch.float64)}
    s = {"mean": torch.randn(6, generator=gen, dtype=torch.float64),
         "var": torch.rand(6, generator=gen, dtype=torch.float64) + 0.2}
    ref = ReferenceAdapter()
    for m in (mask, None):
        xin = x if m is not None else torch.nan_to_num(x)
        want, _ = ref.bn_swish(xpt, p, s, xin, m, False)
        with torch.no_grad():
            got, s_out = ADAPTER.bn_swish(xpt, p, s, xin, m, False)
        assert s_out is s
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
        if m is not None:
            assert torch.all(got[~mask] == 0) and torch.all(torch.isfinite(got))
    xg = x.clone().requires_grad_()  # NaN at masked entries: their gradient must stay finite
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    grads = []
    for ad in (ref, ADAPTER):
        y, _ = ad.bn_swish(xpt, p, s, xg, mask, False)
        grads.append(torch.autograd.grad(torch.sum(y * g), xg)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-13, atol=1e-13)
    assert torch.all(torch.isfinite(grads[1]))
    other = {"mean": s["mean"] + 0.5, "var": s["var"]}
    with torch.no_grad():
        moved, _ = ADAPTER.bn_swish(xpt, p, other, torch.nan_to_num(x), None, False)
        base, _ = ADAPTER.bn_swish(xpt, p, s, torch.nan_to_num(x), None, False)
    assert torch.max(torch.abs(moved - base)) > 0.1


def test_torch_fused_bn_swish_matches_the_reference_composition():
    """torch's training-mode bn_swish (one autograd op, hand-written backward) against the
    reference swish(masked_batchnorm(·)) under autograd, float64: outputs, running statistics and
    the gradients for x, w and b to 1e-12; gradcheck and gradgradcheck of the op (double backward
    differentiates the composition); a cloud with no valid entry gives zeros and zero gradients.
    Control: the fused op with a different mask is far off."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as xpt
    from lieconv_torch.adapter import ADAPTER, _MaskedBNSwish

    from lieconv_core.adapter import ReferenceAdapter

    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(3, 7, 5, 4, generator=gen, dtype=torch.float64) * 2 + 1).requires_grad_()
    mask = torch.rand(3, 7, 5, generator=gen) < 0.6
    p = {"w": (torch.rand(4, generator=gen, dtype=torch.float64) + 0.5).requires_grad_(),
         "b": torch.randn(4, generator=gen, dtype=torch.float64).requires_grad_()}
    s = {"mean": torch.zeros(4, dtype=torch.float64), "var": torch.ones(4, dtype=torch.float64)}
    g = torch.randn(3, 7, 5, 4, generator=gen, dtype=torch.float64)
    outs = []
    for ad, m in ((ReferenceAdapter(), mask), (ADAPTER, mask), (ADAPTER, ~mask)):
        y, new_s = ad.bn_swish(xpt, p, s, x, m, True)
        grads = torch.autograd.grad(torch.sum(y * g), (x, p["w"], p["b"]))
        outs.append([t.detach() for t in (y, new_s["mean"], new_s["var"], *grads)])
    for name, want, got, _ in zip(("y", "mean", "var", "dx", "dw", "db"), *outs):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)
    assert torch.max(torch.abs(outs[2][0] - outs[0][0])) > 0.1  # control: another mask
    # mask None (every entry valid; the compacted weight net) against the reference
    nones = []
    for ad in (ReferenceAdapter(), ADAPTER):
        y, new_s = ad.bn_swish(xpt, p, s, x, None, True)
        grads = torch.autograd.grad(torch.sum(y * g), (x, p["w"], p["b"]))
        nones.append([t.detach() for t in (y, new_s["mean"], new_s["var"], *grads)])
    for name, want, got in zip(("y", "mean", "var", "dx", "dw", "db"), *nones):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12, msg=name)
    assert torch.max(torch.abs(nones[1][0] - outs[1][0])) > 0.1  # not the masked result
    m = torch.reshape(mask, (-1, 1)).to(torch.float64)
    xf = x.detach().reshape(-1, 4)[:40].requires_grad_()

    def op(a, w, b):
        return _MaskedBNSwish.apply(a, w, b, m[:40], 1e-5)[0]

    assert torch.autograd.gradcheck(op, (xf, p["w"], p["b"]))
    assert torch.autograd.gradgradcheck(op, (xf, p["w"], p["b"]))

    def op_all(a, w, b):
        return _MaskedBNSwish.apply(a, w, b, None, 1e-5)[0]

    assert torch.autograd.gradcheck(op_all, (xf, p["w"], p["b"]))
    assert torch.autograd.gradgradcheck(op_all, (xf, p["w"], p["b"]))
    y0, _ = ADAPTER.bn_swish(xpt, p, s, x, torch.zeros_like(mask), True)
    (gx,) = torch.autograd.grad(torch.sum(y0 * g), x)
    assert torch.all(y0 == 0) and torch.all(gx == 0)
