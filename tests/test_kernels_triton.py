"""Triton kernels of the torch adapter against the reference adapter.

On a CUDA machine the tests run the compiled kernels on CUDA tensors. Without CUDA they run under
the Triton interpreter, which must be enabled before triton is imported; so in an ordinary pytest
process the per-case tests are skipped and ``test_interpreter_subprocess`` re-runs this file in a
child pytest with ``TRITON_INTERPRET=1`` (nothing leaks into the other test files).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

sys.path.insert(0, str(Path(__file__).parent))
from _kernel_cases import CASES, assert_close, make_case  # noqa: E402

from lieconv_core import neighbourhoods as nb  # noqa: E402
from lieconv_core.adapter import ReferenceAdapter  # noqa: E402

CUDA = torch.cuda.is_available()
INTERP = os.environ.get("TRITON_INTERPRET") == "1"
IN_PROCESS = CUDA or INTERP
DEVICE = "cuda" if CUDA and not INTERP else "cpu"

needs_kernels = pytest.mark.skipif(
    not IN_PROCESS, reason="no CUDA: run by test_interpreter_subprocess under TRITON_INTERPRET=1")


@pytest.mark.skipif(IN_PROCESS, reason="kernels run in this process")
def test_interpreter_subprocess(tmp_path):
    """This file's kernel tests in a child pytest under the interpreter: every test the child
    selects must pass, none may skip, and it must select all of them (a junit report counts)."""
    import xml.etree.ElementTree as ET

    env = dict(os.environ, TRITON_INTERPRET="1")
    report = tmp_path / "child.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         f"--junitxml={report}", "-k", "not test_interpreter_subprocess", __file__],
        env=env, capture_output=True, text=True, timeout=900, cwd=Path(__file__).parent.parent)
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, tail
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "skipped", "failures", "errors")}
    assert counts["skipped"] == counts["failures"] == counts["errors"] == 0, (counts, tail)
    assert counts["tests"] == EXPECTED_IN_CHILD, (counts, tail)
    print(proc.stdout.strip().splitlines()[-1])


#: tests the child runs: fps, neighbourhood (x2: ball, knn) and pointconv per case and dtype,
#: plus test_fps_is_kernel_path, the double-backward, partial-grads and fallback tests
EXPECTED_IN_CHILD = len(CASES) * 2 * 4 + 4


@contextlib.contextmanager
def kernels_run(**expected):
    """Assert that the block launched each Triton kernel ``name`` exactly ``count`` times
    (``name=count``; 0: not at all): the kernels themselves ran, not the reference fallback."""
    from lieconv_torch.kernels import launch

    launch.LAUNCHES.clear()
    yield
    got = {name: launch.LAUNCHES[name] for name in expected}
    assert got == expected, f"kernel launches {got}, expected {expected}"


@pytest.fixture(scope="module")
def env():
    from lieconv_torch.adapter import TorchAdapter, xp_torch

    return xp_torch(), TorchAdapter("auto" if DEVICE == "cuda" else "interpret"), ReferenceAdapter()


def _t(a, **kw):
    return torch.as_tensor(np.asarray(a), device=DEVICE, **kw)


def _np(t):
    return t.detach().cpu().numpy()


@needs_kernels
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fps(env, case, dtype):
    xp, ad, ref = env
    c = make_case(case, dtype)
    x, mask, u = _t(c["x"]), _t(c["mask"]), _t(c["u"])
    for m in sorted({1, c["m"], c["n"]}):
        with kernels_run(fps=1):
            got = nb.fps(ad, xp, c["group"], x, None, mask, m, u)
        want = nb.fps(ref, xp, c["group"], x, None, mask, m, u)
        np.testing.assert_array_equal(_np(got), _np(want), err_msg=f"m={m}")
        assert got.dtype == want.dtype


def test_fps_is_kernel_path():
    """The adapter really dispatches to the launcher (and not silently to the reference)."""
    if not IN_PROCESS:
        pytest.skip("kernels not runnable in this process")
    from lieconv_torch.adapter import TorchAdapter

    ad = TorchAdapter("auto" if DEVICE == "cuda" else "interpret")
    x = torch.zeros((1, 3, 2), device=DEVICE)
    assert ad._launchers(x) is not None


@needs_kernels
@pytest.mark.parametrize("knn", [False, True], ids=["ball", "knn"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_neighbourhood(env, case, dtype, knn):
    xp, ad, ref = env
    c = make_case(case, dtype)
    q = (_t(c["qe"]), None, _t(c["qmask"]))
    p = (_t(c["x"]), None, _t(c["mask"]))
    r, prio = _t(c["r"]), _t(c["prio"])
    with kernels_run(knn=int(knn), ball=int(not knn)):
        got = nb.neighbourhood(ad, xp, c["group"], q, p, c["k"], r, prio, knn)
    want = nb.neighbourhood(ref, xp, c["group"], q, p, c["k"], r, prio, knn)
    np.testing.assert_array_equal(_np(got[0]), _np(want[0]), err_msg="indices")
    np.testing.assert_array_equal(_np(got[1]), _np(want[1]), err_msg="mask")
    if knn:
        assert got[2] is None and want[2] is None
    else:
        np.testing.assert_array_equal(_np(got[2]), _np(want[2]), err_msg="counts")
        assert got[2].dtype == want[2].dtype


def _pointconv_inputs(c, ref, xp):
    q = (_t(c["qe"]), None, _t(c["qmask"]))
    p = (_t(c["x"]), None, _t(c["mask"]))
    idx, nmask, _ = nb.neighbourhood(ref, xp, c["group"], q, p, c["k"], _t(c["r"]),
                                     _t(c["prio"]), False)
    emb = _t(c["emb"]).requires_grad_(True)
    values = _t(c["values"]).requires_grad_(True)
    layers = [(_t(w).requires_grad_(True), _t(b).requires_grad_(True)) for w, b in c["layers"]]
    return emb, values, idx, nmask, layers


@needs_kernels
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pointconv_forward_backward(env, case, dtype):
    xp, ad, ref = env
    c = make_case(case, dtype)
    emb, values, idx, nmask, layers = _pointconv_inputs(c, ref, xp)
    with kernels_run(pointconv_fwd=1):
        got = ad.pointconv(xp, layers, emb, values, idx, nmask)
    want = ref.pointconv(xp, layers, emb, values, idx, nmask)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert_close(_np(got), _np(want), dtype, "forward")
    ins = [emb, values] + [t for wb in layers for t in wb]
    g = _t(c["grad_out"])
    with kernels_run(pointconv_bwd=1):
        got_g = torch.autograd.grad(got, ins, g)
    want_g = torch.autograd.grad(want, ins, g)
    names = ["emb", "values", "W1", "b1", "W2", "b2", "W3", "b3"]
    for name, a, b in zip(names, got_g, want_g):
        assert_close(_np(a), _np(b), dtype, f"d{name}")


@needs_kernels
def test_pointconv_double_backward(env):
    """create_graph=True (Hamiltonian models) falls back to a differentiable backward."""
    xp, ad, ref = env
    c = make_case("T2-grid", "float64")
    emb, values, idx, nmask, layers = _pointconv_inputs(c, ref, xp)
    outs = []
    for a, launches in ((ad, 1), (ref, 0)):
        with kernels_run(pointconv_fwd=launches):
            out = a.pointconv(xp, layers, emb, values, idx, nmask)
            (ge,) = torch.autograd.grad((out ** 2).sum(), emb, create_graph=True)
            (gw,) = torch.autograd.grad((ge ** 2).sum(), layers[0][0])
        outs.append(gw)
    assert_close(_np(outs[0]), _np(outs[1]), "float64", "double backward")


@needs_kernels
def test_pointconv_partial_grads(env):
    """Only some inputs require grad (e.g. frozen weights)."""
    xp, ad, ref = env
    c = make_case("T3-random", "float32")
    emb, values, idx, nmask, layers = _pointconv_inputs(c, ref, xp)
    layers = [(w.detach(), b.detach()) for w, b in layers]
    with kernels_run(pointconv_fwd=1, pointconv_bwd=1):
        got = torch.autograd.grad(ad.pointconv(xp, layers, emb, values.detach(), idx,
                                               nmask).sum(), emb)
    want = torch.autograd.grad(ref.pointconv(xp, layers, emb, values.detach(), idx, nmask).sum(),
                               emb)
    assert_close(_np(got[0]), _np(want[0]), "float32", "demb")


def test_fallback_for_unsupported_groups():
    """SO2 (not covered by the kernels) and CPU tensors in auto mode take the reference path."""
    from lieconv_torch.adapter import TorchAdapter, xp_torch

    from lieconv_core.groups.so2 import SO2

    xp, ref = xp_torch(), ReferenceAdapter()
    ad = TorchAdapter("auto")
    c = make_case("T2-grid", "float64")
    x, mask, u = torch.as_tensor(c["x"]), torch.as_tensor(c["mask"]), torch.as_tensor(c["u"])
    th, rr = x[..., :1], x[..., 1:].abs()
    a = nb.fps(ad, xp, SO2(), th, rr, mask, 4, u)
    b = nb.fps(ref, xp, SO2(), th, rr, mask, 4, u)
    assert torch.equal(a, b)
    assert TorchAdapter("never")._launchers(x) is None
    if not CUDA:
        assert ad._launchers(x) is None
