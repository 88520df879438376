"""Parity with the original LieConv (github.com/mfinzi/LieConv): golden outputs of the original
code (tests/data/original/README.md), its weights imported with
:func:`lieconv_core.app.io.from_original`, compared on every installed backend: float64 to 1e-12
relative, float32 to 1e-5. Controls show that each convention the goldens cover matters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lieconv_core as lc
import lieconv_core.groups as G
from lieconv_core.app.io import OriginalWeightsError, from_original
from lieconv_core.nn.module import to_backend

from .conftest import apply_net, asarray, rel_err, to_numpy

DATA = Path(__file__).parent / "data" / "original"
TOL = {"float64": 1e-12, "float32": 1e-5}
#: case -> (group, ds_frac) of a LieResNet(3, num_outputs=2, k=16, num_layers=2, nbhd=inf, bn,
#: mean) of the original (tests/data/original/README.md)
CASES = {
    "t3": (lambda: G.T(3), 1.0),
    "t2": (lambda: G.T(2), 1.0),
    "so2": (lambda: G.SO2(0.2), 1.0),
    "rxso2": (lambda: G.RxSO2(0.3), 1.0),
    "trivial3": (lambda: G.Trivial(3), 1.0),
    "t2_fps_ball": (lambda: G.T(2), 0.6),
    "trivial3_ball": (lambda: G.Trivial(3), 1.0),
}


class FirstPointStart:
    """Draws whose uniforms are 0: FPS starts at the first valid point of every cloud (the
    goldens fix the original's random start there). Nothing else is drawn in these cases."""

    def uniform(self, xp, shape, dtype, device):
        return xp.zeros(shape, dtype=dtype, device=device)

    def normal(self, xp, shape, dtype, device):
        raise AssertionError("no normal draws expected")

    def priorities(self, xp, shape, device):
        raise AssertionError("no priorities expected (nbhd >= n)")


def load(name):
    d = np.load(DATA / f"{name}.npz")
    sd = {k[3:]: d[k] for k in d.files if k.startswith("sd/")}
    return sd, {k: d[k] for k in d.files if not k.startswith("sd/")}


def make_net(name, **kw):
    group, ds = CASES[name]
    kw = {"group": group(), "bn": True, **kw}
    return lc.LieResNet(3, num_outputs=2, k=16, num_layers=2, nbhd=None, ds_frac=ds, mean=True,
                        **kw)


def run(net, params, state, arrays, xp, dtype):
    p, s = (to_backend(t, xp, getattr(xp, dtype)) for t in (params, state))
    inputs = (asarray(xp, arrays["coords"], dtype), asarray(xp, arrays["values"], dtype),
              asarray(xp, arrays["mask"]))
    out, _ = apply_net(net, p, s, inputs, rng=FirstPointStart())
    return to_numpy(out)


@pytest.mark.parametrize("name", list(CASES))
def test_lieresnet_matches_the_original(name, xp, dtype):
    """Eval mode, batch norm with non-trivial running statistics, every point a neighbour;
    t2_fps_ball / trivial3_ball: finite radius (T(2) with FPS subsampling, 0.6 per layer)."""
    sd, arrays = load(name)
    net = make_net(name)
    params, state = from_original(sd, net)
    out = run(net, params, state, arrays, xp, dtype)
    assert rel_err(out, arrays["out"]) <= TOL[dtype]


def test_springs_hlieresnet_matches_the_original(backend, dtype):
    """The springs HLieResNet (T(2), k=16, 2 layers, no BN): V and H on every backend, the
    vector field (symplectic gradient, by autodiff) on torch and jax."""
    from lieconv_core._backend import namespace_for
    from lieconv_core.dynamics.models import HLieResNet

    xp = namespace_for(backend)
    sd, a = load("springs_hlieresnet")
    model = HLieResNet(group="T2", k=16, num_layers=2)
    params, _ = from_original(sd, model)
    p = to_backend(params, xp, getattr(xp, dtype))
    bs, n = a["sys"].shape[:2]
    z = asarray(xp, a["z"].reshape(bs, 2, n, 2), dtype)
    sys = asarray(xp, a["sys"], dtype)
    assert rel_err(to_numpy(model.potential(p, z[:, 0, ...], sys)), a["V"]) <= TOL[dtype]
    assert rel_err(to_numpy(model.energy(p, z, sys)), a["H"]) <= TOL[dtype]
    if backend in ("torch", "jax"):
        f = to_numpy(model.vector_field(p, z, sys)).reshape(bs, -1)
        assert rel_err(f, a["vector_field"]) <= TOL[dtype]
        # ṗ = −∂H/∂q = −∂V/∂q alone (smaller than q̇ = p/m, which would dominate the max)
        half = f.shape[1] // 2
        assert rel_err(f[:, half:], a["vector_field"][:, half:]) <= TOL[dtype]


def _numpy_out(name, net=None, sd=None):
    sd_, arrays = load(name)
    net = net or make_net(name)
    params, state = from_original(sd if sd is not None else sd_, net)
    return run(net, params, state, arrays, np, "float64"), arrays["out"]


def test_controls_each_convention_matters(monkeypatch):
    """Controls, float64 numpy: torch's √(var + eps) batch norm, the Euclidean distance for T(2)
    and Trivial(3) (α = 1 and α = 0 make the distance ‖Δx‖) and the unswapped pair order after
    subsampling each move the outputs far beyond round-off."""
    from lieconv_core.nn import layers, lieconv

    out, want = _numpy_out("t3")
    assert rel_err(out, want) <= 1e-12

    def torch_scale(xp, w, var):
        return w / xp.sqrt(var + layers.BN_EPS)

    with monkeypatch.context() as mp:
        mp.setattr(layers, "bn_scale", torch_scale)
        mp.setattr(lieconv, "bn_scale", torch_scale)
        out, want = _numpy_out("t3")
        assert rel_err(out, want) > 1e-7
    out, want = _numpy_out("t2_fps_ball", make_net("t2_fps_ball", group=G.T(2, alpha=1.0)))
    assert rel_err(out, want) > 1e-3
    out, want = _numpy_out("trivial3_ball", make_net("trivial3_ball", group=G.Trivial(3, 0.0)))
    assert rel_err(out, want) > 1e-3
    out, want = _numpy_out("t2_fps_ball", make_net("t2_fps_ball", original_pairs=False))
    assert rel_err(out, want) > 1e-4


def test_import_from_pt_file_with_prefix_and_aliases(tmp_path):
    """A .pt file (torch.save of the full state_dict: the conv also under its alias
    ``net.{i}.net.5.``, a DataParallel ``module.`` prefix, torch tensors, wrapped as oil's
    checkpoints are) imports to the same params and state as the mapping."""
    torch = pytest.importorskip("torch")
    sd, _ = load("t2_fps_ball")
    full = dict(sd)
    for k, v in sd.items():
        if ".conv." in k:
            full[k.replace(".conv.", ".net.5.", 1)] = v
    path = tmp_path / "model.pt"
    torch.save({"model_state": {f"module.{k}": torch.tensor(v) for k, v in full.items()}}, path)
    net = make_net("t2_fps_ball")
    want = from_original(sd, net)
    got = from_original(path, net)
    for a, b in zip(want, got):
        fa, fb = lc.nn.module.flatten(a), lc.nn.module.flatten(b)
        assert fa.keys() == fb.keys()
        for k in fa:
            np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)


