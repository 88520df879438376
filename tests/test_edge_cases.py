"""Library edge cases (issue 21): empty batches and empty clouds give empty / zero outputs,
mask=None means every point is valid, and coordinates too large for finite squared distances
are a ValueError naming coords."""

from __future__ import annotations

import numpy as np
import pytest

from lieconv_core.cloud import lift
from lieconv_core.groups import SE2, T
from lieconv_core.nn import LieConv, LieResNet

from .conftest import asarray, to_numpy


def _model(group, pool=True):
    return LieResNet(1, 3, k=16, nbhd=8, ds_frac=[1.0, 0.5], num_layers=2, group=group,
                     liftsamples=2, pool=pool)


def _run(xp, model, coords, values, mask, train=False):
    params, state = model.init(0, "float64", xp=xp)
    inputs = (asarray(xp, coords, "float64"), asarray(xp, values, "float64"),
              None if mask is None else asarray(xp, mask))
    out, new_state = model.apply(params, state, inputs, train=train, rng=0)
    return to_numpy(out), new_state


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("group", [T(2), SE2()], ids=repr)
def test_empty_batch_gives_empty_output(xp, group, train):
    out, _ = _run(xp, _model(group), np.zeros((0, 5, 2)), np.zeros((0, 5, 1)),
                  np.zeros((0, 5), bool), train)
    assert out.shape == (0, 3)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("group", [T(2), SE2()], ids=repr)
def test_empty_clouds_pool_to_zeros(xp, group, train):
    """n = 0: zeros, as an all-padding cloud gives; unpooled: (bs, 0, outputs)."""
    args = (np.zeros((2, 0, 2)), np.zeros((2, 0, 1)), np.zeros((2, 0), bool), train)
    out, _ = _run(xp, _model(group), *args)
    assert out.shape == (2, 3) and not out.any()
    assert _run(xp, _model(group, pool=False), *args)[0].shape == (2, 0, 3)


@pytest.mark.parametrize("n", [0, 5])
def test_layer_on_empty_input(xp, n):
    """LieConv on a lifted cloud with no entries: the query cloud, values (bs, m, chout)."""
    bs = 0 if n else 2
    coords = asarray(xp, np.zeros((bs, n, 2)), "float64")
    cloud = lift(SE2(), coords, asarray(xp, np.zeros((bs, n, 4)), "float64"),
                 asarray(xp, np.ones((bs, n), bool)), 2, 0)
    conv = LieConv(4, 6, SE2(), nbhd=3, ds_frac=0.5)
    params, state = conv.init(0, "float64", xp=xp)
    out, _ = conv.forward(params, state, cloud)
    assert tuple(out.values.shape) == (bs, conv.num_queries(2 * n), 6)
    assert tuple(out.mask.shape) == (bs, conv.num_queries(2 * n))


def test_mask_none_means_every_point_valid(xp):
    gen = np.random.default_rng(0)
    coords, values = gen.normal(size=(2, 7, 2)), gen.normal(size=(2, 7, 1))
    out_none, _ = _run(xp, _model(SE2()), coords, values, None)
    out_ones, _ = _run(xp, _model(SE2()), coords, values, np.ones((2, 7), bool))
    np.testing.assert_array_equal(out_none, out_ones)
    cloud = lift(SE2(), asarray(xp, coords, "float64"), asarray(xp, values, "float64"), None)
    assert to_numpy(cloud.mask).all() and tuple(cloud.mask.shape) == (2, 7)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_huge_coordinates_are_a_valueerror(dtype):
    """1e300 (float64) / 1e30 (float32) would overflow the squared distances: every output the
    same. Padded points may hold anything."""
    import array_api_compat.numpy as npx

    coords = np.random.default_rng(0).normal(size=(2, 6, 2)) * (1e300 if dtype == "float64"
                                                                else 1e30)
    mask = np.ones((2, 6), bool)
    model = _model(T(2))
    params, state = model.init(0, dtype, xp=npx)
    inputs = (coords.astype(dtype), np.ones((2, 6, 1), dtype), mask)
    with pytest.raises(ValueError, match="coords must have magnitude"):
        model.apply(params, state, inputs)
    mask[:, 0] = False
    inputs = (np.where(mask[..., None], 1.0, coords).astype(dtype), inputs[1], mask)
    model.apply(params, state, inputs)  # large only at padding: accepted
