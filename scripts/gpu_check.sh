#!/usr/bin/env bash
# GPU check of the LieConv kernels (issue #4) - for a session that has a CUDA machine.
# 1) runs the kernel tests for real on CUDA (Triton compiled; Pallas compiled if jax sees a GPU;
#    cupy CUDA kernels if cupy is installed), 2) prints kernel-vs-reference timings (torch).
# Usage: scripts/gpu_check.sh   (from the repository root; ~3-5 min on an H100/H200)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
unset TRITON_INTERPRET
echo "== kernel tests on CUDA =="
LIECONV_PALLAS_COMPILED=1 timeout 420 "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_kernels_triton.py tests/test_kernels_pallas.py tests/test_kernels_cuda.py 2>&1 | tail -25
echo "== timings: Triton kernels vs reference path (torch, CUDA, median ms) =="
timeout 240 "$PY" - <<'PYEOF'
import torch
from lieconv_core.adapter import ReferenceAdapter
from lieconv_core.groups.translation import T
from lieconv_torch.adapter import TorchAdapter, xp_torch

assert torch.cuda.is_available(), "no CUDA device"
xp, ref, ker = xp_torch(), ReferenceAdapter(), TorchAdapter("auto")
dev = "cuda"
g = torch.Generator(device=dev).manual_seed(0)


def bench(f, reps=20):
    f(); torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); f(); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return sorted(ts)[len(ts) // 2]


for dt in (torch.float32, torch.float64):
    # RotMNIST-like: 25 clouds x 648 points (T(2)), FPS to 10%, k = 25; QM9-like pointconv
    bs, n, m, k, c = 25, 648, 65, 25, 64
    x = torch.randn(bs, n, 2, device=dev, dtype=dt, generator=g) * 10
    mask = torch.rand(bs, n, device=dev, generator=g) > 0.05
    u = torch.rand(bs, device=dev, dtype=dt, generator=g)
    prio = torch.argsort(torch.rand(bs, n, device=dev, generator=g), dim=1)
    r = torch.tensor(3.0, device=dev, dtype=dt)
    emb = torch.randn(bs, n, k, 2, device=dev, dtype=dt, generator=g, requires_grad=True)
    vals = torch.randn(bs, n, c, device=dev, dtype=dt, generator=g, requires_grad=True)
    widths = [2, 32, 32, 16]
    layers = [(torch.randn(widths[i], widths[i + 1], device=dev, dtype=dt, generator=g)
               .div(widths[i] ** 0.5).requires_grad_(True),
               torch.zeros(widths[i + 1], device=dev, dtype=dt, requires_grad=True))
              for i in range(3)]
    q = (x, None, mask)
    idx, nm, _ = ref.neighbourhood(xp, T(2), q, q, k, r, prio, False)
    rows = []
    for name, f in [
        ("fps m=65", lambda a: a.fps(xp, T(2), x, None, mask, m, u)),
        ("ball nbhd", lambda a: a.neighbourhood(xp, T(2), q, q, k, r, prio, False)),
        ("knn nbhd", lambda a: a.neighbourhood(xp, T(2), q, q, k, r, prio, True)),
        ("pointconv fwd", lambda a: a.pointconv(xp, layers, emb, vals, idx, nm)),
        ("pointconv fwd+bwd", lambda a: a.pointconv(xp, layers, emb, vals, idx, nm).sum()
         .backward()),
    ]:
        rows.append((name, bench(lambda: f(ker)), bench(lambda: f(ref))))
    same = torch.equal(ker.fps(xp, T(2), x, None, mask, m, u), ref.fps(xp, T(2), x, None, mask, m, u))
    print(f"-- {dt} (bs={bs}, n={n}, k={k}, c={c}); fps indices identical: {same}")
    for name, tk, tr in rows:
        print(f"{name:20s} kernel {tk:9.3f} ms   reference {tr:9.3f} ms   speed-up {tr / tk:6.1f}x")
PYEOF
