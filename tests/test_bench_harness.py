"""The asv benchmark modules import and enumerate their parameters, the FLOP counter behind
the ``track_*_gflop`` benchmarks counts a known product exactly, and the page-fault counter
behind ``Layer.track_page_faults`` sees fresh memory."""

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


def test_training_steps_start_from_one_fixed_state(bench_path):
    """Runner.step: every step after the first starts from the state the first one left, so the
    radius controller's update does not compound across timed repeats (each repeat times the same
    balls). The controller does move r (control), and steps 2 and 3 leave the same radii."""
    pytest.importorskip("torch")
    import numpy as np
    from benchmarks._common import Bench, Runner

    import lieconv_core as lc

    net = lc.LieResNet(chin=2, num_outputs=3, k=16, num_layers=2, nbhd=4, fill=0.9,
                       group=lc.groups.T(2))
    gen = np.random.default_rng(0)
    inputs = (gen.standard_normal((2, 12, 2)), gen.standard_normal((2, 12, 2)),
              np.ones((2, 12), bool))
    r = Runner(Bench.get("torch:cpu"), net, inputs, np.array([0, 2]), "xent")

    def radii(state):
        return [float(blk["conv"]["r"]) for blk in state["blocks"].values()]

    r0 = radii(r.state)
    r.step()
    r1 = radii(r.last_state)
    r.step()
    r2 = radii(r.last_state)
    r.step()
    assert r1 != r0  # the controller moves r
    assert radii(r.last_state) == r2  # ... but not cumulatively (carried over, r3 != r2)


def test_minor_faults_counts_fresh_pages(bench_path):
    """A call that maps and touches 64 MiB afresh (glibc serves it with its own mmap: it is above
    the largest heap threshold) faults at least once per 2 MiB (numpy asks for transparent huge
    pages; once per 4 KiB page without them); a call that allocates nothing does not fault
    (control)."""
    pytest.importorskip("resource")
    import numpy as np
    from benchmarks._common import Bench, minor_faults

    b = Bench.get("numpy")
    fresh = minor_faults(lambda: np.ones(1 << 24, np.float32).sum(), b, calls=3)
    assert fresh >= (1 << 26) // (2 << 20)
    x = np.ones(1000)
    assert minor_faults(lambda: x.sum(), b, calls=3) <= 16
