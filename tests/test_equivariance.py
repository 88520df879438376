"""End-to-end equivariance for every group: a LieResNet's output is invariant under a random group
element, on every installed backend.

Each case checks, in one batched forward pass (float64, relative 1e-9):

* the element really moves the points (median displacement at least 0.1 of the cloud's spread),
  so an identity ``random_element`` or a no-op ``act_on_points`` fails;
* ``act_on_elements`` agrees with ``act_on_points`` through the lift: the point each transformed
  lifted element stands for (read off the element by :func:`point_of`, an independent reference)
  is g·x, so a no-op or wrong ``act_on_elements`` fails;
* the output for g·x equals the output for x: exactly with the same draws for the deterministic
  lifts, and for the random lifts (SE(2), SO(3), SE(3)) on g·(lift of x), which the previous check
  shows is a lift of g·x;
* control: the same network on a deliberately wrong action (g·x stretched along the first axis,
  which no group here contains) changes the output by far more than the tolerance.

The random lifts are also checked in distribution (two-sample KS over lift draws) for SO(3) and
SE(3), with a broken lift as control (SE(2) is covered in test_network.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import lieconv_core as lc
from lieconv_core import groups as G
from lieconv_core._backend import backend_name
from lieconv_core.random import PortableDraws

from .conftest import asarray, rel_err, to_numpy

GROUPS = [G.T(2), G.T(3), G.SO2(), G.RxSO2(), G.SE2(), G.SO3(), G.SE3(), G.Tx(), G.Ty(),
          G.Rx()]
#: relative tolerance of the float64 invariance checks; the controls must exceed it by far
TOL = 1e-9
CONTROL = 1e-6


def make_inputs(d: int, bs: int = 2, n: int = 9, chin: int = 3, seed: int = 0):
    """Points (bs, n, d) away from the origin, features (bs, n, chin), mask (bs, n), one padded."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((bs, n, d)) * 1.5
    x += np.sign(x) * 0.2  # RxSO(2) excludes the origin; keep every point well away from it
    v = rng.standard_normal((bs, n, chin))
    m = np.ones((bs, n), dtype=bool)
    m[-1, -2:] = False
    return x, v, m


def small_net(group: G.Group, num_layers: int = 2) -> lc.LieResNet:
    """A tiny LieResNet (k = 16, all points as neighbours, two lift samples for random lifts)."""
    return lc.LieResNet(chin=3, num_outputs=2, k=16, num_layers=num_layers, nbhd=None, fill=0.5,
                        liftsamples=2 if group.random_lift else 1, group=group)


def point_of(group: G.Group, elems: np.ndarray, q: np.ndarray | None) -> np.ndarray:
    """The point of R^d a lifted element stands for, from its coordinates: (..., E), (..., q_dim)
    -> (..., d). Written from each group's element layout, independently of its methods."""
    parent = group.parent if isinstance(group, G.Subgroup) else group
    if isinstance(parent, (G.T, G.Trivial)):
        return elems
    if isinstance(parent, G.SO2):
        return q[..., :1] * np.concatenate([np.cos(elems), np.sin(elems)], axis=-1)
    if isinstance(parent, G.RxSO2):
        r = np.exp(elems[..., :1])
        return r * np.stack([np.cos(elems[..., 1]), np.sin(elems[..., 1])], axis=-1)
    if isinstance(parent, G.SE2):
        return elems[..., [2, 5]]
    if isinstance(parent, G.SO3):
        return q[..., :1] * elems[..., [0, 3, 6]]  # R e1 = x / |x|
    if isinstance(parent, G.SE3):
        return elems[..., [3, 7, 11]]
    raise AssertionError(group)


def random_element(group: G.Group, bs: int, seed: int = 14) -> np.ndarray:
    """(bs, lie_dim) float64 elements from the group's own sampler."""
    return group.random_element(np, (bs,), PortableDraws(seed), np.float64, None)


def stretch(x: np.ndarray) -> np.ndarray:
    """A map that is in none of the groups: scale the first coordinate by 1.5."""
    y = x.copy()
    y[..., 0] *= 1.5
    return y


