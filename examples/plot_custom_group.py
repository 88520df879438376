"""
A custom group from exp, log and a lift
=======================================

A new symmetry group is a subclass of :class:`lieconv_core.groups.Group` that says how points
become group elements (the *lift*), how to compute :math:`\\log(v^{-1}u)` for two elements, and
a distance built from that logarithm. Everything else — farthest point sampling, neighbourhoods,
the weight net, every backend — comes from the library.

The group here is the symmetry of a cylinder: rotations about the z axis together with
translations along it, :math:`SO(2)\\times T(1)` acting on :math:`\\mathbb{R}^3`. It is abelian,
so an element can be stored as its algebra coordinates :math:`(\\theta, z)` and
:math:`\\log(v^{-1}u)` is a difference (with the angle wrapped to :math:`[-\\pi, \\pi)`). It does
not move the distance :math:`\\rho` of a point from the axis, so :math:`\\rho` is the orbit
identifier :math:`q`.
"""

# %%
import math
import os

import matplotlib.pyplot as plt
import numpy as np

import lieconv_core as lc
from lieconv_core.groups import Group


def wrap(xp, theta):
    """Angles to [-π, π)."""
    return theta - 2 * math.pi * xp.floor((theta + math.pi) / (2 * math.pi))


class Cylinder(Group):
    """Rotations about z and translations along z, acting on R³. Elements: (θ, z); q = ρ."""

    elem_dim = lie_dim = 2
    q_dim = 1
    space_dim = 3

    def __init__(self, alpha: float = 0.5):
        self.alpha = float(alpha)

    # exp/log between algebra coordinates (θ, z) and 4×4 homogeneous matrices
    def exp(self, xp, a):
        c, s, z = xp.cos(a[..., 0]), xp.sin(a[..., 0]), a[..., 1]
        o, i = xp.zeros_like(c), xp.ones_like(c)
        rows = [[c, -s, o, o], [s, c, o, o], [o, o, i, z], [o, o, o, i]]
        return xp.stack([xp.stack(r, axis=-1) for r in rows], axis=-2)

    def log(self, xp, M):
        return xp.stack([xp.atan2(M[..., 1, 0], M[..., 0, 0]), M[..., 2, 3]], axis=-1)

    # the three hooks the layer needs
    def lift(self, xp, coords, nsamples, draws):
        x, y, z = coords[..., 0], coords[..., 1], coords[..., 2]
        elems = xp.stack([xp.atan2(y, x), z], axis=-1)
        return elems, xp.sqrt(x * x + y * y)[..., None]

    def pair_log(self, xp, u, v):
        return xp.stack([wrap(xp, u[..., 0] - v[..., 0]), u[..., 1] - v[..., 1]], axis=-1)

    def distance_from_log(self, xp, a, qu, qv):
        return (self.alpha * xp.abs(a[..., 0])
                + (1 - self.alpha) * (xp.abs(a[..., 1]) + xp.abs(qu[..., 0] - qv[..., 0])))

    # used by tests and augmentation: random elements and their action
    def random_element(self, xp, shape, draws, dtype, device):
        u = draws.uniform(xp, (*shape, 2), dtype, device)
        return xp.stack([2 * math.pi * u[..., 0] - math.pi, 4 * u[..., 1] - 2], axis=-1)

    def act_on_points(self, xp, g, coords):
        th, dz = g[:, None, 0], g[:, None, 1]
        c, s = xp.cos(th), xp.sin(th)
        x, y, z = coords[..., 0], coords[..., 1], coords[..., 2]
        return xp.stack([c * x - s * y, s * x + c * y, z + dz], axis=-1)

    def act_on_elements(self, xp, g, elems):
        return self.pair_log(xp, elems + g[:, None, :], 0 * elems)

    def __repr__(self):
        return f"Cylinder(alpha={self.alpha})"


# %%
# exp and log are inverse to each other, and the lift is consistent with the action:
# lifting g·x gives g times the lift of x.
G = Cylinder()
rng = np.random.default_rng(0)
a = np.stack([rng.uniform(-3, 3, 100), rng.normal(size=100)], axis=-1)
print("max |log(exp(a)) - a| =", np.abs(G.log(np, G.exp(np, a)) - a).max())

SMALL = os.environ.get("LIECONV_EXAMPLE_SMALL") == "1"
n_points = 16 if SMALL else 60
coords = rng.normal(size=(2, n_points, 3))
values = np.ones((2, n_points, 1))
mask = np.ones((2, n_points), bool)
g = np.array([[0.7, 1.5], [-2.0, -0.3]])
lifted, _ = G.lift(np, coords, 1, None)
lifted_g, _ = G.lift(np, G.act_on_points(np, g, coords), 1, None)
print("max |lift(g·x) - g·lift(x)| =", np.abs(G.pair_log(np, lifted_g,
                                                          G.act_on_elements(np, g, lifted))).max())

# %%
# A LieResNet on the new group is invariant to rotations about z and shifts along z, and not
# to a rotation about the x axis (the control).
net = lc.LieResNet(chin=1, num_outputs=1, k=16, num_layers=2, nbhd=12, ds_frac=0.5, group=G)
params, state = net.init(seed=0, dtype="float64", backend="numpy")
out, _ = net.apply(params, state, (coords, values, mask), rng=1)
out_g, _ = net.apply(params, state, (G.act_on_points(np, g, coords), values, mask), rng=1)
rx = np.array([[1, 0, 0], [0, np.cos(0.7), -np.sin(0.7)], [0, np.sin(0.7), np.cos(0.7)]])
out_x, _ = net.apply(params, state, (coords @ rx.T, values, mask), rng=1)
print("change under the group:        ", np.abs(out_g - out).max())
print("change under a rotation about x:", np.abs(out_x - out).max())

# %%
fig = plt.figure(figsize=(5, 4))
ax = fig.add_subplot(projection="3d")
moved = G.act_on_points(np, g, coords)
ax.scatter(*coords[0].T, s=8, label="x")
ax.scatter(*moved[0].T, s=8, label="g·x")
ax.set_title("a cloud and its image under one cylinder symmetry")
ax.legend()
fig.tight_layout()
