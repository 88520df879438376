"""The spring-system simulator: constants, conservation, RK4 order, splits."""

from __future__ import annotations

import numpy as np
import pytest

from lieconv_core.data import springs as S


def test_draws_follow_the_spec():
    z0, sys = S.draw_systems(4000, seed=3)
    m, k = sys[..., 0], sys[..., 1]
    assert z0.shape == (4000, 2, 6, 2) and sys.shape == (4000, 6, 2)
    assert 0.1 <= m.min() and m.max() <= 3.1 and 0 <= k.min() and k.max() <= 5
    assert abs(m.mean() - 1.6) < 0.03 and abs(k.mean() - 2.5) < 0.05
    assert abs(z0[:, 0].std() - 0.4) < 0.01 and abs(z0[:, 1].std() - 0.6) < 0.01
    # same seed, same systems
    np.testing.assert_array_equal(S.draw_systems(10, seed=3)[0], S.draw_systems(10, seed=3)[0])


def test_momentum_centring_options():
    z_none, _ = S.draw_systems(500, seed=1, center="none")
    z_sys, _ = S.draw_systems(500, seed=1, center="system")
    z_ds, _ = S.draw_systems(500, seed=1, center="dataset")
    assert np.abs(S.linear_momentum(z_none)).mean() > 0.5  # default: each system has net momentum
    np.testing.assert_allclose(S.linear_momentum(z_sys), 0, atol=1e-12)
    np.testing.assert_allclose(z_ds[:, 1].mean(axis=0), 0, atol=1e-12)  # original: systems axis
    assert np.abs(S.linear_momentum(z_ds)).mean() > 0.5
    np.testing.assert_array_equal(z_none[:, 0], z_sys[:, 0])
    with pytest.raises(ValueError, match="center"):
        S.draw_systems(3, center="mean")


