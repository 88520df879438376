"""Lifts: every sample maps the orbit's reference point to its input point, and the stabilizer
samples have the distribution the lift prescribes (Haar / uniform), with controls that show the
statistical tests can fail."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import lieconv_core as lc
from lieconv_core import groups as G
from lieconv_core.groups.so3 import align_e1
from lieconv_core.random import PortableDraws

from .conftest import asarray, to_numpy


def reconstruct(group, elems: np.ndarray, q: np.ndarray | None) -> np.ndarray:
    """u·o for lifted elements (bs, N, E) (numpy): the point each element stands for."""
    if isinstance(group, G.Subgroup):
        group = group.parent
    if isinstance(group, G.T):
        return elems
    if isinstance(group, G.SO2):
        return q * np.concatenate([np.cos(elems), np.sin(elems)], axis=-1)
    if isinstance(group, G.RxSO2):
        r = np.exp(elems[..., :1])
        return r * np.concatenate([np.cos(elems[..., 1:]), np.sin(elems[..., 1:])], axis=-1)
    if isinstance(group, G.SE2):
        return elems.reshape(*elems.shape[:-1], 3, 3)[..., :2, 2]
    if isinstance(group, G.SE3):
        return elems.reshape(*elems.shape[:-1], 4, 4)[..., :3, 3]
    if isinstance(group, G.SO3):
        R = elems.reshape(*elems.shape[:-1], 3, 3)
        return R[..., :, 0] * q  # R (r e1)
    raise AssertionError(group)


LIFT_GROUPS = [G.T(2), G.T(3), G.Tx(), G.SO2(), G.RxSO2(), G.Rx(), G.SE2(), G.SO3(), G.SE3()]


@pytest.mark.parametrize("group", LIFT_GROUPS, ids=repr)
def test_every_sample_maps_origin_to_point(group, xp, dtype):
    rng = np.random.default_rng(0)
    ns = 3
    x = rng.standard_normal((2, 7, group.space_dim)) * 2
    x[0, 0] = 0.0 if not group.excludes_origin else x[0, 0]  # a point at the origin where defined
    values = rng.standard_normal((2, 7, 4))
    mask = np.ones((2, 7), dtype=bool)
    cloud = lc.lift(group, asarray(xp, x, dtype), asarray(xp, values, dtype), asarray(xp, mask),
                    nsamples=ns, rng=3)
    elems = to_numpy(cloud.elems)
    q = None if cloud.q is None else to_numpy(cloud.q)
    assert elems.shape == (2, 7 * ns, group.elem_dim)
    # point-major: entry i*ns + s is sample s of point i
    want = np.repeat(x, ns, axis=1)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(reconstruct(group, elems, q), want, atol=tol * 10)
    np.testing.assert_array_equal(to_numpy(cloud.values), np.repeat(values, ns, axis=1)
                                  .astype(dtype))
    np.testing.assert_array_equal(to_numpy(cloud.mask), np.repeat(mask, ns, axis=1))


def _rotation_angles(R: np.ndarray) -> np.ndarray:
    return np.arccos(np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1, 1))


def _haar_angle_cdf(theta):
    # the angle of a Haar-random rotation has density (1 - cos θ)/π on [0, π]
    return (theta - np.sin(theta)) / math.pi


def test_se3_stabilizer_is_haar():
    x = np.random.default_rng(0).standard_normal((4, 250, 3))
    elems, _ = G.SE3().lift(np, x, 4, PortableDraws(1))
    R = elems.reshape(-1, 4, 4)[:, :3, :3]
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape),
                               atol=1e-12)
    assert stats.kstest(_rotation_angles(R), _haar_angle_cdf).pvalue > 1e-3
    # axes uniform on the sphere too: each coordinate of the axis is U(-1, 1) for a uniform axis
    w = G.SO3().log(np, R)
    axis = w / np.linalg.norm(w, axis=-1, keepdims=True)
    assert stats.kstest(axis[:, 2], stats.uniform(-1, 2).cdf).pvalue > 1e-3


def test_haar_test_rejects_non_haar_control():
    """Control: rotations with a uniform angle on [0, π] (not Haar) fail the same test."""
    rng = np.random.default_rng(0)
    axis = rng.standard_normal((4000, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    w = axis * rng.uniform(0, math.pi, (4000, 1))
    R = G.SO3().exp(np, w)
    assert stats.kstest(_rotation_angles(R), _haar_angle_cdf).pvalue < 1e-3


def test_se2_stabilizer_angles_uniform_and_equally_spaced():
    ns = 3
    x = np.random.default_rng(0).standard_normal((4, 500, 2))
    elems, _ = G.SE2().lift(np, x, ns, PortableDraws(2))
    M = elems.reshape(4, 500, ns, 3, 3)
    phi = np.arctan2(M[..., 1, 0], M[..., 0, 0])
    uniform = stats.uniform(-math.pi, 2 * math.pi).cdf
    assert stats.kstest(phi.ravel(), uniform).pvalue > 1e-3
    # each point's random phase (its first sample) is uniform by itself: equally spaced samples
    # would make the union of the samples look nearly uniform even for a skewed phase
    assert stats.kstest(phi[..., 0].ravel(), uniform).pvalue > 1e-3
    gaps = (np.diff(phi, axis=-1) + math.pi) % (2 * math.pi) - math.pi
    np.testing.assert_allclose(np.abs(gaps), 2 * math.pi / ns, atol=1e-12)


def _so3_stabilizer_angles(elems: np.ndarray, x: np.ndarray, ns: int) -> np.ndarray:
    R = elems.reshape(*x.shape[:2], ns, 3, 3)
    n = x / np.linalg.norm(x, axis=-1, keepdims=True)
    Rp = align_e1(np, n)[:, :, None]
    S = np.swapaxes(Rp, -1, -2) @ R  # a rotation about e1 by the stabilizer angle
    np.testing.assert_allclose(S[..., :, 0], np.broadcast_to([1.0, 0, 0], S.shape[:-1]),
                               atol=1e-10)
    return np.arctan2(S[..., 2, 1], S[..., 1, 1]) % (2 * math.pi)


def test_so3_stabilizer_angle_uniform():
    """Uniform on [0, 2π) (the original's sin²(θ/2) law breaks equivariance)."""
    ns = 2
    x = np.random.default_rng(0).standard_normal((4, 500, 3))
    elems, q = G.SO3().lift(np, x, ns, PortableDraws(3))
    np.testing.assert_allclose(q[..., 0], np.repeat(np.linalg.norm(x, axis=-1), ns, axis=1))
    theta = _so3_stabilizer_angles(elems, x, ns)
    assert stats.kstest(theta.ravel(), stats.uniform(0, 2 * math.pi).cdf).pvalue > 1e-3


def test_uniformity_test_rejects_original_sin2_law():
    """Control: angles drawn ∝ sin²(θ/2) (the original's stabilizer law) fail the same test."""
    rng = np.random.default_rng(0)
    # rejection sampling of the density ∝ sin²(θ/2) on [0, 2π)
    cand = rng.uniform(0, 2 * math.pi, 20000)
    theta = cand[rng.uniform(0, 1, 20000) < np.sin(cand / 2) ** 2][:4000]
    assert stats.kstest(theta, stats.uniform(0, 2 * math.pi).cdf).pvalue < 1e-3


def test_align_e1_handles_both_hemispheres_and_poles():
    n = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [-0.6, 0.8, 0], [-1.0, 1e-12, 0]])
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    R = align_e1(np, n)
    np.testing.assert_allclose(R[..., :, 0], n, atol=1e-12)
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
