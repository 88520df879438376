"""The backend registry and the group capabilities: a backend registered in one place reaches every
entry point that lists backends; a group declared in this file alone gets the Euclidean fast paths
(cell-list search, kernel support) with no edit to library code."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import array_api_compat as aac
import numpy as np
import pytest

from lieconv_core import groups as G
from lieconv_core import neighbourhoods as nb
from lieconv_core._backend import (
    BackendEntry,
    adapter_for,
    backend_name,
    backend_names,
    namespace_for,
    register_backend,
    unregister_backend,
)
from lieconv_core.adapter import ReferenceAdapter
from lieconv_core.groups.base import Group, norm

ROOT = Path(__file__).resolve().parents[1]


class CountingKernels(nb.NativeKernels):
    """Native kernels that count the neighbour searches they are asked for and decline each one,
    so the array-API search answers (a backend plugs its kernels in the same way)."""

    def neighbourhood(self, xp, query, points, k, r, priorities, knn):
        ToyAdapter.calls["neighbourhood"] = ToyAdapter.calls.get("neighbourhood", 0) + 1
        return None


class ToyAdapter(ReferenceAdapter):
    """The reference adapter, counting the neighbour searches and aggregations it runs."""

    name = "toy"
    calls: dict = {}

    def native_kernels(self, group):
        return CountingKernels()

    def pointconv(self, xp, layers, emb, values, nbr_idx, nbr_mask):
        ToyAdapter.calls["pointconv"] = ToyAdapter.calls.get("pointconv", 0) + 1
        return super().pointconv(xp, layers, emb, values, nbr_idx, nbr_mask)


@pytest.fixture
def toy():
    """array_api_strict registered a second time, as "toy", with :class:`ToyAdapter` (later
    registrations are asked first, so strict arrays reach the toy adapter while it is
    registered)."""
    pytest.importorskip("array_api_strict")
    ToyAdapter.calls.clear()
    entry = register_backend(BackendEntry(
        "toy", "array_api_strict", aac.is_array_api_strict_namespace,
        "tests.test_registry:ToyAdapter", specs=("toy",)))
    try:
        yield entry
    finally:
        unregister_backend("toy")


def _net_and_inputs(dtype="float64"):
    from lieconv_core import LieResNet

    net = LieResNet(chin=2, num_outputs=3, k=16, num_layers=1, group=G.T(2), nbhd=8,
                    fill=0.5, bn=False)
    g = np.random.default_rng(0)
    coords = g.standard_normal((2, 12, 2))
    values = g.standard_normal((2, 12, 2))
    mask = np.ones((2, 12), bool)
    return net, (coords.astype(dtype), values.astype(dtype), mask)


def test_a_registered_backend_reaches_every_entry_point(toy):
    import lieconv_core.tools.consistency as C
    from lieconv_core.app import cli
    from lieconv_core.app.training.engine import HostRunner
    from lieconv_core.nn.module import to_backend

    xp = namespace_for("toy")
    assert "toy" in backend_names() and backend_name(xp) == "toy"
    assert isinstance(adapter_for(xp), ToyAdapter)

    # the library: init on the backend by name, a forward that follows its arrays
    net, inputs = _net_and_inputs()
    params, state = net.init(seed=0, dtype="float64", backend="toy")
    want, _ = net.apply(*net.init(seed=0, dtype="float64", backend="numpy"),
                        tuple(np.asarray(a) for a in inputs))
    got, _ = net.apply(params, state, tuple(xp.asarray(a) for a in inputs))
    assert ToyAdapter.calls["neighbourhood"] > 0 and ToyAdapter.calls["pointconv"] > 0
    np.testing.assert_allclose(np.from_dlpack(got), np.asarray(want), rtol=1e-12, atol=1e-12)

    # the training engine's host runner (forward passes on backends without a trainer)
    host_params, host_state = net.init(seed=0, dtype="float64", backend="numpy")
    runner = HostRunner("toy", host_params, host_state, "float64")
    ToyAdapter.calls.clear()
    batch = {"coords": inputs[0], "values": inputs[1], "mask": inputs[2]}
    out = runner.run(lambda p, s, bt, seed: net.apply(
        p, s, (bt["coords"], bt["values"], bt["mask"]))[0], batch)
    assert ToyAdapter.calls["pointconv"] > 0
    np.testing.assert_allclose(out, np.asarray(want), rtol=1e-12, atol=1e-12)
    assert to_backend(host_params, xp, xp.float64) is not None

    # the consistency table (and the asv benchmarks, which resolve its specs)
    assert "toy" in C.all_specs()
    b = C.resolve("toy")
    assert b.name == "toy" and isinstance(b.adapter, ToyAdapter)
    rows = C.run(["numpy", "toy"], dtypes=("float64",), only=["LieResNet"], repeats=0)
    toy_rows = [r for r in rows if r.spec == "toy"]
    assert toy_rows and all(r.ok and not r.error for r in toy_rows)

    # the CLI: evaluate/predict accept it; the backend's settings go through its adapter
    cli.setup_backend("toy", "float64", None, None, backend_names())
    with pytest.raises(cli.CLIError, match="unknown backend"):
        cli.setup_backend("toy2", "float64", None, None, backend_names())

    # nox reads the registry
    spec = importlib.util.spec_from_file_location("_noxfile_under_test", ROOT / "noxfile.py")
    noxfile = importlib.util.module_from_spec(spec)
    sys.modules.pop("_noxfile_under_test", None)
    pytest.importorskip("nox")
    spec.loader.exec_module(noxfile)
    assert "toy" in noxfile.BACKENDS and noxfile.MODULE["toy"] == "array_api_strict"

    # unregistered, strict arrays reach the plain reference adapter again
    unregister_backend("toy")
    try:
        assert backend_name(xp) == "array_api_strict"
        assert type(adapter_for(xp)) is ReferenceAdapter
    finally:
        register_backend(toy)


def test_registry_rejects_duplicates_and_unknown_names():
    from lieconv_core._backend import get_backend

    with pytest.raises(ValueError, match="registered already"):
        register_backend(get_backend("numpy"))
    with pytest.raises(ValueError, match="not a known backend"):
        get_backend("no-such-backend")


# --- group capabilities --------------------------------------------------------------------------

class Shift(Group):
    """Translations of R^d written from scratch: elements are the points, log(v⁻¹u) = u − v, and
    the distance ‖u − v‖, declared Euclidean."""

    euclidean_distance = True
    q_dim = 0

    def __init__(self, d: int = 2):
        self.space_dim = self.elem_dim = self.lie_dim = d

    def lift(self, xp, coords, nsamples, draws):
        return coords, None

    def pair_log(self, xp, u, v):
        return u - v

    def distance_from_log(self, xp, a, qu, qv):
        return norm(xp, a)


class UndeclaredShift(Shift):
    """The same group with its own distance hook and no declaration: not Euclidean."""

    def distance_from_log(self, xp, a, qu, qv):
        return 2 * norm(xp, a)


def test_a_declared_euclidean_group_gets_the_fast_paths():
    from lieconv_core.neighbourhoods import cell_list as grid

    g = Shift(2)
    assert G.supports_group(g) and not G.supports_group(UndeclaredShift(2))
    assert not G.supports_group(Shift(4))  # more coordinates than the kernels handle
    assert not any(G.supports_group(h) for h in (G.SO2(), G.SE2(), G.SE3()))
    assert G.supports_group(G.Tx())  # the core and the kernels agree on coordinate subgroups

    # the kernels' support decision (no GPU needed: it is asked before any launch)
    for mod in ("lieconv_torch.adapter", "lieconv_jax.adapter", "lieconv_cupy.adapter"):
        try:
            ad = importlib.import_module(mod).ADAPTER
        except ImportError:
            continue
        assert ad.native_kernels(g).fused
        assert not getattr(ad.native_kernels(UndeclaredShift(2)), "fused", False)

    # the cell-list search: taken (force=True), with the chunked search's exact answer
    rng = np.random.default_rng(3)
    bs, n, k = 2, 400, 12
    x = rng.uniform(0, 4, (bs, n, 2))
    mask = rng.uniform(size=(bs, n)) < 0.9
    prio = np.stack([rng.permutation(n) for _ in range(bs)])
    ref = ReferenceAdapter()
    pts = (x, None, mask)
    for knn in (False, True):
        got = grid.grid_neighbourhood(np, ref, g, pts, pts, k, 0.3, prio, knn, force=True)
        assert got is not None
        want = nb.chunked_neighbourhood(ref, np, g, pts, pts, k, 0.3, prio, knn)
        for a, b in zip(got, want):
            if b is not None:
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert grid.grid_neighbourhood(np, ref, UndeclaredShift(2), pts, pts, k, 0.3, prio, False,
                                   force=True) is None


def test_capabilities_follow_the_hooks_a_subclass_overrides():
    class OwnEmbedding(Shift):
        def pair_embed(self, xp, u, qu, v, qv):
            return xp.concat([u, v], axis=-1)

    assert Shift.embeds_from_log and not OwnEmbedding.embeds_from_log
    assert OwnEmbedding.euclidean_distance  # the distance hooks are untouched
    assert G.T.distance_from_log_only and not G.SE2.distance_from_log_only
    assert not G.Trivial.embeds_from_log and G.Trivial.euclidean_distance
