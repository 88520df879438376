"""Cross-backend equality for every group: LieResNet forwards (one layer in eval mode over all
points; two layers in training mode with random ball neighbourhoods) on every installed backend
against numpy, and loss gradients (torch: one and two layers; jax: one) against a numpy
central-difference reference and each other.

Same parameters, inputs and portable draws everywhere: float64 to 1e-10 relative; gradients to
1e-6 against finite differences, 1e-9 between torch and jax. jax compiles every configuration
(seconds each), so its forward is checked inside the gradient test (one-layer outputs and
gradients from one program); FPS subsampling across backends is in test_backends.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import lieconv_core as lc
from lieconv_core import groups as G
from lieconv_core._backend import namespace_for
from lieconv_core.nn.module import flatten, unflatten

from .conftest import AVAILABLE, SAME_TOL, apply_net, asarray, rel_err, to_numpy

GROUPS = [G.T(2), G.T(3), G.Trivial(2), G.SO2(), G.RxSO2(), G.SE2(), G.SO3(), G.SE3(), G.Tx(),
          G.Ty(), G.Rx()]
OTHERS = [b for b in AVAILABLE if b != "numpy"]
AUTODIFF = [b for b in ("torch", "jax") if b in AVAILABLE]


def make_inputs(d: int, bs: int = 2, n: int = 8, chin: int = 3, seed: int = 0):
    """Points (bs, n, d) away from the origin, features (bs, n, chin), mask (bs, n), one padded."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((bs, n, d)) * 1.5
    x += np.sign(x) * 0.2
    v = rng.standard_normal((bs, n, chin))
    m = np.ones((bs, n), dtype=bool)
    m[-1, -2:] = False
    return x, v, m


def make_net(group: G.Group, layers: int, dense: bool = False) -> lc.LieResNet:
    """k = 16; one layer (or dense): all points as neighbours; several: random balls of 5."""
    ball = layers > 1 and not dense
    return lc.LieResNet(chin=3, num_outputs=2, k=16, num_layers=layers,
                        nbhd=5 if ball else None, fill=0.5,
                        liftsamples=2 if group.random_lift else 1, group=group)


def forward(backend: str, group, layers: int, dtype: str, train: bool):
    """Outputs and new state of ``make_net`` on ``backend``, as numpy."""
    xp = namespace_for(backend)
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    net = make_net(group, layers)
    params, state = net.init(seed=1, dtype=dtype, xp=xp)
    x, v, m = make_inputs(group.space_dim)
    inputs = (asarray(xp, x, dtype), asarray(xp, v, dtype), asarray(xp, m))
    out, new = apply_net(net, params, state, inputs, train=train, rng=5)
    return to_numpy(out), {k: to_numpy(a) for k, a in flatten(new).items()}


CONFIGS = ([(b, 1, False) for b in OTHERS if b != "jax"]
           + [(b, 2, True) for b in OTHERS if b != "jax"])


@pytest.mark.parametrize("backend, layers, train", CONFIGS,
                         ids=[f"{b}-{n}-{'train' if t else 'eval'}" for b, n, t in CONFIGS])
@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_forward_matches_numpy(backend, group, layers, train):
    """Outputs and new state (BN statistics, radii) equal numpy's (float64)."""
    dtype = "float64"
    out, new = forward(backend, group, layers, dtype, train)
    ref, ref_new = forward("numpy", group, layers, dtype, train)
    assert np.abs(ref).max() > 1e-3
    assert rel_err(out, ref) <= SAME_TOL[dtype], rel_err(out, ref)
    assert new.keys() == ref_new.keys()
    for key, val in ref_new.items():
        assert rel_err(new[key], val) <= SAME_TOL[dtype], key


# --- gradients ---------------------------------------------------------------------------------

def _loss_weights(bs: int) -> np.ndarray:
    """Fixed weights of the scalar loss sum(out * w): (bs, 2)."""
    return np.random.default_rng(9).standard_normal((bs, 2))


def _numpy_outputs(net, flat_params, state, x, v, m) -> np.ndarray:
    return net.apply(unflatten(flat_params), state, (x, v, m), train=True, rng=5)[0]


def _directions(flat: dict, x: np.ndarray) -> tuple[dict, np.ndarray]:
    """Unit-scale random directions for the parameters and the coordinates."""
    rng = np.random.default_rng(3)
    return ({k: rng.standard_normal(np.shape(a)) for k, a in flat.items()},
            rng.standard_normal(x.shape))


