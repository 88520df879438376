"""Data-parallel training on CPU: 2 gloo processes under ``torchrun`` and a jax mesh of 2 host
devices train with the losses, weights, batch-norm statistics, radii and optimizer state of one
process on the same global batch; a killed process fails the whole job, which then resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _clouds import shapes, write_npz  # noqa: E402

from lieconv_core.app import io  # noqa: E402
from lieconv_core.app.cli import main  # noqa: E402

pytest.importorskip("torch")

#: an SE(2) model with random lifts, ball subsets smaller than the clouds (random priorities),
#: batch norm and the radius controller: every statistic and draw that a split batch could change
MODEL = ["--kind", "classify", "--group", "SE2", "--k", "8", "--num-layers", "1", "--nbhd", "6",
         "--batch-size", "16", "--lr", "1e-2", "--no-progress"]
#: relative tolerances of "the same numbers as one process": step losses, and the parameters,
#: batch-norm statistics, radii and optimizer state at the end. float32 weights get 1e-3: Adam
#: divides each gradient entry by its own running magnitude, so entries with small gradients
#: carry their float32 rounding (~1e-6 relative) into their steps; one process run with another
#: thread count differs from itself by ~2e-4 in the batch-norm biases after 4 steps as well
TOL = {"float64": 1e-9, "float32": 1e-5}
WEIGHT_TOL = {"float64": 1e-9, "float32": 1e-3}
ROOT = Path(__file__).resolve().parents[1]


def _clouds() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """coords, values (distance to the centroid: varying features, so batch norm is on) and
    labels of 72 generated clouds."""
    x, y = shapes(72, seed=0)
    return x, np.linalg.norm(x - x.mean(1, keepdims=True), axis=-1, keepdims=True), y


@pytest.fixture
def data(tmp_path):
    x, v, y = _clouds()
    return write_npz(tmp_path / "train.npz", x, values=v, labels=y)


def _env(**extra: str) -> dict:
    paths = [str(ROOT), str(ROOT / "backends"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **extra}


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            "2", "-m", "lieconv_core.app.cli", *args]


def _run(cmd: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess:
    """cmd in its own process group, killed with all its children if it outlives ``timeout``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(**env), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        _kill_tree(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL to a still running ``proc`` and all its descendants (torchrun starts each worker
    in a session of its own, out of reach of a signal to the launcher's group)."""
    if proc.poll() is not None:
        return
    pids = _children(proc.pid) if Path("/proc").is_dir() else []
    os.killpg(proc.pid, signal.SIGKILL)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate(timeout=30)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-30))


def _noise_params(run: Path, data: str) -> set[str]:
    """Parameters whose gradient is zero in exact arithmetic: the biases of the linear layers
    that feed a training-mode batch norm (it subtracts the batch mean). Their float64 gradient
    at the init is rounding noise, which Adam's normalisation turns into steps of up to the
    learning rate; their values, their Adam moments and, in float32, the running means they
    shift are rounding noise of any run, one process or several."""
    import torch
    from lieconv_torch.train import TorchTrainer

    from lieconv_core.tasks import get_task
    from lieconv_core.tasks import pointcloud as P

    task = get_task("pointcloud")
    cfg = json.loads((run / "config.json").read_text())["model"]
    model = task.build_model(cfg)
    params, state = model.init_host(np.random.default_rng(0))
    loss_fn = task.loss_fn(model, cfg, "torch")
    tr = TorchTrainer(loss_fn, params, state, dtype="float64")
    batch = task.inputs(P.load_npz(data).take(np.arange(16)), cfg)
    loss, _ = loss_fn(tr.params.tree(), tr.state.tree(), tr.batch(batch), 0)
    loss.backward()
    top = max(float(torch.max(torch.abs(p.grad))) for p in tr.named.values())
    zero = {n for n, p in tr.named.items() if float(torch.max(torch.abs(p.grad))) <= 1e-10 * top}
    assert zero and all(n.endswith(".b") for n in zero), zero
    return zero


