"""Integrators and dynamics models: conservation laws built into the Hamiltonian LieConv, the
controls that lack them, and torch/jax agreement in training."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lieconv_core.data import springs as S
from lieconv_core.dynamics import make_model, odeint
from lieconv_core.dynamics.integrators import rk4_step


def _oscillator(z):
    # H = (p² + q²)/2 in the (..., 2, n, d) layout
    return np.stack([z[..., 1, :, :], -z[..., 0, :, :]], axis=-3)


@pytest.mark.parametrize("method,order", [("rk4", 4), ("leapfrog", 2)])
def test_integrator_order(method, order):
    z0 = np.array([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2)
    errs = []
    for n in (20, 40):
        ts = np.linspace(0, 2.0, n + 1)
        zs = odeint(_oscillator, z0, ts, method=method)
        exact = np.stack([np.cos(ts[-1]) * z0[0, 0] + np.sin(ts[-1]) * z0[0, 1],
                          -np.sin(ts[-1]) * z0[0, 0] + np.cos(ts[-1]) * z0[0, 1]])
        errs.append(np.abs(zs[0, -1] - exact).max())
    assert zs.shape == (1, 41, 2, 1, 2)
    assert math.log2(errs[0] / errs[1]) == pytest.approx(order, abs=0.3)


def test_leapfrog_is_symplectic_energy_stays_bounded():
    z0 = np.array([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    zs = odeint(_oscillator, z0, np.linspace(0, 200, 2001), method="leapfrog")
    energy = 0.5 * np.sum(zs**2, axis=(2, 3, 4))
    assert np.abs(energy - energy[:, :1]).max() < 5e-3  # no secular drift over ~30 periods
    with pytest.raises(ValueError, match="integrator"):
        odeint(_oscillator, z0, [0, 1], method="euler")


def _rel_drift(x):
    x = x.reshape(x.shape[0], x.shape[1], -1)
    dev = np.linalg.norm(x - x[:, :1], axis=-1).max(axis=1)
    return dev / np.linalg.norm(x[:, 0], axis=-1)


def test_hlieconv_t2_conserves_linear_momentum_over_500_steps(jax64):
    """A property of the architecture: random, untrained weights, float64, RK4, 500 steps."""
    from lieconv_core.app import springs as springs_app
    from lieconv_core.tasks import springs as SP

    model = make_model("hlieconv", group="T2", k=32, num_layers=2)
    z0, sys = S.draw_systems(4, seed=7)
    tr = springs_app.trainer("jax", model, model.init_host(np.random.default_rng(1)),
                             dtype="float64")
    zs = SP.rollout(tr, "jax", model, z0, sys, S.time_grid())
    assert zs.shape == (4, 500, 2, 6, 2) and np.all(np.isfinite(zs))
    assert np.abs(zs[:, -1, 0] - zs[:, 0, 0]).max() > 0.1  # it did move
    assert _rel_drift(S.linear_momentum(zs)).max() <= 1e-10


def test_controls_do_not_conserve_linear_momentum(torch1):
    z0, sys = S.draw_systems(4, seed=7)
    ts = S.time_grid()[:21]
    for name in ("flieconv", "fc"):
        model = make_model(name, group="T2", k=32, num_layers=2)
        params = model.init(0, "float64", "torch")
        zs = model.rollout(params, torch1.tensor(z0), torch1.tensor(sys), ts).detach().numpy()
        assert _rel_drift(S.linear_momentum(zs)).max() > 1e-3, name


def test_hfc_and_hlieconv_trivial_conserve_linear_momentum(torch1):
    # the centring q - mean(q) makes every potential translation invariant
    z0, sys = S.draw_systems(3, seed=8)
    ts = S.time_grid()[:21]
    for name, group in (("hfc", "T2"), ("hlieconv", "Trivial")):
        model = make_model(name, group=group, k=16, num_layers=1)
        params = model.init(0, "float64", "torch")
        zs = model.rollout(params, torch1.tensor(z0), torch1.tensor(sys), ts).detach().numpy()
        assert _rel_drift(S.linear_momentum(zs)).max() <= 1e-12, name


def test_hlieconv_so2_angular_momentum_drift_shrinks_with_step_size(torch1):
    """H is exactly rotation invariant, so L is conserved by the flow; RK4 conserves it only up to
    its O(dt^4) error, which must shrink with the step."""
    model = make_model("hlieconv", group="SO2", k=16, num_layers=1)
    params = model.init(0, "float64", "torch")
    params["lin_out"]["w"] = params["lin_out"]["w"] * 200.0  # strong forces: visible RK4 error
    z0, sys = S.draw_systems(3, seed=9)
    zt, st = torch1.tensor(z0), torch1.tensor(sys)
    drifts = []
    for n in (8, 16):
        zs = model.rollout(params, zt, st, np.linspace(0, 1.0, n + 1)).detach().numpy()
        L = S.angular_momentum(zs)
        drifts.append(np.abs(L - L[:, :1]).max())
    assert drifts[0] > 1e-12  # the check has teeth
    assert drifts[1] < drifts[0] / 6  # ~16x for a 4th-order method
    P = S.linear_momentum(zs)
    assert np.abs(P - P[:, :1]).max() < 1e-12


def test_potential_on_numpy_matches_torch(torch1):
    model = make_model("hlieconv", group="T2", k=16, num_layers=1)
    z0, sys = S.draw_systems(3, seed=2)
    v_np = model.potential(model.init(0, "float64", "numpy"), z0[:, 0], sys)
    pt = model.init(0, "float64", "torch")
    v_t = model.potential(pt, torch1.tensor(z0[:, 0]), torch1.tensor(sys)).detach().numpy()
    np.testing.assert_allclose(v_np, v_t, rtol=1e-12)
    # H = kinetic + V, and V is translation invariant
    h = model.energy(model.init(0, "float64", "numpy"), z0, sys)
    kin = np.sum(np.sum(z0[:, 1] ** 2, -1) / (2 * sys[..., 0]), -1)
    np.testing.assert_allclose(h, kin + v_np, rtol=1e-12)
    shifted = model.potential(model.init(0, "float64", "numpy"), z0[:, 0] + 3.0, sys)
    np.testing.assert_allclose(shifted, v_np, rtol=1e-10)


def test_vector_field_needs_autodiff_on_numpy():
    model = make_model("hfc", k=8, num_layers=1)
    z0, sys = S.draw_systems(2)
    with pytest.raises(NotImplementedError, match="automatic differentiation"):
        model.vector_field(model.init(0, "float64", "numpy"), z0, sys)


def test_nan_inputs_give_a_clear_error(torch1):
    model = make_model("hlieconv", k=16, num_layers=1)
    z0, sys = S.draw_systems(2)
    z0[0, 0, 1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.vector_field(model.init(0, "float64", "torch"), torch1.tensor(z0), torch1.tensor(sys))


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown model"):
        make_model("hogn")
    with pytest.raises(ValueError, match="unknown group"):
        make_model("hlieconv", group="SO5")


def test_torch_and_jax_float64_give_the_same_20_training_losses(torch1, jax64):
    from lieconv_core.app import springs as springs_app

    sp = S.make_splits(n_train=80, n_val=1, n_test=1)["train"]
    model = make_model("hlieconv", group="T2", k=16, num_layers=1)
    host = model.init_host(np.random.default_rng(0))
    losses = {}
    for name in ("torch", "jax"):
        tr = springs_app.trainer(name, model, host, sp.ts, lr=1e-2, total_steps=20, dtype="float64")
        losses[name] = np.array([tr.step({"z": sp.z[4 * i:4 * i + 4],
                                          "sys": sp.sys[4 * i:4 * i + 4]}) for i in range(20)])
    assert losses["torch"][-1] < losses["torch"][0]  # it learns
    np.testing.assert_allclose(losses["torch"], losses["jax"], rtol=1e-8)


def test_rk4_step_under_jax_jit_and_torch_autograd(torch1, jax64):
    import jax.numpy as jnp

    z0 = np.array([[[[1.0, 0.0]], [[0.0, 1.0]]]])
    fj = jax64.jit(lambda z: rk4_step(lambda zz: jnp.stack([zz[:, 1], -zz[:, 0]], 1), z, 0.1))
    ref = rk4_step(_oscillator, z0, 0.1)
    np.testing.assert_allclose(np.asarray(fj(jnp.asarray(z0))), ref, rtol=1e-15)
    zt = torch1.tensor(z0, requires_grad=True)
    out = rk4_step(lambda zz: torch1.stack([zz[:, 1], -zz[:, 0]], 1), zt, 0.1)
    out.sum().backward()
    assert zt.grad is not None


def test_torch_module_wrappers(torch1):
    from lieconv_torch.nn import DynamicsModule, FunctionalModule

    import lieconv_core as lc
    from lieconv_core.nn.module import flatten

    net = lc.LieResNet(2, k=8, num_layers=1, group=lc.groups.T(2), bn=True)
    params, state = net.init_host(np.random.default_rng(0))
    mod = FunctionalModule(net, params, state, dtype="float64")
    names = {k for k, _ in mod.named_parameters()}
    assert names == {f"params.{k}" for k in flatten(params)}
    assert {k for k, _ in mod.named_buffers()} == {f"state.{k}" for k in flatten(state)}
    x = torch1.randn(2, 5, 2, dtype=torch1.float64)
    f = torch1.ones(2, 5, 2, dtype=torch1.float64)
    m = torch1.ones(2, 5, dtype=torch1.bool)
    before = mod.state.blocks.__getattr__("0").conv.r.clone()
    mod.train()
    mod(x, f, m).sum().backward()
    assert all(p.grad is not None for p in mod.parameters())
    assert not torch1.equal(before, mod.state.blocks.__getattr__("0").conv.r)  # radius moved
    model = make_model("hlieconv", k=16, num_layers=1)
    dm = DynamicsModule(model, model.init_host(np.random.default_rng(0)), dtype="float64")
    z0, sys = S.draw_systems(2)
    dz = dm(torch1.tensor(z0), torch1.tensor(sys))
    assert dz.shape == (2, 2, 6, 2)
    np.testing.assert_allclose(dz[:, 0].detach().numpy(), z0[:, 1] / sys[..., :1], rtol=1e-12)
    # without a dtype the parameters keep theirs (float64 from init_host), with one they take it
    kept = DynamicsModule(model, model.init_host(np.random.default_rng(0)))
    assert {p.dtype for p in kept.parameters()} == {torch1.float64}
    cast = DynamicsModule(model, model.init_host(np.random.default_rng(0)), dtype="float32")
    assert {p.dtype for p in cast.parameters()} == {torch1.float32}


def test_torch_compiled_training_step_in_one_graph_gives_eager_numbers(torch1):
    """TorchTrainer(compile=True) runs the loss and the parameter gradients of a Hamiltonian
    training step (gradients of the vector field's gradient) as one torch.compile-d
    torch.func.grad_and_value under functional_mode: dynamo sees one graph with no breaks, and
    three steps give the eager trainer's losses and parameters (float64, 1e-12). Control:
    outside functional_mode the adapter's autograd-based gradient (and its custom autograd ops)
    stop torch.func."""
    import torch
    import torch._dynamo as dynamo
    from lieconv_torch.adapter import functional_mode
    from torch._dynamo.testing import CompileCounter

    from lieconv_core.app import springs as springs_app

    sp = S.make_splits(n_train=4, n_val=1, n_test=1)["train"]
    z, sys, ts = sp.z[:, :2], sp.sys, sp.ts[:2]  # one RK4 step: the smallest graph
    model = make_model("hlieconv", group="T2", k=8, num_layers=1)
    host = model.init_host(np.random.default_rng(0))
    kw = dict(lr=1e-2, total_steps=10, dtype="float64")
    eager = springs_app.trainer("torch", model, host, ts, **kw)
    compiled = springs_app.trainer("torch", model, host, ts, compile=True, **kw)
    losses = []
    for _ in range(3):
        want, got = eager.step({"z": z, "sys": sys}), compiled.step({"z": z, "sys": sys})
        assert got == pytest.approx(want, rel=1e-12, abs=0)
        losses.append(want)
    pe, pc = eager.params_host(), compiled.params_host()
    for name in pe:
        np.testing.assert_allclose(pc[name], pe[name], rtol=1e-12, atol=1e-14, err_msg=name)

    zt, st = torch.asarray(z), torch.asarray(sys)
    params = model.init(0, "float64", backend="torch")
    grid = [float(t) for t in ts]  # host floats, as the trainer passes them
    fn = torch.func.grad_and_value(lambda p: model.loss(p, zt, st, grid))
    counter = CompileCounter()  # a backend that counts the graphs dynamo hands it
    dynamo.reset()
    with functional_mode():  # fullgraph: a graph break would raise
        traced = torch.compile(fn, backend=counter, fullgraph=True)(params)
    dynamo.reset()
    assert counter.frame_count == 1 and counter.op_count > 100
    assert float(traced[1]) == pytest.approx(losses[0], rel=1e-12, abs=0)  # the same initial params
    with pytest.raises(RuntimeError, match="functorch"):
        fn(params)


@pytest.mark.parametrize("kind", ["hlieconv", "flieconv"])
def test_lieconv_dynamics_models_leak_no_jax_tracers(kind):
    """The LieResNet state that the LieConv dynamics models convert once per backend, dtype and
    device stays out of their cache when the conversion runs under a jax trace: cached tracers
    leaked into later traces (``lieconv train springs --backend jax`` then failed at its first
    evaluation, 'Execution supplied 50 arguments but compiled program expected 53', once
    ``search_radius`` divided the leaked radius). Concrete conversions are still cached."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from lieconv_core.nn.module import to_backend

    model = make_model(kind, group="T2", k=8, num_layers=1)
    params = to_backend(model.init_host(np.random.default_rng(0)), jnp, jnp.float32)
    rng = np.random.default_rng(1)
    z = jnp.asarray(rng.normal(size=(2, 2, 6, 2)), jnp.float32)
    sys = jnp.asarray(rng.uniform(1, 2, size=(2, 6, 2)), jnp.float32)
    with jax.checking_leaks():
        jax.make_jaxpr(model.vector_field)(params, z, sys)
        jax.make_jaxpr(model.vector_field)(params, z[:1], sys[:1])  # a second trace
    assert not any(isinstance(a, jax.core.Tracer)
                   for a in jax.tree_util.tree_leaves(model._state_cache))
    state = model._state(jnp, z)  # outside any trace: concrete, cached
    assert model._state(jnp, z) is state
    assert not any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(state))
