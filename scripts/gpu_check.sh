#!/usr/bin/env bash
# One prepared GPU check (issues #3 and #4), for a session that is lent a CUDA machine.
#
#   OUT=some/new/dir scripts/gpu_check.sh        # from the repository root
#
# All stages together run past one 10-minute device call (the compiled Pallas and cupy tests can
# fill the tests stage's 240 s, and the consistency table needs more than 200 s on the GPU
# specs). With one lease of 15 minutes, split it in two calls:
#   STAGES="tests consistency"                  # ~8 min
#   STAGES="timings bench"                      # ~5 min (springs: a third call or another lease)
#
# Writes into $OUT (default gpu-check-<timestamp>/, never an existing non-empty folder):
#   env.txt             GPU, driver and package versions
#   kernel_tests.log    Triton / Pallas (compiled) / CUDA kernel tests against the reference path
#   consistency.txt     python -m lieconv_core.tools.consistency on numpy, torch:cuda, jax:gpu, cupy
#   kernel_timings.txt  Triton kernels vs the reference path (torch, CUDA events, median ms)
#   bench.log           asv benchmark bodies run directly (asv_bench/direct.py) on the GPU specs
#   springs.log         paper-protocol springs runs (FC, HFC, HLieConv-T2; jax on the GPU) + metrics
#   springs_runs.tgz    their run directories (weights, history, metrics, plots)
#   timeline.txt        when each stage ended, with its exit status
#
# Without an installed lieconv it runs from the source tree (PYTHONPATH); wheels for packages the
# machine lacks can sit in .whl/ (installed into /tmp/site). EPOCHS / NTRAIN shrink the springs
# runs for a dry run; SPRINGS_MODELS (default "fc hfc hlieconv"; "hlieconv-xla" = without the
# Pallas kernels) and SPRINGS_TIMEOUT (s per training, default 420) bound them. STAGES picks stages
# (default "tests consistency timings bench springs"); they run one after another, so that no
# timing shares the GPU. The env/summary files count: at most 8 files come back from a lent machine. JAX_DEFAULT_MATMUL_PRECISION=highest: float32 matmuls in IEEE fp32 on jax
# (its GPU default is TF32), as torch does by default, so both backends compute the same thing.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check-$(date +%Y%m%d-%H%M%S)}
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ]; then
    echo "gpu_check: $OUT already holds files; choose a new OUT" >&2; exit 2
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
EPOCHS=${EPOCHS:-100}
NTRAIN=${NTRAIN:-3000}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:$PWD/backends:${PYTHONPATH:-}
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest
unset TRITON_INTERPRET
T0=$(date +%s)
stamp() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/timeline.txt"; }

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" - <<'PYEOF'
import importlib, sys
print(sys.version.split()[0])
for m in ("numpy", "torch", "triton", "jax", "jaxlib", "optax", "cupy", "array_api_compat"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as exc:  # noqa: BLE001
        print(m, "unavailable:", exc)
import torch, jax
print("torch.cuda", torch.cuda.is_available(), "jax", jax.default_backend(), jax.devices())
PYEOF
} >"$OUT/env.txt" 2>&1
stamp "env"; cat "$OUT/env.txt"

want() { [[ " ${STAGES:-tests consistency timings bench springs} " == *" $1 "* ]]; }

# --- correctness on the GPU: kernel tests (a per-test limit where pytest-timeout exists) --------
if want tests; then
  PT=""; "$PY" -c "import pytest_timeout" 2>/dev/null && PT="--timeout=120"
  LIECONV_PALLAS_COMPILED=1 timeout "${TESTS_TIMEOUT:-300}" "$PY" -m pytest -q -p no:cacheprovider -rs --tb=short $PT \
      ${TESTS:-tests/test_kernels_cuda.py tests/test_kernels_triton.py tests/test_kernels_pallas.py} \
      >"$OUT/kernel_tests.log" 2>&1
  stamp "kernel tests rc=$?"; tail -5 "$OUT/kernel_tests.log"
fi
if want consistency; then
  # a run cut by the timeout still prints the rows done (SIGTERM -> partial table, exit 130)
  timeout "${CONSISTENCY_TIMEOUT:-240}" "$PY" -m lieconv_core.tools.consistency \
      --backends numpy,torch:cuda,jax:gpu,cupy --repeats 1 >"$OUT/consistency.txt" 2>&1
  stamp "consistency rc=$?"
fi

# --- timings: Triton kernels vs the reference path ---------------------------------------------
want timings && timeout 90 "$PY" - >"$OUT/kernel_timings.txt" 2>&1 <<'PYEOF'
import torch
import lieconv_core.neighbourhoods as nb
from lieconv_core.adapter import ReferenceAdapter
from lieconv_core.groups.translation import T
from lieconv_torch.adapter import TorchAdapter, xp_torch