def _assert_same_run(got: Path, want: Path, dtype: str, noise: set[str]) -> None:
    """Same step losses, and the same parameters, batch-norm statistics, radii and optimizer
    state at the end, to the dtype's tolerance (the rounding noise of ``noise`` aside: in
    float64 those parameters and the running means they shift still agree to 1e-7, their Adam
    moments are not compared; in float32 neither they, their moments nor the running means
    are)."""
    tol = TOL[dtype]
    lg = json.loads((got / "history.json").read_text())["step_loss"]
    lw = json.loads((want / "history.json").read_text())["step_loss"]
    assert len(lg) == len(lw) > 0
    assert _rel(lg, lw) <= tol, (lg, lw)
    fg, _ = io.load_tensors(got / "last.safetensors")
    fw, _ = io.load_tensors(want / "last.safetensors")
    assert sorted(fg) == sorted(fw)
    assert any(k.startswith("state.") and k.endswith(".r") for k in fw)  # radii compared
    assert any(k.startswith("state.") and k.endswith(".var") for k in fw)  # BN statistics too
    moments = {f"opt.{m}.{n}" for n in noise for m in ("mu", "nu")}
    shifted = noise | {k for k in fw if k.startswith("state.") and k.endswith(".mean")}
    checked = {k: WEIGHT_TOL[dtype] for k in fw if k not in moments and k not in shifted}
    if dtype == "float64":
        checked.update({k: 1e-7 for k in shifted})
    assert len(checked) > len(fw) // 2
    bad = {k: _rel(fg[k], fw[k]) for k, t in checked.items() if _rel(fg[k], fw[k]) > t}
    assert not bad, bad