def numpy_reference(group, layers):
    """numpy's outputs (bs, 2) and the loss's central differences (eps 1e-6) along the parameter
    and the coordinate directions (two floats)."""
    net = make_net(group, layers, dense=True)
    params, state = net.init(seed=1, dtype="float64", backend="numpy")
    flat = flatten(params)
    x, v, m = make_inputs(group.space_dim)
    dp, dx = _directions(flat, x)
    w, eps = _loss_weights(x.shape[0]), 1e-6  # truncation error ~eps², rounding ~1e-16/eps

    def loss(s_params, s_coords):
        p = {k: a + s_params * eps * dp[k] for k, a in flat.items()}
        return float(np.sum(_numpy_outputs(net, p, state, x + s_coords * eps * dx, v, m) * w))

    return (_numpy_outputs(net, flat, state, x, v, m), (loss(1, 0) - loss(-1, 0)) / (2 * eps),
            (loss(0, 1) - loss(0, -1)) / (2 * eps))


def autodiff_gradients(backend, group, layers):
    """Outputs (bs, 2), flat parameter gradients and coordinate gradient (bs, n, d) (None where
    not computed) of the loss on ``backend``, as numpy."""
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
    xp = namespace_for(backend)
    net = make_net(group, layers, dense=True)
    params, state = net.init(seed=1, dtype="float64", xp=xp)
    x, v, m = make_inputs(group.space_dim)
    w = _loss_weights(x.shape[0])
    if backend == "torch":
        return _torch_gradients(net, params, state, x, v, m, w)
    return _jax_gradients(net, params, state, x, v, m, w, coords=not group.random_lift)


def _torch_gradients(net, params, state, x, v, m, w):
    import torch

    flat = flatten(params)
    for leaf in flat.values():
        leaf.requires_grad_(True)
    coords = torch.asarray(x).requires_grad_(True)
    out, _ = net.apply(unflatten(flat), state, (coords, torch.asarray(v), torch.asarray(m)),
                       train=True, rng=5)
    grads = torch.autograd.grad(torch.sum(out * torch.asarray(w)), [*flat.values(), coords])
    return out.detach().numpy(), {k: g.numpy() for k, g in zip(flat, grads)}, grads[-1].numpy()


def _jax_gradients(net, params, state, x, v, m, w, coords):
    """``coords``: also the coordinate gradient (through the lift and the group's log: for SE(2),
    SO(3), SE(3) a program that takes XLA tens of seconds to compile, so torch checks those)."""
    import jax
    import jax.numpy as jnp

    def loss(p, c):
        out, _ = net.apply(p, state, (c, jnp.asarray(v), jnp.asarray(m)), train=True, rng=5)
        return jnp.sum(out * jnp.asarray(w)), out

    argnums = (0, 1) if coords else 0
    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=argnums, has_aux=True))(
        params, jnp.asarray(x))
    gp, gx = grads if coords else (grads, None)
    return (np.asarray(out), {k: np.asarray(g) for k, g in flatten(gp).items()},
            None if gx is None else np.asarray(gx))


@pytest.mark.skipif(not AUTODIFF, reason="no autodiff backend installed")
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("group", GROUPS, ids=repr)
def test_gradients_match_finite_differences_and_each_other(group, layers):
    """Training mode: the outputs equal numpy's (1e-10 relative); the loss gradients with respect
    to every parameter and the coordinates give numpy's central differences along random
    directions (1e-6 relative) on each autodiff backend, and torch's and jax's agree entry by
    entry (1e-9 relative). jax (seconds of compilation per program) takes the one-layer network
    and, for the random lifts, the parameter gradients only; torch takes everything."""
    ref, fd_params, fd_coords = numpy_reference(group, layers)
    assert abs(fd_params) > 1e-3 and abs(fd_coords) > 1e-6
    net = make_net(group, layers, dense=True)
    flat_np = flatten(net.init(seed=1, dtype="float64", backend="numpy")[0])
    dp, dx = _directions(flat_np, make_inputs(group.space_dim)[0])
    grads = {b: autodiff_gradients(b, group, layers) for b in AUTODIFF
             if b == "torch" or layers == 1}
    for backend, (out, gp, gx) in grads.items():
        assert rel_err(out, ref) <= 1e-10, backend
        along_p = sum(float(np.sum(gp[k] * dp[k])) for k in dp)
        assert abs(along_p - fd_params) <= 1e-6 * abs(fd_params), (backend, along_p, fd_params)
        if gx is not None:
            along_x = float(np.sum(gx * dx))
            assert abs(along_x - fd_coords) <= 1e-6 * max(abs(fd_coords), 1e-3), (
                backend, along_x, fd_coords)
    if len(grads) == 2:
        (_, tp, tx), (_, jp, jx) = grads["torch"], grads["jax"]
        for key in tp:
            assert rel_err(jp[key], tp[key]) <= 1e-9 or np.abs(tp[key]).max() < 1e-13, key
        assert jx is None or rel_err(jx, tx) <= 1e-9
