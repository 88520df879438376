"""Throughput of data-parallel training steps on the CPU, as asv ``track_`` values: the paper
workloads' training step (the training engine's trainer on the workload's model and a synthetic
global batch) with 1 process and with N ``torchrun`` processes (gloo on CPU, nccl on CUDA), the
same global batch for every N.

Each row runs in fresh processes (asv times functions inside its own process, so the
measurement launches the job itself and reports its median step). The CPU threads of a job are
shared by its processes (each gets threads // N): the rows compare the same cores used by one
process and by several. The global batch is the workload's (QM9-like: 32 molecules; RotMNIST:
24 images, the paper's 25 rounded to a multiple of 2, 4 and 8). Each timed step starts from the
state that the warm-up steps left (the radius controller would otherwise change the workload
from step to step). ``asv_bench/data_parallel.py`` is the command line over :func:`measure`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BATCH = {"qm9": 32, "rotmnist": 24}
#: asv parameters: workloads and process counts; the threads of every job
WORKLOADS = ["qm9_T3", "rotmnist_T2"]
PROCESSES = [1, 2]
THREADS = max(PROCESSES)


def measure(workload: str, procs: int, threads: int, steps: int = 5, device: str | None = None,
            timeout: float = 1800) -> dict:
    """The median training step of ``workload`` with ``procs`` processes, in fresh processes.

    Parameters
    ----------
    workload : str
        "qm9_<group>" or "rotmnist_<group>" (:data:`BATCH` gives the global batch).
    procs : int
        Processes: 1 runs one plain process, more a ``torchrun --standalone`` job.
    threads : int
        CPU threads of the whole job, shared by its processes.
    steps : int
        Timed steps (after 2 warm-up steps).
    device : str or None
        "cpu" or "cuda" (one GPU per process); None: CUDA when available.
    timeout : float
        Seconds the job may take.

    Returns
    -------
    dict
        Rank 0's row: workload, processes, threads_per_process, device, global_batch,
        median_step_s, steps_per_s, samples_per_s.

    Raises
    ------
    RuntimeError
        When the job fails (its stderr's tail in the message).
    """
    inner = ["-m", "benchmarks.data_parallel", "--workload", workload, "--steps", str(steps),
             "--threads", str(threads), *(["--device", device] if device else [])]
    launch = [] if procs == 1 else ["-m", "torch.distributed.run", "--standalone",
                                    "--nproc-per-node", str(procs)]
    paths = [str(ROOT), str(ROOT / "backends"), str(HERE.parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
           "OMP_NUM_THREADS": str(max(1, threads // procs))}
    res = subprocess.run([sys.executable, *launch, *inner], capture_output=True, text=True,
                         env=env, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{workload} with {procs} process(es) failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


class DataParallelScaling:
    """Training samples per second of a workload with 1 and 2 processes on the CPU (gloo), the
    job's threads fixed; skipped without torch or with fewer cores than processes."""

    params = (WORKLOADS, PROCESSES)
    param_names = ["workload", "processes"]
    timeout = 1800

    def setup(self, workload: str, procs: int) -> None:
        if importlib.util.find_spec("torch") is None:
            raise NotImplementedError("torch is not installed")
        if procs > (os.cpu_count() or 1):
            raise NotImplementedError(f"{procs} processes need {procs} cores")

    def track_samples_per_second(self, workload: str, procs: int) -> float:
        return measure(workload, procs, THREADS, steps=3, device="cpu")["samples_per_s"]

    track_samples_per_second.unit = "samples/s"


def _worker(workload: str, steps: int, threads: int, device: str | None) -> dict | None:
    """One process of a measurement (under torchrun, or alone); rank 0's row, else None."""
    import numpy as np
    import torch

    from benchmarks._common import image_batch, image_model, molecule_batch, molecule_model
    from lieconv_core.app.training.engine import data_parallel, make_trainer
    from lieconv_core.tasks.clouds import CloudTask

    kind, group = workload.split("_")
    comm = data_parallel("torch", device)
    procs = 1 if comm is None else comm.processes
    torch.set_num_threads(max(1, threads // procs))
    if kind == "qm9":
        model, (c, v, m, y) = molecule_model(group), molecule_batch(BATCH[kind])
        batch, cfg = {"coords": c, "values": v, "mask": m, "targets": y}, {"kind": "regress"}
    else:
        model, (c, v, m, y) = image_model(group), image_batch(BATCH[kind])
        batch, cfg = {"coords": c, "values": v, "mask": m, "labels": y}, {"kind": "classify"}
    params, state = model.init_host(np.random.default_rng(0))
    tr = make_trainer("torch", CloudTask().loss_fn(model, cfg, "torch"), params, state, lr=3e-3,
                      total_steps=10**9, device=device, comm=comm)
    for i in range(2):  # warm-up: allocator, FPS caches
        tr.step(batch, i)
    times = _timed_steps(tr, batch, steps, comm)
    if comm is not None and comm.rank != 0:
        return None
    med = float(np.median(times))
    return {"workload": workload, "processes": procs,
            "threads_per_process": torch.get_num_threads(), "device": str(tr.device.type),
            "global_batch": BATCH[kind], "median_step_s": med, "steps_per_s": 1 / med,
            "samples_per_s": BATCH[kind] / med}


def _timed_steps(tr: object, batch: dict, steps: int, comm: object) -> list[float]:
    """Seconds of each of ``steps`` steps, each from the same state, all processes in step."""
    import torch

    start = {k: v.detach().clone() for k, v in tr.state.named_buffers()}

    def sync() -> None:
        if tr.device.type == "cuda":
            torch.cuda.synchronize(tr.device)
        if comm is not None:
            torch.distributed.barrier()

    times = []
    for i in range(steps):
        with torch.no_grad():
            for k, buf in tr.state.named_buffers():
                buf.copy_(start[k])
        sync()
        t0 = time.perf_counter()
        tr.step(batch, 10 + i)
        sync()
        times.append(time.perf_counter() - t0)
    return times


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--workload", required=True)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None)
    a = p.parse_args()
    row = _worker(a.workload, a.steps, a.threads, a.device)
    if row is not None:
        print(json.dumps(row), flush=True)
