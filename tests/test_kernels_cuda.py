"""CUDA kernels of the cupy adapter (backends/lieconv_cupy/kernels.cu).

* the source compiles with nvcc (PTX for sm_80) whenever nvcc is installed - no GPU needed;
* the kernels run against the reference adapter only where cupy imports and sees a GPU.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _kernel_cases import CASES, assert_close, make_case  # noqa: E402

from lieconv_core import neighbourhoods as nb  # noqa: E402
from lieconv_core.adapter import ReferenceAdapter  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CU = ROOT / "backends" / "lieconv_cupy" / "kernels.cu"
KERNELS = [f"{name}_{s}" for name in ("fps", "ball", "knn", "pc_fwd", "pc_bwd")
           for s in ("f32", "f64")]


def _cupy_ok() -> tuple[bool, str]:
    if importlib.util.find_spec("cupy") is None:
        return False, "cupy is not installed"
    try:
        import cupy

        if not cupy.is_available():
            return False, "cupy sees no CUDA device"
    except Exception as exc:  # broken CUDA install
        return False, f"cupy unusable: {exc}"
    return True, ""


CUPY_OK, CUPY_WHY = _cupy_ok()
needs_cupy = pytest.mark.skipif(not CUPY_OK, reason=CUPY_WHY)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_nvcc_compiles(tmp_path):
    out = tmp_path / "kernels.ptx"
    proc = subprocess.run(["nvcc", "-arch=sm_80", "-std=c++14", "--ptx", "-o", str(out), str(CU)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ptx = out.read_text()
    for name in KERNELS:
        assert f".entry {name}(" in ptx, f"kernel {name} missing from the PTX"


@pytest.fixture(scope="module")
def env():
    import array_api_compat.cupy as xp
    import cupy
    from lieconv_cupy.adapter import CupyAdapter

    # cupy's own namespace is not the array API (argsort has no `stable`, full no `device`):
    # the library always works through array_api_compat.cupy, so the reference must too
    return cupy, xp, CupyAdapter("auto"), ReferenceAdapter()


def _launched(**expected):
    """Assert the CUDA kernels launched since the last call, ``name=count``, and reset."""
    from lieconv_cupy.adapter import LAUNCHES

    got = {name: LAUNCHES[name] for name in expected}
    LAUNCHES.clear()
    assert got == expected, f"kernel launches {got}, expected {expected}"


@needs_cupy
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fps_neighbourhood(env, case, dtype):
    cp, xp, ad, ref = env
    c = make_case(case, dtype)
    x, mask, u = cp.asarray(c["x"]), cp.asarray(c["mask"]), cp.asarray(c["u"])
    _launched()
    for m in sorted({1, c["m"], c["n"]}):
        got = nb.fps(ad, xp, c["group"], x, None, mask, m, u)
        _launched(fps=1)  # the kernel itself, not the reference fallback
        want = nb.fps(ref, xp, c["group"], x, None, mask, m, u)
        np.testing.assert_array_equal(cp.asnumpy(got), cp.asnumpy(want), f"fps m={m}")
    q = (cp.asarray(c["qe"]), None, cp.asarray(c["qmask"]))
    p = (x, None, mask)
    for knn in (False, True):
        got = nb.neighbourhood(ad, xp, c["group"], q, p, c["k"], cp.asarray(c["r"]),
                               cp.asarray(c["prio"]), knn)
        _launched(knn=int(knn), ball=int(not knn))
        want = nb.neighbourhood(ref, xp, c["group"], q, p, c["k"], cp.asarray(c["r"]),
                                cp.asarray(c["prio"]), knn)
        for a, b, what in zip(got, want, ("idx", "mask", "counts")):
            if b is None:
                assert a is None
            else:
                np.testing.assert_array_equal(cp.asnumpy(a), cp.asnumpy(b), f"{what} knn={knn}")


@needs_cupy
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pointconv(env, case, dtype):
    cp, xp, ad, ref = env
    c = make_case(case, dtype)
    q = (cp.asarray(c["qe"]), None, cp.asarray(c["qmask"]))
    p = (cp.asarray(c["x"]), None, cp.asarray(c["mask"]))
    idx, nm, _ = nb.neighbourhood(ref, xp, c["group"], q, p, c["k"], cp.asarray(c["r"]),
                                  cp.asarray(c["prio"]), False)
    layers = [(cp.asarray(w), cp.asarray(b)) for w, b in c["layers"]]
    emb, values = cp.asarray(c["emb"]), cp.asarray(c["values"])
    _launched()
    got = ad.pointconv(xp, layers, emb, values, idx, nm)
    _launched(pc_fwd=1)
    want = ref.pointconv(xp, layers, emb, values, idx, nm)
    assert_close(cp.asnumpy(got), cp.asnumpy(want), dtype, "forward")
    # gradients against torch autograd of the reference, when torch is installed
    torch = pytest.importorskip("torch")
    from lieconv_torch.adapter import xp_torch

    t = [torch.as_tensor(cp.asnumpy(a)).requires_grad_(True)
         for a in (emb, values, *[x for wb in layers for x in wb])]
    out = ReferenceAdapter().pointconv(
        xp_torch(), [(t[2], t[3]), (t[4], t[5]), (t[6], t[7])], t[0], t[1],
        torch.as_tensor(cp.asnumpy(idx)), torch.as_tensor(cp.asnumpy(nm)))
    want_g = torch.autograd.grad(out, t, torch.as_tensor(c["grad_out"]))
    grads, demb, dval = ad.pointconv_vjp(layers, emb, values, idx, nm, cp.asarray(c["grad_out"]))
    _launched(pc_bwd=1)
    got_g = [demb, dval, *[x for wb in grads for x in wb]]
    for a, b in zip(got_g, want_g):
        assert_close(cp.asnumpy(a), b.detach().numpy(), dtype, "gradient")
