#!/bin/bash
# The springs conservation and cross-backend checks, measured with the CLI (docs/benchmarks.md):
#   1. linear-momentum drift of 500-step rollouts, float64 and float32: HLieConv-T(2) against the
#      controls FLieConv-T(2) and FC (short training: 400 chunks, 4 epochs, 2 layers);
#   2. torch and jax, float64, same seed, data and initial weights: the first 20 training losses
#      of the paper's HLieConv-T(2) (k = 384, 4 layers; batch 50);
#   3. float32 weights trained on torch, loaded in numpy: V(q) against torch's.
# ~3 min on 2 CPU cores.  Usage: scripts/springs_acceptance.sh OUT_DIR  (OUT_DIR must be new)
set -euo pipefail
R=${1:?usage: scripts/springs_acceptance.sh OUT_DIR}
if [ -e "$R" ] && [ -n "$(ls -A "$R")" ]; then
  echo "springs_acceptance: $R already holds files; choose a new OUT_DIR" >&2; exit 2
fi
LIECONV=${LIECONV:-.venv/bin/lieconv}
PY=${PY:-.venv/bin/python}
SHORT="--n-train 400 --epochs 4 --num-layers 2 --batch-size 50 --lr 1e-2 --seed 0 --threads 1
       --no-progress"
for dt in float64 float32; do
  $LIECONV train springs --backend torch --model hlieconv --group T2 --k 64 --dtype $dt $SHORT \
    --out "$R/hlieconv-t2-$dt" > /dev/null
  $LIECONV train springs --backend torch --model flieconv --group T2 --k 64 --dtype $dt $SHORT \
    --out "$R/flieconv-t2-$dt" > /dev/null
  $LIECONV train springs --backend torch --model fc --k 128 --dtype $dt $SHORT \
    --out "$R/fc-$dt" > /dev/null
  for m in hlieconv-t2 flieconv-t2 fc; do
    $LIECONV evaluate springs --checkpoint "$R/$m-$dt" --out "$R/$m-$dt/eval" --n-test 200 \
      --n-rollout 20 --rollout-steps 500 --threads 1 > /dev/null
  done
done
PAPER="--model hlieconv --group T2 --k 384 --num-layers 4 --n-train 1000 --batch-size 50
       --dtype float64 --max-steps 20 --seed 0 --threads 2 --no-progress"
$LIECONV train springs --backend torch $PAPER --out "$R/paper-torch-f64" > /dev/null
$LIECONV train springs --backend jax $PAPER --out "$R/paper-jax-f64" > /dev/null
"$PY" - "$R" <<'PY'
import json, sys
from pathlib import Path

import numpy as np

root = Path(sys.argv[1])
print("1. 500-step rollouts of 20 test systems: relative drift (mean over systems of the max "
      "over time)")
print(f"   {'model':<14}{'dtype':<9}{'lin. momentum':>15}{'ang. momentum':>15}{'energy':>10}")
for dt in ("float64", "float32"):
    for m in ("hlieconv-t2", "flieconv-t2", "fc"):
        mt = json.loads((root / f"{m}-{dt}" / "eval" / "metrics.json").read_text())
        print(f"   {m:<14}{dt:<9}{mt['linear_momentum_rel_drift']:>15.2e}"
              f"{mt['angular_momentum_rel_drift']:>15.2e}{mt['energy_rel_drift']:>10.2e}")
lt, lj = (np.array(json.loads((root / f"paper-{b}-f64" / "history.json").read_text())
                   ["step_loss"]) for b in ("torch", "jax"))
assert len(lt) == len(lj) == 20, (len(lt), len(lj))
print(f"2. paper HLieConv-T(2), float64, first 20 losses: torch {lt[0]:.6g} -> {lt[-1]:.6g}; "
      f"max |torch - jax| / |torch| = {np.max(np.abs(lt - lj) / np.abs(lt)):.2e}")

import torch  # noqa: E402

from lieconv_core.app import io  # noqa: E402
from lieconv_core.data import springs as S  # noqa: E402

run = root / "hlieconv-t2-float32"
model, p_np, _ = io.load_model(run, backend="numpy", dtype="float32")
_, p_t, _ = io.load_model(run, backend="torch", dtype="float32")
z0, sys_ = S.draw_systems(200, seed=11)
q, s32 = z0[:, 0].astype(np.float32), sys_.astype(np.float32)
v_np = np.asarray(model.potential(p_np, q, s32), dtype=np.float64)
with torch.no_grad():
    v_t = model.potential(p_t, torch.from_numpy(q), torch.from_numpy(s32)).numpy()
print(f"3. torch-trained float32 weights in numpy, V(q) of 200 systems: max |numpy - torch| / "
      f"max |V| = {np.max(np.abs(v_np - v_t)) / np.max(np.abs(v_t)):.2e}")
PY
