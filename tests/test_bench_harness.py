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
                                  "consistency", "data_parallel"])
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


_FAKE_ORIGINAL = {
    "lie_conv/__init__.py": "",
    "lie_conv/lieGroups.py": "class T:\n    def __init__(self, d):\n        self.d = d\n",
    "lie_conv/dynamicsTrainer.py": '''
import torch
SEEN = {}
class HLieResNet(torch.nn.Module):
    def __init__(self, **kw):
        super().__init__()
        SEEN["model"] = kw
        self.w = torch.nn.Parameter(torch.ones(()))
class IntegratedDynamicsTrainer:
    def __init__(self, model, dataloaders, opt_constr, lr_sched):
        self.model, self.opt = model, opt_constr(model.parameters())
    def step(self, minibatch):
        SEEN["batch"] = minibatch
        (z0, sysp, ts), target = minibatch
        loss = self.model.w * torch.mean((z0[:, None, :] - target) ** 2)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.detach()
''',
}


def test_original_springs_step_is_skipped_without_a_source_and_gets_its_layout(
        bench_path, tmp_path, monkeypatch):
    """SpringsOriginal is skipped (NotImplementedError naming the variable or the directory)
    without LIECONV_ORIGINAL_SRC or with a directory holding no lie_conv; with a stand-in of the
    original's API it builds HLieResNet(T(2), k=384, 4 layers) and passes the batch in the
    original's layout: z0 = [q flattened, p flattened] of the first time point, targets (bs, T,
    2·n·d) in the same order, ts (bs, T)."""
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    from benchmarks import springs
    from benchmarks._original import ORIGINAL_ENV

    monkeypatch.delenv(ORIGINAL_ENV, raising=False)
    with pytest.raises(NotImplementedError, match=ORIGINAL_ENV):
        springs._original_step(None, None, None)
    monkeypatch.setenv(ORIGINAL_ENV, str(tmp_path / "empty"))
    with pytest.raises(NotImplementedError, match="no lie_conv package"):
        springs._original_step(None, None, None)
    for rel, text in _FAKE_ORIGINAL.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setenv(ORIGINAL_ENV, str(tmp_path))
    assert "lie_conv" not in sys.modules
    bs, steps, n, d = 3, 5, 6, 2
    z = np.random.default_rng(0).standard_normal((bs, steps, 2, n, d)).astype(np.float32)
    sysp = np.ones((bs, n, 2), np.float32)
    ts = np.linspace(0, 0.04, steps)
    try:
        step = springs._original_step(z, sysp, ts)
        assert isinstance(step(), float)
        seen = sys.modules["lie_conv.dynamicsTrainer"].SEEN
    finally:
        for name in [m for m in sys.modules if m == "lie_conv" or m.startswith("lie_conv.")]:
            del sys.modules[name]
    model = seen["model"]
    assert (model["k"], model["num_layers"], model["group"].d, model["d"]) == (384, 4, 2, 2)
    (z0, got_sys, got_ts), target = seen["batch"]
    assert tuple(z0.shape) == (bs, 2 * n * d) and tuple(target.shape) == (bs, steps, 2 * n * d)
    q1, p1 = z[1, 0, 0], z[1, 0, 1]
    np.testing.assert_array_equal(z0[1].numpy(), np.concatenate([q1.ravel(), p1.ravel()]))
    np.testing.assert_array_equal(target[1, 3].numpy(),
                                  np.concatenate([z[1, 3, 0].ravel(), z[1, 3, 1].ravel()]))
    assert tuple(got_ts.shape) == (bs, steps) and got_ts.dtype == torch.float32
    assert str(tmp_path) not in sys.path


def test_original_image_workload_sees_the_same_pixels(bench_path, monkeypatch):
    """The original's image model takes a 28×28 image and keeps the pixels whose centres lie
    within 15 of the centre, in row-major order; the image built for it from the workload's
    point values gives back exactly those values at the workload's own coordinates. Without
    LIECONV_ORIGINAL_SRC the original's column is skipped."""
    np = pytest.importorskip("numpy")
    from benchmarks import _common, _original, workloads

    coords, values, _, _ = _common.image_batch(bs=3)
    img = _original._image(values)
    axis = np.linspace(-14.0, 14.0, 28)  # the original's grid: linspace(-h/2, h/2, h), 'ij'
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1)
    crop = np.linalg.norm(grid, axis=-1) < 15.0
    np.testing.assert_array_equal(img[:, 0][:, crop], values[..., 0].astype(np.float32))
    np.testing.assert_array_equal(grid[crop], coords[0])
    assert not np.array_equal(img[:, 0][:, crop], img[:, 0][:, crop][:, ::-1])  # control
    monkeypatch.delenv(_original.ORIGINAL_ENV, raising=False)
    with pytest.raises(NotImplementedError, match=_original.ORIGINAL_ENV):
        workloads._runner(_original.ORIGINAL, "rotmnist_T2")


def test_direct_runner_reports_a_broken_setup_and_runs_the_rest(bench_path, monkeypatch, capsys):
    """One benchmark whose setup raises (as a torch.compile'd forward did on the H200) is reported
    as an error row; the benchmarks after it still run, and the exit status says something
    failed."""
    import types

    direct = importlib.import_module("direct")
    fake = types.ModuleType("benchmarks._fake_broken")

    class ABroken:
        params = (["numpy"],)

        def setup(self, backend):
            raise RuntimeError("compile failed")

        def time_x(self, backend):
            pass

    class BWorks:
        params = (["numpy"],)

        def track_y(self, backend):
            return 3.0

    for cls in (ABroken, BWorks):
        cls.__module__ = fake.__name__
        setattr(fake, cls.__name__, cls)
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    rows = direct.run(["_fake_broken"], None, repeat=1)
    assert rows[0]["bench"] == "_fake_broken.ABroken['numpy']"
    assert rows[0]["error"] == "setup: RuntimeError: compile failed"
    assert rows[1] == {"bench": "_fake_broken.BWorks['numpy'].track_y", "value": 3.0, "unit": ""}
    assert "setup: RuntimeError: compile failed" in capsys.readouterr().out
    assert direct.main(["--bench", "_fake_broken", "--repeat", "1"]) == 1
