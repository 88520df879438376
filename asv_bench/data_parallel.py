"""Throughput of data-parallel training steps: the paper workloads' training step (the training
engine's trainer on the workload's model and a synthetic global batch) with 1 process and with N
``torchrun`` processes (gloo on CPU, nccl on CUDA), the same global batch for every N.

    python asv_bench/data_parallel.py --workloads qm9_T3,rotmnist_T2 --procs 1,2 --threads 2
    python asv_bench/data_parallel.py --device cuda --procs 1,2,4,8 --json scaling.json

``--threads`` is the CPU threads of the whole job, shared by its processes (each gets
threads // N): on a CPU the rows compare the same cores used by one process and by several.
The global batch is the workload's (QM9-like: 32 molecules; RotMNIST: 24 images, the paper's 25
rounded to a multiple of 2, 4 and 8). Each timed step starts from the state that the warm-up
steps left (the radius controller would otherwise change the workload from step to step).
Prints one JSON line per row; with ``--json`` writes them all to a file.

This is a multi-process measurement, so it is a script rather than an asv class (asv times
functions inside its own process).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BATCH = {"qm9": 32, "rotmnist": 24}


def worker(args: argparse.Namespace) -> None:
    """One process of a measurement (under torchrun, or alone for N = 1)."""
    sys.path.insert(0, str(HERE))
    import numpy as np
    import torch
    from benchmarks._common import image_batch, image_model, molecule_batch, molecule_model

    from lieconv_core.app.training.engine import data_parallel, make_trainer
    from lieconv_core.tasks.clouds import CloudTask

    kind, group = args.workload.split("_")
    comm = data_parallel("torch", args.device)
    procs = 1 if comm is None else comm.processes
    torch.set_num_threads(max(1, args.threads // procs))
    if kind == "qm9":
        model, (c, v, m, y) = molecule_model(group), molecule_batch(BATCH[kind])
        batch, cfg = {"coords": c, "values": v, "mask": m, "targets": y}, {"kind": "regress"}
    else:
        model, (c, v, m, y) = image_model(group), image_batch(BATCH[kind])
        batch, cfg = {"coords": c, "values": v, "mask": m, "labels": y}, {"kind": "classify"}
    params, state = model.init_host(np.random.default_rng(0))
    tr = make_trainer("torch", CloudTask().loss_fn(model, cfg, "torch"), params, state, lr=3e-3,
                      total_steps=10**9, device=args.device, comm=comm)
    for i in range(2):  # warm-up: allocator, FPS caches
        tr.step(batch, i)
    start_state = {k: v.detach().clone() for k, v in tr.state.named_buffers()}

    def sync() -> None:
        if tr.device.type == "cuda":
            torch.cuda.synchronize(tr.device)
        if comm is not None:
            torch.distributed.barrier()

    times = []
    for i in range(args.steps):
        with torch.no_grad():
            for k, buf in tr.state.named_buffers():
                buf.copy_(start_state[k])
        sync()
        t0 = time.perf_counter()
        tr.step(batch, 10 + i)
        sync()
        times.append(time.perf_counter() - t0)
    if comm is None or comm.rank == 0:
        med = float(np.median(times))
        print(json.dumps({"workload": args.workload, "processes": procs,
                          "threads_per_process": torch.get_num_threads(),
                          "device": str(tr.device.type), "global_batch": BATCH[kind],
                          "median_step_s": med, "steps_per_s": 1 / med,
                          "samples_per_s": BATCH[kind] / med}), flush=True)


def measure(workload: str, procs: int, args: argparse.Namespace) -> dict:
    """Runs one row in fresh processes; its JSON line."""
    inner = [str(Path(__file__).resolve()), "--worker", "--workload", workload, "--steps",
             str(args.steps), "--threads", str(args.threads)]
    if args.device:
        inner += ["--device", args.device]
    if procs == 1:
        cmd = [sys.executable, *inner]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
               str(procs), *inner]
    paths = [str(ROOT), str(ROOT / "backends"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
           "OMP_NUM_THREADS": str(max(1, args.threads // procs))}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{workload} with {procs} process(es) failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


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
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workload", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    rows = []
    for name in args.workloads.split(","):
        base = None
        for n in (int(x) for x in args.procs.split(",")):
            row = measure(name, n, args)
            base = base or row["samples_per_s"]
            row["speedup"] = row["samples_per_s"] / base
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
