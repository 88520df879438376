"""The paper's architectures: sizes and inputs match the paper's."""

from __future__ import annotations

import numpy as np

from lieconv_core import groups as G
from lieconv_core.nn.presets import (
    count_params,
    image_grid,
    image_lieresnet,
    molecule_features,
    molecule_lieresnet,
)


def test_image_model_matches_paper_config():
    grid = image_grid()
    assert grid.shape == (648, 2)
    assert np.linalg.norm(grid, axis=-1).min() > 0  # no pixel at the origin
    net = image_lieresnet(G.SE2(0.05))
    params, _ = net.init(seed=0)
    assert abs(count_params(params) - 0.59e6) < 0.01e6
    assert net.liftsamples == 2 and net.blocks[0].conv.nbhd == 25
    np.testing.assert_allclose(np.prod(net.ds_frac), 0.1)


def test_image_model_forward_on_grid():
    net = image_lieresnet(G.T(2), k=16, num_layers=2, nbhd=8)
    params, state = net.init(seed=0, dtype="float64")
    x = np.broadcast_to(image_grid(), (2, 648, 2))
    v = np.random.default_rng(0).random((2, 648, 1))
    out, _ = net.apply(params, state, (x, v, np.ones((2, 648), bool)), train=True, rng=0)
    assert out.shape == (2, 10) and np.all(np.isfinite(out))


def test_molecule_features_and_model():
    z = np.array([[8, 1, 1, 0]])
    f = molecule_features(z)
    assert f.shape == (1, 4, 15)
    np.testing.assert_allclose(f[0, 0, 9:12], [1, 8 / 9, (8 / 9) ** 2])  # O is the 4th element
    np.testing.assert_array_equal(f[0, 3], 0)
    net = molecule_lieresnet(G.SE3(), k=16, num_layers=1)
    assert net.liftsamples == 4 and net.blocks[0].conv.nbhd == 25 and net.fill == [0.5]
    params, state = net.init(seed=0, dtype="float64")
    x = np.random.default_rng(0).standard_normal((1, 4, 3))
    out, _ = net.apply(params, state, (x, f, z > 0), rng=0)
    assert out.shape == (1, 1) and np.all(np.isfinite(out))