def test_import_errors_name_the_key():
    """Unknown and missing keys, shape mismatches and alias conflicts are errors naming the key;
    a net built with other hyperparameters (no batch norm, other width) is refused."""
    sd, _ = load("t2")
    net = make_net("t2")
    bad = {**sd, "net.1.conv.extra": np.zeros(3)}
    with pytest.raises(OriginalWeightsError, match=r"unknown key 'net\.1\.conv\.extra'"):
        from_original(bad, net)
    bad = {k: v for k, v in sd.items() if k != "net.2.net.3.running_var"}
    with pytest.raises(OriginalWeightsError, match=r"missing key 'net\.2\.net\.3\.running_var'"):
        from_original(bad, net)
    bad = {**sd, "net.1.conv.linear.weight": np.zeros((4, 65))}
    with pytest.raises(OriginalWeightsError, match=r"'net\.1\.conv\.linear\.weight': shape"):
        from_original(bad, net)
    bad = {**sd, "net.1.net.5.linear.bias": sd["net.1.conv.linear.bias"] + 1}
    with pytest.raises(OriginalWeightsError, match=r"'net\.1\.net\.5\.linear\.bias' differs"):
        from_original(bad, net)
    with pytest.raises(OriginalWeightsError, match="unknown key"):
        from_original(sd, make_net("t2", bn=False))
    with pytest.raises(OriginalWeightsError, match="shape"):
        from_original(sd, lc.LieResNet(3, num_outputs=2, k=20, num_layers=2, group=G.T(2)))
