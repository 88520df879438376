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
