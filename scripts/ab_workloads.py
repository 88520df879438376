"""Time the paper workloads' forward and training step with whichever lieconv library is first
on the path, through this checkout's benchmark runner (asv_bench/benchmarks/_common.py).

An A/B against an older commit on one noisy machine: run it twice in a row, once with the old
library in front and once with this one, e.g.

    git worktree add /tmp/old <old-commit>
    (cd /tmp/old && PYTHONPATH=/tmp/old:/tmp/old/backends python $PWD/scripts/ab_workloads.py old)
    python scripts/ab_workloads.py new

Prints one line per workload and mode: tag, workload, mode, median seconds, all timed calls.
``--workloads springs`` times the springs training step of asv_bench/benchmarks/springs.py
(torch:cpu or jax:cpu; step only).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "asv_bench"))

from benchmarks._common import WORKLOADS, Bench, Runner, workload  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tag", help="label printed on every line (e.g. old / new)")
    ap.add_argument("--backend", default="torch:cpu")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--repeat", type=int, default=3, help="timed calls after one warm-up")
    args = ap.parse_args()
    import lieconv_core

    print(f"# {args.tag}: lieconv_core from {pathlib.Path(lieconv_core.__file__).parent}",
          flush=True)
    b = Bench.get(args.backend)
    for name in args.workloads.split(","):
        if name == "springs":
            _springs(args)
            continue
        for mode in ("fwd", "step"):
            model, inputs, targets, loss = workload(name)
            r = Runner(b, model, inputs, targets, loss)
            fn = r.step if mode == "step" else r.forward
            fn()
            ts = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                b.sync(fn())
                ts.append(time.perf_counter() - t0)
            ts.sort()
            print(args.tag, name, mode, f"{ts[len(ts) // 2]:.3f}", [round(t, 3) for t in ts],
                  flush=True)


def _springs(args: argparse.Namespace) -> None:
    from benchmarks.springs import _batch, _trainer

    z, sys_, ts_grid = _batch()
    trainer = _trainer(args.backend)
    trainer.step(z, sys_, ts_grid)  # warm-up (jax: compile)
    ts = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        trainer.step(z, sys_, ts_grid)  # returns a float: synchronised
        ts.append(time.perf_counter() - t0)
    ts.sort()
    print(args.tag, "springs", "step", f"{ts[len(ts) // 2]:.3f}", [round(t, 3) for t in ts],
          flush=True)


if __name__ == "__main__":
    main()
