"""One LieConv layer on one T(3) cloud (float32): forward and forward + backward at N = 1000,
k = 32, C = 256 (paper-sized); the measured GEMM rate and the layer's achieved GFLOP/s; peak memory
of a forward at growing N (C = 64), and up to N = 1,000,000 with a radius that keeps ≈ k points
per ball (cell-list neighbour search + query-chunked aggregation; numpy and torch:cpu).

The achieved rate uses the layer's FLOP formula (weight net + contraction + output linear); the
timed forward also includes the neighbour search, which the formula does not count.
"""

import numpy as np

from lieconv_core.cloud import Cloud
from lieconv_core.groups import T
from lieconv_core.nn import LieConv
from lieconv_core.nn.module import Model
from lieconv_core.random import PortableDraws

from ._common import (
    BACKENDS,
    Bench,
    gemm_fn,
    gemm_gflops,
    interleaved_medians,
    layer_flops,
    median_time,
    minor_faults,
    point_cloud,
    run_synced,
)

N, K, C = 1000, 32, 256


class _Layer:
    """Builds a layer closure: self.fwd() -> output values, self.fwd_bwd() -> gradients."""

    def build(self, spec, n=N, c=C, k=K, radius=None):
        self.b = b = Bench.get(spec)
        g = T(3)
        self.conv = conv = LieConv(c, c, g, nbhd=k, mean=True)
        params, state = conv.init_host(np.random.default_rng(0))
        if radius is not None:  # a Euclidean radius: T(3)'s distance is 0.2‖Δx‖
            state["r"] = state["r_train"] = np.asarray(radius * g.distance_scale)
        self.params, self.state = b.tree(params, "float32"), b.tree(state, "float32")
        gen = np.random.default_rng(1)
        self.x = b.asarray(point_cloud(n, 3), "float32")
        self.v = b.asarray(gen.standard_normal((1, n, c)), "float32")
        self.mask = b.asarray(np.ones((1, n), bool))
        xp = b.xp
        if b.name == "jax":
            import jax
            import jax.numpy as jnp
            from lieconv_jax import JaxDraws

            def f(p, v, key):
                ctx = Model.context(jnp, False, JaxDraws(key))
                return conv.apply(p, self.state, Cloud(self.x, None, v, self.mask), ctx)[0].values

            fj = jax.jit(f)
            gj = jax.jit(jax.grad(lambda p, v, key: jnp.sum(f(p, v, key)), argnums=(0, 1)))
            self.fwd = lambda: fj(self.params, self.v, jax.random.key(0))
            self.fwd_bwd = lambda: gj(self.params, self.v, jax.random.key(0))
        else:
            def f(p, v):
                ctx = Model.context(xp, False, PortableDraws(0))
                return conv.apply(p, self.state, Cloud(self.x, None, v, self.mask), ctx)[0].values

            def fwd():
                with b.no_grad():
                    return f(self.params, self.v)

            self.fwd = fwd
            if b.name == "torch":
                from lieconv_core.nn.module import tree_leaves

                leaves = tree_leaves(self.params)

                def fwd_bwd():
                    for leaf in leaves:
                        leaf.grad = None
                        leaf.requires_grad_(True)
                    v = self.v.detach().requires_grad_(True)
                    f(self.params, v).sum().backward()
                    return v.grad

                self.fwd_bwd = fwd_bwd
            else:
                self.fwd_bwd = None


class Layer(_Layer):
    params = (BACKENDS,)
    param_names = ["backend"]
    timeout = 600

    def setup(self, spec):
        self.build(spec)
        self.b.sync(self.fwd())

    def time_forward(self, spec):
        run_synced(self.fwd, self.b)


    def track_gemm_gflops(self, spec):
        """Measured float32 GEMM rate (2048³) on this backend/device."""
        return gemm_gflops(self.b)

    track_gemm_gflops.unit = "GFLOP/s"

    def track_layer_gflops(self, spec):
        """Layer FLOPs (``_common.layer_flops``) / median forward time (3 runs)."""
        return layer_flops(N, K, C, 3) / median_time(self.fwd, self.b) / 1e9

    track_layer_gflops.unit = "GFLOP/s"

    def track_gemm_fraction(self, spec):
        """The layer's GFLOP/s as a percentage of the GEMM rate, both from one interleaved run
        (layer forward, 2048³ GEMM, layer forward, …; medians of 7 each): the issue's "≥ 50% of
        the GEMM rate measured in the same run", robust to the shared machine's slow phases."""
        t_layer, t_gemm = interleaved_medians([self.fwd, gemm_fn(self.b)], self.b)
        return 100 * (layer_flops(N, K, C, 3) / t_layer) / (2 * 2048**3 / t_gemm)

    track_gemm_fraction.unit = "%"

    def track_page_faults(self, spec):
        """Minor page faults of one forward (median of 7 warm calls): the layer's temporaries
        that the allocator maps fresh on every call. A large count costs time the FLOP formula
        does not see (host memory; on GPUs this counts the host side only)."""
        return minor_faults(self.fwd, self.b)

    track_page_faults.unit = "faults"


class LayerBackward(_Layer):
    """Forward + backward (gradients w.r.t. parameters and input values); torch and jax only."""

    params = (BACKENDS,)
    param_names = ["backend"]
    timeout = 600

    def setup(self, spec):
        self.build(spec)
        self.b.require_grad()
        self.b.sync(self.fwd_bwd())

    def time_forward_backward(self, spec):
        run_synced(self.fwd_bwd, self.b)


class LayerMemory(_Layer):
    """Peak RSS of the process around one forward (host memory; for GPUs the device memory is not
    in RSS)."""

    params = (BACKENDS, [1000, 4000, 10000])
    param_names = ["backend", "n"]
    timeout = 600

    def setup(self, spec, n):
        self.build(spec, n=n, c=64)

    def peakmem_forward(self, spec, n):
        self.b.sync(self.fwd())


def ball_radius(n: int, k: int = K) -> float:
    """Radius whose ball holds k points on average at density n (n uniform points in the unit
    cube; fewer near the faces): (4/3)·π·r³·n = k."""
    return (3 * k / (4 * np.pi * n)) ** (1 / 3)


#: the CPU specs of :class:`LayerMemoryLarge` (the cell list is the CPU path: on GPUs the fused
#: kernels take the neighbour search)
LARGE_SPECS = [s for s in BACKENDS if s in ("numpy", "torch:cpu")] or ["numpy"]


class LayerMemoryLarge(_Layer):
    """Peak RSS of one eval-mode forward (float32) on one T(3) cloud of N uniform points in the
    unit cube (density N points per unit volume), k = 32, 64 channels, r = :func:`ball_radius`
    (≈ 32 points per ball, ≈ 0.0197 at N = 10⁶). Goal (issue 4): N = 1,000,000 within 8 GB.
    One 10⁶ forward takes ≈ 1.5–2 min on one CPU core."""

    params = (LARGE_SPECS, [10_000, 100_000, 1_000_000])
    param_names = ["backend", "n"]
    timeout = 900

    def setup(self, spec, n):
        self.build(spec, n=n, c=64, radius=ball_radius(n))

    def peakmem_forward(self, spec, n):
        self.b.sync(self.fwd())