#: optimizer steps compared: float32 trajectories of one process drift apart by ~1e-5 after
#: some more steps under a mere change of summation order (its thread count)
STEPS = {"float64": 8, "float32": 4}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torchrun_two_gloo_processes_train_like_one(torch1, data, tmp_path, dtype):
    args = ["train", "pointcloud", "--data", data, *MODEL, "--epochs", str(STEPS[dtype] // 4),
            "--dtype", dtype]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main([*args, "--threads", "1", "--out", str(one)]) == 0
    res = _run(_torchrun(*args, "--out", str(two)), timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["steps"] == STEPS[dtype]  # rank 0 prints
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    _assert_same_run(two, one, dtype, _noise_params(one, data))


def _flat_init(run: Path) -> dict:
    """The seeded initial parameters of a run folder's model, flat."""
    from lieconv_core.nn.module import flatten
    from lieconv_core.tasks import get_task

    config = json.loads((run / "config.json").read_text())
    model = get_task(config["task"]).build_model(config["model"])
    return flatten(model.init_host(np.random.default_rng(config["train"]["seed"]))[0])


def _worst(got: Path, want: Path) -> float:
    """The largest relative difference of the step losses or any entry of the last checkpoints
    of two runs (parameters, state, optimizer state)."""
    lg = json.loads((got / "history.json").read_text())["step_loss"]
    lw = json.loads((want / "history.json").read_text())["step_loss"]
    assert len(lg) == len(lw) > 0
    fg, _ = io.load_tensors(got / "last.safetensors")
    fw, _ = io.load_tensors(want / "last.safetensors")
    assert sorted(fg) == sorted(fw)
    return max(_rel(lg, lw), *(_rel(fg[k], fw[k]) for k in fw))


def test_float32_sgd_two_gloo_processes_train_like_one_to_1e5(torch1, data, tmp_path):
    """The issue's float32 bound on the weights too: with plain SGD (no per-entry normalisation
    that amplifies rounding, as Adam's does) the step losses and every parameter, batch-norm
    statistic and radius after 8 steps agree with one process to 1e-5 relative. The bound
    discriminates: the weights moved by over 100 times it (those whose gradient is zero in
    exact arithmetic aside), and one process trained on half of each batch (a rank without
    the gradient all-reduce) ends far outside it."""
    args = ["train", "pointcloud", "--data", data, *MODEL, "--epochs", "2", "--dtype",
            "float32", "--optimizer", "sgd", "--lr", "0.1"]
    one, two, half = tmp_path / "one", tmp_path / "two", tmp_path / "half"
    assert main([*args, "--threads", "1", "--out", str(one)]) == 0
    res = _run(_torchrun(*args, "--out", str(two)), timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(json.loads((one / "history.json").read_text())["step_loss"]) == 8
    assert _worst(two, one) <= TOL["float32"]
    init, (last, _) = _flat_init(one), io.load_tensors(one / "last.safetensors")
    noise = _noise_params(one, data)
    assert min(_rel(last[k], init[k]) for k in init if k not in noise) > 100 * TOL["float32"]
    assert main([*args, "--batch-size", "8", "--max-steps", "8", "--threads", "1",
                 "--out", str(half)]) == 0
    assert _worst(half, one) > 1e3 * TOL["float32"]


def _children(pid: int) -> list[int]:
    """Every descendant process of ``pid`` (Linux /proc)."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def _rank_pid(root: int, rank: int) -> int | None:
    for pid in _children(root):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and b"LOCAL_RANK=" + str(rank).encode() in env:
            return pid
    return None


def _rank_1_once_evaluated(proc: subprocess.Popen, out: Path, evals: int) -> int:
    """The pid of rank 1 of the torchrun job ``proc`` once its run folder ``out`` records
    ``evals`` evaluations (training is under way)."""
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        hist = out / "history.json"
        if hist.exists() and len(json.loads(hist.read_text() or "{}").get("evals", [])) >= evals:
            victim = _rank_pid(proc.pid, 1)
            if victim is not None:
                return victim
        time.sleep(0.05)
    raise AssertionError("training did not get under way")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds ranks in /proc")
def test_a_hung_rank_fails_the_job_after_the_dist_timeout(torch1, data, tmp_path):
    """SIGSTOP of rank 1 mid-training (alive, never answering): rank 0's next collective gives
    up after --dist-timeout and fails naming the option; torchrun stops the job (SIGTERM, then
    SIGKILL after its 30 s grace: a stopped process does not act on SIGTERM) and exits non-zero,
    and no process of the job is left."""
    timeout = 10
    args = ["train", "pointcloud", "--data", data, *MODEL, "--epochs", "40", "--dtype",
            "float64", "--dist-timeout", str(timeout)]
    out = tmp_path / "hung"
    proc = subprocess.Popen(_torchrun(*args, "--out", str(out)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True)
    try:
        victim = _rank_1_once_evaluated(proc, out, 1)
        os.kill(victim, signal.SIGSTOP)
        t0 = time.time()
        _, err = proc.communicate(timeout=240)
        took = time.time() - t0
    finally:
        _kill_tree(proc)
    assert proc.returncode != 0
    assert f"rank 0: another process did not join a collective within --dist-timeout {timeout} s"\
        in err, err[-3000:]
    assert "Timed out" in err and "SIGKILL" in err
    assert timeout < took < timeout + 30 + 60, took
    time.sleep(1)
    state = Path(f"/proc/{victim}/stat")
    assert not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds ranks in /proc")
def test_a_killed_rank_fails_the_job_and_the_run_resumes(torch1, data, tmp_path):
    """SIGKILL of rank 1 mid-training: torchrun exits non-zero within seconds, naming the rank
    and the signal; --resume under torchrun continues from rank 0's last checkpoint and ends
    with the weights of one uninterrupted process."""
    args = ["train", "pointcloud", "--data", data, *MODEL, "--epochs", "40", "--dtype",
            "float64", "--dist-timeout", "60"]
    out = tmp_path / "cut"
    proc = subprocess.Popen(_torchrun(*args, "--out", str(out)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True)
    try:
        victim = _rank_1_once_evaluated(proc, out, 2)
        os.kill(victim, signal.SIGKILL)
        t0 = time.time()
        _, err = proc.communicate(timeout=90)
        assert proc.returncode != 0
        assert time.time() - t0 < 60
        assert "SIGKILL" in err and "rank" in err, err[-3000:]
    finally:
        _kill_tree(proc)
    done = len(json.loads((out / "history.json").read_text())["step_loss"])
    assert 0 < done < 160
    stop = ["--max-steps", str(done + 8)]
    res = _run(_torchrun(*args, *stop, "--out", str(out), "--resume"), timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    one = tmp_path / "one"
    assert main([*args, *stop, "--threads", "1", "--out", str(one)]) == 0
    _assert_same_run(out, one, "float64", _noise_params(one, data))


JAX_CHILD = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    sys.path.insert(0, sys.argv[1])
    from test_data_parallel import _clouds
    from lieconv_core.tasks import get_task, pointcloud as P
    from lieconv_core.tasks.clouds import standardise
    from lieconv_core.app.training import fit
    from lieconv_jax.distributed import ShardedJaxTrainer
    assert len(jax.devices()) == 2
    x, v, y = _clouds()
    train, val = P.holdout(P.from_arrays(x, v, labels=y))
    task = get_task("pointcloud")
    cfg = standardise(task.model_config("classify", "SE2", 1, 2, k=8, num_layers=1, nbhd=6,
                                        bn=P.use_bn(train)), train)
    assert cfg["bn"]
    out = {}
    for name, device in (("one", "cpu"), ("two", None)):  # one device; the mesh of both
        h = fit(task, cfg, {"train": train, "val": val}, f"{sys.argv[2]}/{name}", backend="jax",
                epochs=2, batch_size=16, lr=1e-2, dtype="float64", device=device,
                progress=False)
        tr = h["trainer"]
        b = tr.batch({"x": [[0.0]] * 16})["x"]
        out[name] = {"sharded": isinstance(tr, ShardedJaxTrainer),
                     "devices": len(b.sharding.device_set),
                     "shard_rows": sorted({s.data.shape[0] for s in b.addressable_shards})}
    print(json.dumps(out))
""")


def test_jax_mesh_of_two_host_devices_trains_like_one(torch1, data, tmp_path):
    """float64 (the float32 comparison runs on torch: the jax compile of each run is the slow
    part of this test)."""
    pytest.importorskip("jax")
    res = _run([sys.executable, "-c", JAX_CHILD, str(Path(__file__).parent), str(tmp_path)],
               timeout=600, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert info["one"] == {"sharded": False, "devices": 1, "shard_rows": [16]}
    assert info["two"] == {"sharded": True, "devices": 2, "shard_rows": [8]}
    one = tmp_path / "one"
    assert len(json.loads((one / "history.json").read_text())["step_loss"]) == STEPS["float64"]
    _assert_same_run(tmp_path / "two", one, "float64", _noise_params(one, data))


def _task_runs(tmp: Path) -> dict[str, list[str]]:
    """``lieconv train`` arguments of 4 float64 steps (2 epochs of 2 batches of 8) of each task
    on tiny generated data (the fixtures of test_tasks.py; springs generates its own)."""
    from test_tasks import _cormorant, _mnist_dir

    d = tmp / "data"
    d.mkdir()
    for split, seed in (("train", 0), ("valid", 1), ("test", 2)):
        _cormorant(d / f"{split}.npz", n=16, seed=seed)
    common = ["--epochs", "2", "--batch-size", "8", "--k", "8", "--num-layers", "1",
              "--dtype", "float64", "--no-progress"]
    return {"springs": ["springs", "--model", "hlieconv", "--group", "T2", "--n-train", "16",
                        "--n-val", "4", *common],
            "qm9": ["qm9", "--data-dir", str(d), "--target", "homo", *common],
            "rotmnist": ["rotmnist", "--mnist-dir", str(_mnist_dir(d, 40, 20)), "--group", "SO2",
                         "--n-train", "16", "--n-val", "4", "--n-test", "4", *common]}


#: trains every ``lieconv train`` argv of its JSON argument in one process (one launch for all
#: tasks) and prints the trainer classes that fit made
TASKS_CHILD = textwrap.dedent("""
    import json, sys
    from lieconv_core.app.training import engine
    made, make = [], engine.make_trainer
    def record(*args, **kw):
        made.append(make(*args, **kw))
        return made[-1]
    engine.make_trainer = record
    from lieconv_core.app.cli import main
    for argv in json.loads(sys.argv[1]):
        if main(argv) != 0:
            sys.exit(f"failed: {argv}")
    print(json.dumps([type(t).__name__ for t in made]))
""")


def _assert_same_losses(got: Path, want: Path, name: str) -> None:
    lg = json.loads((got / "history.json").read_text())["step_loss"]
    lw = json.loads((want / "history.json").read_text())["step_loss"]
    assert len(lg) == len(lw) == 4, (name, lg, lw)
    assert _rel(lg, lw) <= TOL["float64"], (name, lg, lw)


def test_tasks_train_like_one_process_on_two_gloo_processes(torch1, tmp_path):
    """springs (its loss differentiates the model's gradient: a double backward through DDP,
    with a parameter the loss never reaches), qm9 and rotmnist: the step losses of 2 gloo
    processes are those of one process on the same global batches."""
    runs = _task_runs(tmp_path)
    for name, args in runs.items():
        assert main(["train", *args, "--threads", "1", "--out", str(tmp_path / "one" / name)]) == 0
    child = tmp_path / "child.py"
    child.write_text(TASKS_CHILD)
    argvs = [["train", *args, "--out", str(tmp_path / "two" / n)] for n, args in runs.items()]
    res = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                "2", str(child), json.dumps(argvs)], timeout=480)
    assert res.returncode == 0, res.stderr[-3000:]
    made = json.loads(res.stdout.strip().splitlines()[-1])
    assert made == ["DistributedTorchTrainer"] * len(runs)
    for name in runs:
        _assert_same_losses(tmp_path / "two" / name, tmp_path / "one" / name, name)


#: 4 training steps of each task (the data and model of its ``lieconv train`` arguments) on
#: one jax device and on the mesh of both; trainer steps without the runs' evaluations, whose
#: compiles would take minutes more (and the evaluation of springs runs on jax fails in one
#: process too, with an XLA input mismatch)
JAX_TASKS_CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    from lieconv_core.app.cli import _model_and_data, build_parser, setup_backend
    from lieconv_core.app.training.engine import make_trainer
    from lieconv_jax.distributed import init_mesh
    setup_backend("jax", "float64", 1)
    out = {}
    for argv in json.loads(sys.argv[1]):
        task, cfg, data, _ = _model_and_data(build_parser().parse_args(argv))
        model = task.build_model(cfg)
        params, state = model.init_host(np.random.default_rng(0))
        train, got = data["train"], []
        for device, comm in (("cpu", None), (None, init_mesh())):
            tr = make_trainer("jax", task.loss_fn(model, cfg, "jax"), params, state, lr=1e-2,
                              total_steps=4, dtype="float64", device=device, comm=comm)
            got.append([type(tr).__name__, [tr.step(task.inputs(train.take(np.arange(i, i + 8)),
                                                                cfg), i) for i in (0, 8, 0, 8)]])
        out[argv[1]] = got
    print(json.dumps(out))
""")


def test_tasks_train_like_one_device_on_a_jax_mesh_of_two(tmp_path):
    """springs, qm9 and rotmnist training steps on jax: the step losses of a mesh of 2 host
    devices are those of one device."""
    pytest.importorskip("jax")
    runs = _task_runs(tmp_path)
    res = _run([sys.executable, "-c", JAX_TASKS_CHILD,
                json.dumps([["train", *args, "--out", "-"] for args in runs.values()])],
               timeout=600, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert sorted(out) == sorted(runs)
    for name, (one, two) in out.items():
        assert one[0] == "JaxTrainer" and two[0] == "ShardedJaxTrainer", name
        assert len(one[1]) == 4 and _rel(two[1], one[1]) <= TOL["float64"], (name, one, two)


def test_shares_draws_and_the_sum_hook(monkeypatch):
    """A share's draws are the rows of the global batch's draws, call after call; batches
    split into equal shares only; the sum hook is the identity unless installed, and no
    launcher (or a launcher of one process) means no communicator."""
    from lieconv_core.app.training.engine import data_parallel
    from lieconv_core.parallel import ShareDraws, active, dp_sum, share, summing_over, take_share
    from lieconv_core.random import PortableDraws

    def draws(d, bs):
        return [d.uniform(np, (bs, 4), np.float64, None), d.priorities(np, (bs, 7), None),
                d.normal(np, (bs, 3, 2), np.float64, None)]

    whole = draws(PortableDraws(5), 6)
    for rank in range(3):
        rows = share(6, rank, 3)
        got = draws(ShareDraws(PortableDraws(5), rows, 6), 2)
        for g, w in zip(got, whole, strict=True):
            np.testing.assert_array_equal(g, w[rows])
    with pytest.raises(ValueError, match="no leading batch axis"):
        ShareDraws(PortableDraws(0), share(6, 0, 3), 6).uniform(np, (3,), np.float64, None)
    with pytest.raises(ValueError, match="multiple of 2"):
        share(7, 0, 2)
    part = take_share({"a": np.arange(8), "b": np.arange(16).reshape(8, 2)}, 1, 4)
    np.testing.assert_array_equal(part["a"], [2, 3])
    assert not active() and dp_sum(3.0) == 3.0
    with summing_over(lambda x: 2 * x):
        assert active() and dp_sum(3.0) == 6.0
    assert not active()
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert data_parallel("torch") is None
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert data_parallel("torch") is None
    assert data_parallel("numpy") is None
