#!/bin/bash
# HLieConv-SO(2) against the controls FLieConv-T(2) and FC: angular-momentum drift of long
# rollouts as the RK4 step shrinks (docs/benchmarks.md). Takes several minutes on a small CPU.
# Usage: scripts/angular_drift.sh OUT_DIR   (OUT_DIR must not hold earlier runs)
set -euo pipefail
R=${1:?usage: scripts/angular_drift.sh OUT_DIR}
LIECONV=${LIECONV:-.venv/bin/lieconv}
COMMON="--backend torch --n-train 400 --epochs 6 --num-layers 2 --batch-size 50 --dtype float64
        --threads 1 --lr 1e-2 --seed 0 --no-progress"
$LIECONV train springs --model hlieconv --group SO2 --k 64 $COMMON --out "$R/hlieconv-so2"
$LIECONV train springs --model flieconv --group T2 --k 64 $COMMON --out "$R/flieconv-t2"
$LIECONV train springs --model fc --k 128 $COMMON --out "$R/fc"
for m in hlieconv-so2 flieconv-t2 fc; do
  for s in 1 2 4; do
    $LIECONV evaluate springs --checkpoint "$R/$m" --out "$R/$m-eval-s$s" --n-test 200 \
      --n-rollout 10 --rollout-steps 200 --substeps "$s" --threads 1 > "$R/$m-eval-s$s.log"
  done
done
python3 - "$R" <<'PY'
import json, sys
root = sys.argv[1]
print(f"{'model':<16}{'S=1':>10}{'S=2':>10}{'S=4':>10}   (angular momentum relative drift)")
for m in ("hlieconv-so2", "flieconv-t2", "fc"):
    d = [json.load(open(f"{root}/{m}-eval-s{s}/metrics.json"))["angular_momentum_rel_drift"]
         for s in (1, 2, 4)]
    print(f"{m:<16}" + "".join(f"{x:>10.2g}" for x in d))
PY
