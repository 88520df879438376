"""The asv benchmark modules import and enumerate their parameters, and the FLOP counter behind
the ``track_*_gflop`` benchmarks counts a known product exactly."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "asv_bench"


@pytest.fixture(scope="module")
def bench_path():
    sys.path.insert(0, str(BENCH))
    yield
    sys.path.remove(str(BENCH))


@pytest.mark.parametrize("name", ["groups", "layer", "sampling", "springs", "workloads",
                                  "consistency"])
def test_benchmark_modules_import_and_list_classes(bench_path, name):
    direct = importlib.import_module("direct")
    module = importlib.import_module(f"benchmarks.{name}")
    classes = direct._classes(module)
    assert classes, name
    for cls in classes:
        assert direct._combos(cls, None), cls


def test_count_gflop_counts_a_matmul(bench_path):
    torch = pytest.importorskip("torch")
    from benchmarks._common import count_gflop

    a, b = torch.ones(64, 32), torch.ones(32, 16)
    assert count_gflop(lambda: a @ b) == pytest.approx(2 * 64 * 32 * 16 / 1e9, rel=0, abs=1e-15)
    assert count_gflop(lambda: a + 1) == 0.0  # elementwise work is not counted