def test_vector_field_is_the_symplectic_gradient_of_H():
    z, sys = S.draw_systems(3, seed=2)
    f = S.vector_field(z, sys)
    eps, grad = 1e-6, np.zeros_like(z)
    for idx in np.ndindex(z.shape[1:]):
        dz = np.zeros_like(z)
        dz[(slice(None), *idx)] = eps
        grad[(slice(None), *idx)] = (S.energy(z + dz, sys) - S.energy(z - dz, sys)) / (2 * eps)
    np.testing.assert_allclose(f[:, 0], grad[:, 1], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(f[:, 1], -grad[:, 0], rtol=1e-6, atol=1e-6)


def test_simulator_conserves_energy_and_momenta_within_the_rk4_bound():
    z0, sys = S.draw_systems(100, seed=5)
    t = S.time_grid()
    zs = S.simulate(z0, sys, t)
    zs2 = S.simulate(z0, sys, t, substeps=2)
    assert zs.shape == (100, 500, 2, 6, 2)
    P = S.linear_momentum(zs)
    np.testing.assert_allclose(P, P[:, :1].repeat(500, axis=1), atol=1e-12)  # linear invariant
    def drift(zz, x):
        return np.max(np.abs(x - x[:, :1]), axis=1) / np.abs(x[:, 0])

    e1, e2 = drift(zs, S.energy(zs, sys[:, None])), drift(zs2, S.energy(zs2, sys[:, None]))
    assert np.median(e1) < 1e-4 and e1.max() < 5e-2
    # 4th order: halving the step cuts the error by ~16 (>= 8 allowing for the stiffest systems)
    assert np.median(e1 / e2) > 12
    L1, L2 = S.angular_momentum(zs), S.angular_momentum(zs2)
    l1, l2 = np.max(np.abs(L1 - L1[:, :1]), axis=1), np.max(np.abs(L2 - L2[:, :1]), axis=1)
    assert np.median(l1) < 1e-4 and np.median(l1 / l2) > 8
    # against a 4x finer solution the trajectory error is small
    zs4 = S.simulate(z0[:10], sys[:10], t, substeps=4)
    assert np.median(np.abs(zs[:10] - zs4).max(axis=(1, 2, 3, 4))) < 1e-3


def test_recorded_steps_equal_the_full_trajectory():
    """``record`` keeps only the requested steps (any order, repeats, per system) of the same
    vectorised integration: bit for bit the full trajectory's entries. (Its speed is a benchmark
    question, not a test's.)"""
    z0, sys = S.draw_systems(6, seed=4)
    t = S.time_grid()[:40]
    full = S.simulate(z0, sys, t)
    record = np.random.default_rng(0).integers(0, 40, size=(6, 5))
    record[:, 0] = 39
    got = S.simulate(z0, sys, t, record=record)
    assert got.shape == (6, 5, 2, 6, 2)
    np.testing.assert_array_equal(got, full[np.arange(6)[:, None], record])
    assert np.abs(got[:, 0] - z0).max() > 1e-3  # the systems really moved


def test_rollout_trajectories_take_steps_of_the_data_grid():
    """A short rollout is the beginning of the long one (the same step as the data, not a coarser
    grid over the same time), and a rollout longer than the data continues its grid."""
    long_z, sys, long_t = S.test_trajectories(2, n_steps=40)
    short_z, _, short_t = S.test_trajectories(2, n_steps=8)
    np.testing.assert_array_equal(short_t, S.time_grid()[:8])
    np.testing.assert_allclose(short_z, long_z[:, :8], rtol=0, atol=1e-12)
    _, _, t = S.test_trajectories(1, n_steps=S.N_STEPS + 5)
    np.testing.assert_allclose(np.diff(t), S.T_END / (S.N_STEPS - 1), rtol=1e-12)
    # control: the old grid over the whole time span is much coarser
    assert not np.allclose(short_t, S.time_grid(8))


def test_splits_are_fixed_random_chunks_of_the_ground_truth():
    sp = S.make_splits(n_train=30, n_val=5, n_test=7, seed=0)
    assert [len(sp[k]) for k in ("train", "val", "test")] == [30, 5, 7]
    assert sp["train"].z.shape == (30, 5, 2, 6, 2)
    np.testing.assert_allclose(sp["train"].ts, S.time_grid()[:5])
    # chunk == the full trajectory at its start
    z0, sys = S.draw_systems(S.N_SYSTEMS, seed=0)
    ids = S.split_indices(30, 5, 7)["test"]
    full = S.simulate(z0[ids], sys[ids])
    st = sp["test"].start
    np.testing.assert_array_equal(full[np.arange(7)[:, None], st[:, None] + np.arange(5)],
                                  sp["test"].z)
    np.testing.assert_array_equal(sys[ids], sp["test"].sys)
    assert len(np.unique(st)) > 1 and st.max() <= 495
    # smaller training sets are nested; val/test do not depend on n_train
    sp2 = S.make_splits(n_train=10, n_val=5, n_test=7, seed=0)
    np.testing.assert_array_equal(sp2["train"].z, sp["train"].z[:10])
    np.testing.assert_array_equal(sp2["test"].z, sp["test"].z)
    sets = [set(v.tolist()) for v in S.split_indices().values()]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert [len(s) for s in sets] == [3000, 200, 2000]


def test_bad_inputs():
    z0, sys = S.draw_systems(2)
    z0[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        S.simulate(z0, sys)
    with pytest.raises(ValueError, match="n_train"):
        S.split_indices(n_train=5000)


def test_conserved_quantities_on_torch_match_numpy():
    torch = pytest.importorskip("torch")
    z, sys = S.draw_systems(4, seed=1)
    zt, st = torch.tensor(z), torch.tensor(sys)
    np.testing.assert_allclose(S.energy(zt, st).numpy(), S.energy(z, sys), rtol=1e-14)
    np.testing.assert_allclose(S.angular_momentum(zt).numpy(), S.angular_momentum(z), rtol=1e-14)
