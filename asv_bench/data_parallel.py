"""Throughput of data-parallel training steps with 1 process and with N ``torchrun`` processes,
the same global batch for every N: the command line over
:func:`benchmarks.data_parallel.measure` (asv tracks the same as
``data_parallel.DataParallelScaling``).

    python asv_bench/data_parallel.py --workloads qm9_T3,rotmnist_T2 --procs 1,2 --threads 2
    python asv_bench/data_parallel.py --device cuda --procs 1,2,4,8 --json scaling.json

``--threads`` is the CPU threads of the whole job, shared by its processes (each gets
threads // N). Prints one JSON line per row, with its speedup over the first process count;
with ``--json`` writes them all to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarks.data_parallel import measure  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="qm9_T3,rotmnist_T2")
    p.add_argument("--procs", default="1,2", help="process counts, e.g. 1,2,4")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="CPU threads of the whole job")
    p.add_argument("--steps", type=int, default=5, help="timed steps per row")
    p.add_argument("--device", default=None, help="cpu | cuda (one GPU per process)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per row")
    p.add_argument("--json", default=None, help="write the rows to this file")
    args = p.parse_args(argv)
    rows = []
    for name in args.workloads.split(","):
        base = None
        for n in (int(x) for x in args.procs.split(",")):
            row = measure(name, n, args.threads, args.steps, args.device, args.timeout)
            base = base or row["samples_per_s"]
            row["speedup"] = row["samples_per_s"] / base
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