def assert_moves(x: np.ndarray, gx: np.ndarray, m: np.ndarray) -> None:
    """The transform moved the valid points of every cloud by a non-trivial amount (median
    displacement over a tenth of the mean distance to the centroid): x, gx (bs, n, d), m (bs, n)."""
    for xb, gb, mb in zip(x, gx, m):
        moved = np.median(np.linalg.norm(gb - xb, axis=-1)[mb])
        spread = np.linalg.norm(xb - xb[mb].mean(axis=0), axis=-1)[mb].mean()
        assert moved > 0.1 * spread, (moved, spread)


def lifted_batch(group, x, v, m, g):
    """Lift x once (draws from seed 4) and return the numpy cloud of three batches stacked:
    lift(x), g·lift(x), lift(stretch(g·x)) (same draws), and the numpy lift of x."""
    ns = 2 if group.random_lift else 1
    cloud = lc.lift(group, x, v, m, nsamples=ns, rng=4)
    moved = group.act_on_elements(np, g, cloud.elems)
    wrong = lc.lift(group, stretch(group.act_on_points(np, g, x)), v, m, nsamples=ns, rng=4)
    cat = lambda *a: None if a[0] is None else np.concatenate(a, axis=0)  # noqa: E731
    batch = lc.Cloud(cat(cloud.elems, moved, wrong.elems), cat(cloud.q, cloud.q, wrong.q),
                     cat(cloud.values, cloud.values, wrong.values),
                     cat(cloud.mask, cloud.mask, wrong.mask))
    return batch, cloud, moved


def run_lifted(net, params, state, cloud, xp, rng=5):
    """net.apply_lifted in eval mode on backend ``xp`` (jitted for jax): -> numpy outputs."""
    arrays = [None if a is None else asarray(xp, a, None if a.dtype == bool else "float64")
              for a in cloud]
    cloud = lc.Cloud(*arrays)
    if backend_name(xp) == "jax":
        import jax

        fn = jax.jit(lambda p, s, c: net.apply_lifted(p, s, c, rng=rng)[0])
        return to_numpy(fn(params, state, cloud))
    return to_numpy(net.apply_lifted(params, state, cloud, rng=rng)[0])


@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_network_output_invariant(group, xp):
    """The output on g·x (or on g·lift(x)) equals the output on x, g moves the points, the
    transformed lifted elements stand for g·x, and a wrong action changes the output."""
    x, v, m = make_inputs(group.space_dim)
    g = random_element(group, x.shape[0])
    gx = group.act_on_points(np, g, x)
    assert_moves(x, gx, m)
    batch, cloud, moved = lifted_batch(group, x, v, m, g)
    ns = cloud.elems.shape[1] // x.shape[1]
    want = np.repeat(gx, ns, axis=1)
    valid = np.repeat(m, ns, axis=1)
    np.testing.assert_allclose(point_of(group, moved, cloud.q)[valid], want[valid],
                               atol=1e-9 * np.abs(want).max())
    net = small_net(group)
    params, state = net.init(seed=1, dtype="float64", xp=xp)
    out = run_lifted(net, params, state, batch, xp)
    base, same, wrong = np.split(out, 3, axis=0)
    assert np.abs(base).max() > 1e-3
    assert rel_err(same, base) <= TOL
    assert rel_err(wrong, base) > CONTROL


@pytest.mark.parametrize("group", [G.T(2), G.T(3), G.SO2(), G.RxSO2(), G.Tx(), G.Ty(), G.Rx()],
                         ids=repr)
def test_apply_on_transformed_points_is_invariant(group):
    """Deterministic lifts, the whole pipeline from points (lift included, with FPS and random
    ball neighbourhoods, training mode): apply(g·x) = apply(x) with the same draws; control: the
    stretched g·x does not give the same output."""
    x, v, m = make_inputs(group.space_dim, n=12)
    g = random_element(group, x.shape[0])
    gx = group.act_on_points(np, g, x)
    assert_moves(x, gx, m)
    net = lc.LieResNet(chin=3, num_outputs=2, k=16, num_layers=2, nbhd=5, ds_frac=0.7, fill=0.5,
                       group=group)
    params, state = net.init(seed=2, dtype="float64", backend="numpy")
    outs = [net.apply(params, state, (pts, v, m), train=True, rng=3)[0]
            for pts in (x, gx, stretch(gx))]
    assert np.abs(outs[0]).max() > 1e-3
    assert rel_err(outs[1], outs[0]) <= TOL
    assert rel_err(outs[2], outs[0]) > CONTROL


