"""Conventions of the original LieConv that fix what a ball of radius r contains
(docs/original.md): T(d)'s distance is 0.2‖Δx‖, Trivial(d)'s 0.8‖Δx‖ (α = 0.2)."""

import numpy as np
import pytest

import lieconv_core as lc
import lieconv_core.groups as G


@pytest.mark.parametrize("group,scale", [(G.T(2), 0.2), (G.Trivial(3), 0.8), (G.T(3), 0.2),
                                         (G.T(2, alpha=0.5), 0.5),
                                         (G.Trivial(2, alpha=0.3), 0.7)], ids=repr)
@pytest.mark.parametrize("nbhd", [None, 7], ids=["dense", "indexed"])
def test_ball_holds_the_points_within_the_original_distance(group, scale, nbhd):
    """A LieConv ball of radius r holds the points with scale·‖Δx‖ < r: the in-ball counts, read
    through the radius controller's update r' = r + 0.5 (fill − observed fill), equal the brute
    force count with the original's distance. Control: the Euclidean ‖Δx‖ < r gives another
    update."""
    d = group.space_dim
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 12, d))
    v = rng.standard_normal((2, 12, 3))
    m = np.ones((2, 12), bool)
    m[1, 9:] = False
    conv = lc.LieConv(3, 4, group, nbhd=nbhd, fill=0.3)
    params, state = conv.init(seed=0, dtype="float64", backend="numpy")
    r = 1.5 * scale  # a ball of Euclidean radius 1.5
    state = {**state, "r": np.asarray(r), "r_train": np.asarray(r)}
    _, new = conv.forward(params, state, lc.lift(group, x, v, m), train=True, rng=0)

    def update(dist):
        inball = (dist < r) & m[:, None, :] & m[:, :, None]
        observed = inball.sum() / m.sum() / m.sum(1).mean()
        return r + 0.5 * (0.3 - observed)

    eucl = np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)
    assert float(new["r_train"]) == pytest.approx(update(scale * eucl), abs=1e-14)
    assert abs(float(new["r_train"]) - update(eucl)) > 1e-3
    assert group.search_radius(r) == pytest.approx(r / scale)


def test_fill_target_is_capped_at_one():
    """The original's controller aims at min(fill, 1): with fill = 3 a ball holding every point
    leaves r unchanged (observed fill 1), as with fill = 1."""
    rng = np.random.default_rng(0)
    x, v = rng.standard_normal((1, 6, 2)), rng.standard_normal((1, 6, 3))
    m = np.ones((1, 6), bool)
    for fill in (1.0, 3.0):
        conv = lc.LieConv(3, 4, G.T(2), nbhd=None, fill=fill)
        params, state = conv.init(seed=0, dtype="float64", backend="numpy")
        _, new = conv.forward(params, state, lc.lift(G.T(2), x, v, m), train=True, rng=0)
        assert conv.fill == 1.0 and float(new["r"]) == float(state["r"])