assert torch.cuda.is_available(), "no CUDA device"
xp, ref, ker = xp_torch(), ReferenceAdapter(), TorchAdapter("auto")
dev = "cuda"
g = torch.Generator(device=dev).manual_seed(0)


def bench(f, reps=15):
    f(); torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); f(); b.record(); torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return sorted(ts)[len(ts) // 2]


for dt in (torch.float32, torch.float64):
    # RotMNIST-like: 25 clouds x 648 points (T(2)), FPS to 10%, k = 25; pointconv c = 64
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
    idx, nm, _ = nb.neighbourhood(ref, xp, T(2), q, q, k, r, prio, False)
    rows = []
    for name, f in [
        ("fps m=65", lambda a: nb.fps(a, xp, T(2), x, None, mask, m, u)),
        ("ball nbhd", lambda a: nb.neighbourhood(a, xp, T(2), q, q, k, r, prio, False)),
        ("knn nbhd", lambda a: nb.neighbourhood(a, xp, T(2), q, q, k, r, prio, True)),
        ("pointconv fwd", lambda a: a.pointconv(xp, layers, emb, vals, idx, nm)),
        ("pointconv fwd+bwd", lambda a: a.pointconv(xp, layers, emb, vals, idx, nm).sum()
         .backward()),
    ]:
        rows.append((name, bench(lambda: f(ker)), bench(lambda: f(ref))))
    same = torch.equal(nb.fps(ker, xp, T(2), x, None, mask, m, u), nb.fps(ref, xp, T(2), x, None, mask, m, u))
    print(f"-- {dt} (bs={bs}, n={n}, k={k}, c={c}); fps indices identical: {same}")
    for name, tk, tr in rows:
        print(f"{name:20s} kernel {tk:9.3f} ms   reference {tr:9.3f} ms   speed-up {tr / tk:6.1f}x")
PYEOF
want timings && { stamp "kernel timings done"; cat "$OUT/kernel_timings.txt"; }

# --- asv benchmark bodies on the GPU specs ------------------------------------------------------
# (sampling: T(3) only; SE(3) FPS has no kernel and runs the reference's per-step loop, seconds)
bench() { timeout "$1" "$PY" asv_bench/direct.py --repeat 5 "${@:2}" >>"$OUT/bench.log" 2>&1
          stamp "bench ${*:2} rc=$?"; }
if want bench; then
  bench 90 --bench layer,workloads,springs --backends torch:cuda,cupy  # springs: eager, slowest
  bench 40 --bench sampling --only T3 --backends torch:cuda,cupy,jax:gpu
  bench 150 --bench springs,layer,workloads --backends jax:gpu
fi

# --- springs, paper protocol (jax, GPU), last and alone on the GPU ------------------------------
# "<model>" runs through the Pallas kernels; "<model>-xla" with LIECONV_JAX_KERNELS=never
RUNS=/tmp/lieconv-springs-runs
rm -rf "$RUNS"
if want springs; then
  for run in ${SPRINGS_MODELS:-fc hfc hlieconv}; do
    model=${run%-xla}; kern=auto; [ "$run" != "$model" ] && kern=never
    ( LIECONV_JAX_KERNELS=$kern timeout "${SPRINGS_TIMEOUT:-420}" "$PY" -m lieconv_core.app.cli \
          train springs --backend jax --device gpu --model "$model" --group T2 \
          --n-train "$NTRAIN" --epochs "$EPOCHS" --no-progress --out "$RUNS/$run" 2>&1 \
          | sed "s/^/[$run] /"
      LIECONV_JAX_KERNELS=$kern timeout 150 "$PY" -m lieconv_core.app.cli evaluate springs \
          --checkpoint "$RUNS/$run" --out "$RUNS/$run/eval" --device gpu 2>&1 \
          | sed "s/^/[$run eval] /" ) >>"$OUT/springs.log" 2>&1 &
  done
  wait
  stamp "springs done"
fi
want springs && "$PY" - "$RUNS" ${SPRINGS_MODELS:-fc hfc hlieconv} >>"$OUT/springs.log" 2>&1 <<'PYEOF'
import json, sys
from pathlib import Path
for model in sys.argv[2:]:
    run = Path(sys.argv[1]) / model
    try:
        h = json.loads((run / "history.json").read_text())
        mt = json.loads((run / "eval" / "metrics.json").read_text())
    except OSError as exc:
        print(f"== {model}: {exc}")
        continue
    keys = ("test_mse", "rollout_mse", "energy_rel_drift", "linear_momentum_rel_drift",
            "angular_momentum_rel_drift")
    print(f"== {model}: epochs {h['epoch']} in {h['seconds']:.0f} s, best val {h['best_val']:.4g} "
          f"(epoch {h['best_epoch']}); " + ", ".join(f"{k} {mt[k]:.4g}" for k in keys))
PYEOF
tar czf "$OUT/springs_runs.tgz" -C "$RUNS" . 2>/dev/null
stamp "done"
