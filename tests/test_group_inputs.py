"""Group inputs (issue 23): groups by name (the registry, and the models that take a name), and
errors for inputs the groups cannot take."""

from __future__ import annotations

import pytest

from lieconv_core import groups as G
from lieconv_core.nn import LieConv, LieResNet
from lieconv_core.nn.presets import image_lieresnet, molecule_lieresnet

NAMES = ["T2", "T3", "Trivial2", "Trivial3", "SO2", "RxSO2", "SE2", "SO3", "SE3", "Tx", "Ty",
         "Rx"]


def test_registry_names_and_instances():
    assert set(NAMES) <= set(G.names())
    for name in NAMES:
        assert isinstance(G.get(name), G.Group), name
    assert G.get("T3") == G.T(3) and G.get("Trivial2") == G.Trivial(2)
    assert G.get("SE2", alpha=0.05) == G.SE2(0.05)
    assert repr(G.get("Rx", alpha=0.1)) == repr(G.Rx(0.1))


def test_registry_errors_list_the_choices():
    with pytest.raises(ValueError, match="unknown group 'SU3'; choose one of: .*SE2"):
        G.get("SU3")
    with pytest.raises(ValueError, match="'T2' takes no argument 'alpha'"):
        G.get("T2", alpha=0.1)


def test_models_accept_group_names():
    assert LieResNet(3, group="SE2", k=16, num_layers=1).group == G.SE2()
    assert LieConv(4, 4, "SO3").group == G.SO3()
    assert image_lieresnet("T2", k=16, num_layers=1).group == G.T(2)
    assert molecule_lieresnet("SE3", k=16, num_layers=1).group == G.SE3()
    with pytest.raises(ValueError, match="unknown group 'SE4'"):
        LieResNet(3, group="SE4")
    with pytest.raises(TypeError, match="group must be a Group"):
        LieConv(4, 4, 3)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_functional_module_keeps_the_params_dtype(dtype):
    """FunctionalModule without ``dtype`` keeps float64 params float64 (it cast them to float32,
    and the forward then blamed the inputs' dtype)."""
    torch = pytest.importorskip("torch")
    from lieconv_torch import FunctionalModule

    net = LieResNet(1, 2, k=8, nbhd=4, num_layers=1, group="T2")
    params, state = net.init(0, dtype, backend="torch")
    module = FunctionalModule(net, params, state).eval()
    assert all(p.dtype == getattr(torch, dtype) for p in module.parameters())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 2, generator=gen, dtype=getattr(torch, dtype))
    out = module(x, torch.ones(2, 5, 1, dtype=x.dtype), torch.ones(2, 5, dtype=torch.bool))
    assert out.dtype == x.dtype and out.shape == (2, 2)
    cast = FunctionalModule(net, params, state, dtype="float32")
    assert all(p.dtype == torch.float32 for p in cast.parameters())


@pytest.mark.parametrize("k, layers", [(2, 2), ([8, 3], 1), ([8, 12, 8], 2), (0, 0)])
def test_widths_the_blocks_cannot_take_fail_at_construction(k, layers):
    """k < 4 (a LieConv of k // 4 = 0 channels) or decreasing k: a ValueError naming k."""
    with pytest.raises(ValueError, match="^k must"):
        LieResNet(3, k=k, num_layers=layers, group="T2")


# --- exp / log / lift inputs -----------------------------------------------------------------

#: (group, exp's trailing shape, log's trailing shape)
SHAPES = [(G.T(2), (2,), (3, 3)), (G.T(3), (3,), (4, 4)), (G.SO2(), (1,), (2, 2)),
          (G.RxSO2(), (2,), (2, 2)), (G.SE2(), (3,), (3, 3)), (G.SO3(), (3,), (3, 3)),
          (G.SE3(), (6,), (4, 4))]


@pytest.mark.parametrize("group, a_shape, m_shape", SHAPES, ids=lambda v: repr(v))
def test_exp_log_check_trailing_shapes(xp, group, a_shape, m_shape):
    """Wrong trailing axes are a ValueError naming the argument and the expected shape (SO3().exp
    on (5, 4) returned numbers, log on (5, 3) zeros)."""
    import numpy as np

    from .conftest import asarray

    a = asarray(xp, np.zeros((5, a_shape[0] + 1)), "float64")
    with pytest.raises(ValueError, match=r"exp: a must have shape \(\.\.\., " + str(a_shape[0])):
        group.exp(xp, a)
    M = asarray(xp, np.zeros((5, m_shape[0])), "float64")
    want = rf"log: (M|R) must have shape \(\.\.\., {m_shape[0]}, {m_shape[1]}\)"
    with pytest.raises(ValueError, match=want):
        group.log(xp, M)


@pytest.mark.parametrize("group", [G.T(2), G.Trivial(3), G.SO2(), G.SE2(), G.SO3(), G.SE3(),
                                   G.Tx()], ids=repr)
def test_lift_checks_coords_shape(group):
    import array_api_compat.numpy as npx
    import numpy as np

    coords = np.ones((2, 5, group.space_dim + 1))
    want = rf"lift: coords must have shape \(batch, points, {group.space_dim}\)"
    with pytest.raises(ValueError, match=want):
        group.lift(npx, coords, 1, None)


def _not_in_group(group, m_shape):
    """Matrices (4, *m_shape): exp of zero (the identity) but entry 1 doubled (2·I for the
    matrix groups without translation)."""
    import array_api_compat.numpy as npx
    import numpy as np

    M = np.array(group.exp(npx, np.zeros((4, group.lie_dim))))
    M[1] *= 2.0
    if isinstance(group, G.RxSO2):
        M[1, 0, 1] = 1.0  # 2·I is in RxSO(2): shear it instead
    return M


@pytest.mark.parametrize("group, a_shape, m_shape", SHAPES, ids=lambda v: repr(v))
def test_log_of_a_matrix_not_in_the_group_is_a_valueerror(xp, dtype, group, a_shape, m_shape):
    import numpy as np

    from .conftest import asarray

    M = _not_in_group(group, m_shape)
    with pytest.raises(ValueError, match="not in"):
        group.log(xp, asarray(xp, M, dtype))
    good = asarray(xp, np.delete(M, 1, axis=0), dtype)
    assert group.log(xp, good).shape == (3, *a_shape)


@pytest.mark.parametrize("group", [G.SO3(), G.SE2()], ids=repr)
def test_log_membership_check_skipped_while_tracing(group, monkeypatch):
    """Under jax.jit (tracers cannot be read) and while a compiler traces (the adapter's
    ``tracing()``: torch.compile), log computes without the check."""
    import array_api_compat.numpy as npx

    from lieconv_core._backend import adapter_for

    M = _not_in_group(group, None)
    monkeypatch.setattr(type(adapter_for(npx)), "tracing", lambda self: True)
    assert group.log(npx, M).shape == (4, group.lie_dim)
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    monkeypatch.undo()
    assert jax.jit(lambda m: group.log(jnp, m))(jnp.asarray(M)).shape == (4, group.lie_dim)
