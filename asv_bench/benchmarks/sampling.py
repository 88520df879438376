"""Lift, farthest point sampling (incl. 1,000 samples from 10,000 points) and neighbourhood
search (ball and kNN), float32. jax: jitted, FPS as one lax.fori_loop."""

import numpy as np

from lieconv_core import neighbourhoods as nb
from lieconv_core.cloud import lift
from lieconv_core.random import PortableDraws

from ._common import BACKENDS, Bench, point_cloud, run_synced


def _group(name):
    from lieconv_core.groups import SE2, SE3, T

    return {"T3": T(3), "SE2": SE2(), "SE3": SE3()}[name]


def _lifted(b, gname, n, ns, bs=1):
    """A cloud lifted on the host (numpy), moved to the backend: same inputs everywhere."""
    import array_api_compat.numpy as npx

    g = _group(gname)
    x = point_cloud(n, g.space_dim, bs).astype("float32")
    cl = lift(g, npx.asarray(x), np.zeros((bs, n, 1), "float32"), np.ones((bs, n), bool), ns,
              PortableDraws(0))
    return g, b.asarray(cl.elems, "float32"), b.asarray(cl.mask)


class Lift:
    params = (BACKENDS, ["T3", "SE2", "SE3"], [10000])
    param_names = ["backend", "group", "n"]

    def setup(self, spec, gname, n):
        self.b = b = Bench.get(spec)
        g = _group(gname)
        self.ns = 1 if gname == "T3" else 4
        x = point_cloud(n, g.space_dim)
        self.inp = (b.asarray(x, "float32"), b.asarray(np.zeros((1, n, 1)), "float32"),
                    b.asarray(np.ones((1, n), bool)))
        if b.name == "jax":
            import jax
            from lieconv_jax import JaxDraws

            f = jax.jit(lambda c, v, m, key: lift(g, c, v, m, self.ns, JaxDraws(key)).elems)
            self.fn = lambda: f(*self.inp, jax.random.key(0))
        else:
            self.fn = lambda: lift(g, *self.inp, self.ns, PortableDraws(0)).elems
        b.sync(self.fn())

    def time_lift(self, spec, gname, n):
        run_synced(self.fn, self.b)


class FPS:
    """m of n points (bs = 1) under the group distance; SE3: n points × 1 lift sample."""

    params = (BACKENDS, ["T3", "SE3"], ["1000/10000", "100/1000"])
    param_names = ["backend", "group", "m/n"]
    timeout = 600

    def setup(self, spec, gname, mn):
        self.b = b = Bench.get(spec)
        m, n = (int(s) for s in mn.split("/"))
        g, elems, mask = _lifted(b, gname, n, 1)
        u = b.asarray(np.array([0.5]), "float32")
        fps = b.jit(lambda e, mk, uu: nb.fps(b.adapter, b.xp, g, e, None, mk, m, uu))
        self.fn = lambda: fps(elems, mask, u)
        b.sync(self.fn())

    def time_fps(self, spec, gname, mn):
        run_synced(self.fn, self.b)


class Neighbourhood:
    """All n points query all n points (bs = 1, T(3)), k = 32; ball radius 0.2 (≈3% fill)."""

    params = (BACKENDS, [1000, 4000], ["ball", "knn"])
    param_names = ["backend", "n", "mode"]
    timeout = 600

    def setup(self, spec, n, mode):
        self.b = b = Bench.get(spec)
        g, elems, mask = _lifted(b, "T3", n, 1)
        prio = b.asarray(np.random.default_rng(0).permutation(n)[None, :])
        r = b.asarray(np.asarray(0.2), "float32")
        knn = mode == "knn"

        def f(e, mk, p, rr):
            pts = (e, None, mk)
            return nb.neighbourhood(b.adapter, b.xp, g, pts, pts, 32, rr, p, knn)[:2]

        f = b.jit(f)
        self.fn = lambda: f(elems, mask, prio, r)
        b.sync(self.fn())

    def time_neighbourhood(self, spec, n, mode):
        run_synced(self.fn, self.b)