@pytest.mark.parametrize("d", [2, 3])
def test_trivial_group_network_is_not_translation_invariant(d, xp):
    """Trivial(d): its only element leaves the output unchanged, and its network is the
    non-equivariant control: translating every point changes the output."""
    group = G.Trivial(d)
    x, v, m = make_inputs(d)
    g = random_element(group, x.shape[0])
    assert g.shape == (x.shape[0], 0)
    np.testing.assert_array_equal(group.act_on_points(np, g, x), x)
    shifted = x + np.arange(1, d + 1) * 0.7
    cloud = lc.Cloud(np.concatenate([x, group.act_on_points(np, g, x), shifted]), None,
                     np.concatenate([v, v, v]), np.concatenate([m, m, m]))
    net = small_net(group)
    params, state = net.init(seed=1, dtype="float64", xp=xp)
    base, same, moved = np.split(run_lifted(net, params, state, cloud, xp), 3, axis=0)
    assert rel_err(same, base) <= TOL
    assert rel_err(moved, base) > CONTROL


class _FixedStabilizerSO3(G.SO3):
    """A broken SO(3) lift: stabilizer angle always 0, so the lift depends on the frame of
    align_e1 and is not equivariant in distribution."""

    def lift(self, xp, coords, nsamples, draws):
        return super().lift(xp, coords, nsamples, _ZeroDraws(draws))


class _IdentityRotationSE3(G.SE3):
    """A broken SE(3) lift: every sampled rotation is the identity (a T(3) lift in disguise)."""

    def lift(self, xp, coords, nsamples, draws):
        elems, q = super().lift(xp, coords, nsamples, draws)
        bs, n, _ = elems.shape
        eye = np.broadcast_to(np.eye(3), (bs, n, 3, 3))
        M = np.reshape(elems, (bs, n, 4, 4)).copy()
        M[..., :3, :3] = eye
        return np.reshape(M, (bs, n, 16)), q


class _ZeroDraws:
    """Draws whose uniforms are all 0 (normals from ``base``)."""

    def __init__(self, base):
        self.base = base

    def uniform(self, xp, shape, dtype, device):
        return xp.zeros(shape, dtype=dtype)

    def normal(self, xp, shape, dtype, device):
        return self.base.normal(xp, shape, dtype, device)


def _outputs_over_draws(group, x, v, m, seeds):
    """The first output of a one-layer network over lift draws: (len(seeds),)."""
    net = lc.LieResNet(chin=3, num_outputs=1, k=8, num_layers=1, nbhd=None, liftsamples=1,
                       group=group)
    params, state = net.init(seed=3, dtype="float64", backend="numpy")
    return np.array([net.apply(params, state, (x, v, m), rng=s)[0][0, 0] for s in seeds])


@pytest.mark.parametrize("group, broken", [(G.SO3(), _FixedStabilizerSO3()),
                                           (G.SE3(), _IdentityRotationSE3())], ids=["SO3", "SE3"])
def test_random_lift_invariant_in_distribution(group, broken):
    """apply(x) and apply(g·x) from points, over independent lift draws: same distribution (KS
    p > 1e-3); control: a broken lift is detectably not invariant (p < 1e-3)."""
    x, v, m = make_inputs(3, bs=1, n=6)
    m[:] = True
    g = random_element(group, 1, seed=3)
    gx = group.act_on_points(np, g, x)
    assert_moves(x, gx, m)
    seeds_a, seeds_b = range(0, 120), range(1000, 1120)
    a = _outputs_over_draws(group, x, v, m, seeds_a)
    b = _outputs_over_draws(group, gx, v, m, seeds_b)
    assert a.std() > 1e-6  # the output really depends on the lift draws
    assert stats.ks_2samp(a, b).pvalue > 1e-3
    a = _outputs_over_draws(broken, x, v, m, seeds_a)
    b = _outputs_over_draws(broken, gx, v, m, seeds_b)
    assert stats.ks_2samp(a, b).pvalue < 1e-3
