"""CPU seconds of a paper workload's training step (torch, one thread), through one fixed
benchmark runner, with whichever lieconv library is first on the path: an A/B of two library
versions that a busy machine disturbs less than wall-clock time.

The runner comes from ``RUNNER_CHECKOUT/asv_bench`` (the older checkout, so that both libraries
run the same step code). Libraries whose T(d) distance is the original's α‖Δx‖ get
``T(d, alpha=1)``, so that their balls, and the radius controller's steps, are those of a
library with the plain Euclidean distance: both sides then do the same work. ::

    git worktree add /tmp/old <old-commit>
    PYTHONPATH=/tmp/old:/tmp/old/backends python scripts/ab_cpu_seconds.py /tmp/old rotmnist_T2
    python scripts/ab_cpu_seconds.py /tmp/old rotmnist_T2

Prints the median and all of five timed steps (after one untimed step).
"""

from __future__ import annotations

import inspect
import sys
import time


def main() -> None:
    checkout, name = sys.argv[1], sys.argv[2]
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, f"{checkout}/asv_bench")
    try:  # the consistency table's module moved to lieconv_core.tools
        import lieconv_core.tools.consistency as consistency

        sys.modules["lieconv_core.consistency"] = consistency
    except ImportError:
        pass
    import benchmarks._common as common

    from lieconv_core.groups import T

    if "alpha" in inspect.signature(T.__init__).parameters:
        common.T = lambda d: T(d, alpha=1.0)
    bench = common.Bench.get("torch:cpu")
    runner = common.Runner(bench, *common.workload(name))
    runner.step()
    ts = []
    for _ in range(5):
        t0 = time.process_time()
        bench.sync(runner.step())
        ts.append(time.process_time() - t0)
    ts.sort()
    print(f"{name} median {ts[2]:.3f} s", [round(t, 3) for t in ts])


if __name__ == "__main__":
    main()
