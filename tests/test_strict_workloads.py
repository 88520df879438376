"""The paper workloads (asv_bench ``workloads``) run their forward on array_api_strict, in
several query chunks whose last one is shorter (issue 23: ``map_query_chunks`` sliced past the
end of the query axis, which the standard leaves unspecified and array_api_strict rejects)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lieconv_core import adapter as adapter_mod
from lieconv_core import neighbourhoods as nb
from lieconv_core.adapter import ReferenceAdapter
from lieconv_core.nn import LieConv
from lieconv_core.rows import equal_step

pytest.importorskip("array_api_strict")

BENCH = Path(__file__).resolve().parents[1] / "asv_bench"


@pytest.fixture(scope="module")
def bench_path():
    sys.path.insert(0, str(BENCH))
    yield
    sys.path.remove(str(BENCH))


def test_map_query_chunks_ragged_last_chunk():
    """116 queries in chunks of 39: the last chunk holds 38 (stop clipped to the axis)."""
    import array_api_strict as xps

    x = xps.reshape(xps.arange(2 * 116, dtype=xps.float64), (2, 116))
    out = ReferenceAdapter().map_query_chunks(xps, lambda a, none: a * 2.0, (x, None), 39)
    assert np.array_equal(np.from_dlpack(out), 2.0 * np.from_dlpack(x))


@pytest.fixture
def ragged_chunks(monkeypatch):
    """Small chunk bounds, so that the reduced workloads still take several chunks; records
    (m, step) of every map_query_chunks call."""
    calls = []
    real = ReferenceAdapter.map_query_chunks

    def spy(self, xp, fn, arrays, step):
        m = next(a for a in arrays if a is not None).shape[1]
        calls.append((m, equal_step(m, step)))
        return real(self, xp, fn, arrays, step)

    monkeypatch.setattr(ReferenceAdapter, "map_query_chunks", spy)
    monkeypatch.setattr(adapter_mod, "CHUNK_PAIRS_HOST", 1 << 14)
    monkeypatch.setattr(LieConv, "chunk_elems", 1 << 16)
    return calls


def _inputs(name: str):
    from benchmarks._common import image_batch, image_model, molecule_batch, molecule_model

    kind, group = name.split("_")
    if kind == "qm9":
        c, v, m, _ = molecule_batch(bs=2)
        return molecule_model(group), (c, v, m)
    c, v, m, _ = image_batch(bs=1)
    return image_model(group), (c, v, m)


@pytest.mark.parametrize("name", ["qm9_T3", "qm9_SE3", "rotmnist_T2", "rotmnist_SE2"])
def test_workload_forward_on_strict(bench_path, ragged_chunks, name):
    from benchmarks._common import Bench, Runner

    model, inputs = _inputs(name)
    outs = []
    for spec in ("array_api_strict", "numpy"):
        b = Bench.get(spec)
        outs.append(b.to_numpy(Runner(b, model, inputs, np.zeros(1), "l1").forward()))
    assert any(m > step and m % step for m, step in ragged_chunks), ragged_chunks
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("knn", [False, True])
def test_neighbourhood_k_above_n_is_a_valueerror(knn):
    """k > n would slice the n columns past their end: an error naming k."""
    import array_api_strict as xps

    from lieconv_core.groups import T

    e = xps.zeros((1, 5, 3), dtype=xps.float64)
    pts = (e, None, xps.ones((1, 5), dtype=xps.bool))
    prio = xps.reshape(xps.arange(5), (1, 5))
    with pytest.raises(ValueError, match="k must be at most"):
        nb.neighbourhood(ReferenceAdapter(), xps, T(3), pts, pts, 6, xps.asarray(1.0), prio, knn)
