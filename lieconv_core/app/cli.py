"""The ``lieconv`` command line.

    lieconv train TASK --out DIR [--backend torch|jax] [--device D] [--epochs E] ...
    lieconv evaluate TASK --checkpoint DIR --out DIR2     (metrics.json and plots)
    lieconv predict TASK --checkpoint DIR --out DIR2 ...  (predictions.npz)
    lieconv equivariance TASK --checkpoint DIR [DIR ...]  (metric on original / moved inputs)
    lieconv compare RUN [RUN ...] --out DIR               (runs side by side)
    lieconv demo                                          (springs: conservation table)

TASK is springs, rotmnist, qm9 or pointcloud (``lieconv train TASK --help`` lists its flags).
Every output folder follows :mod:`lieconv_core.app.training.rundir`: nothing that exists is
replaced without ``--overwrite``, and a run owns only the files it writes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..parallel import process_rank
from ..tasks import TASKS, DataError, get_task
from . import io
from .training.rundir import RunDirError

DEVICE_HELP = ("torch: cpu (default), cuda, cuda:1, ...; jax: cpu, gpu, gpu:1, ... "
               "(default: jax's default device)")


class CLIError(Exception):
    pass


# --- argument types ------------------------------------------------------------------------------
def _number(cast: Any, low: float, name: str, strict: bool = False):
    def parse(text: str) -> Any:
        try:
            val = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {name}") from None
        if (val <= low) if strict else (val < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {text}")
        if isinstance(val, float) and not np.isfinite(val):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        return val

    return parse


POS_INT = _number(int, 1, "whole number")
NONNEG_INT = _number(int, 0, "whole number")
POS_FLOAT = _number(float, 0.0, "number", strict=True)
NONNEG_FLOAT = _number(float, 0.0, "number")


def _check_choice(value: str, choices: tuple, what: str) -> str:
    if value not in choices:
        raise CLIError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def setup_backend(backend: str, dtype: str, threads: int | None, device: str | None = None,
                  choices: tuple | None = None) -> None:
    """Application-level framework settings (the library never changes them at import;
    :meth:`ReferenceAdapter.configure`), and a check that ``device`` exists before any work
    starts. ``choices``: the accepted backends (default: those with a trainer)."""
    from .._backend import adapter_for, get_backend, namespace_for, trainable_backends

    _check_choice(backend, trainable_backends() if choices is None else choices, "backend")
    try:
        adapter = adapter_for(namespace_for(backend))
    except ImportError as exc:
        extra = get_backend(backend).extra or backend
        raise CLIError(f"backend {backend!r} is not installed ({exc}); "
                       f"pip install 'lieconv[{extra}]'") from exc
    adapter.configure(float64=dtype == "float64", threads=threads)
    if device is not None:
        from .training.engine import resolve_device

        if backend not in trainable_backends():
            raise CLIError(f"--device is for {' and '.join(trainable_backends())}, "
                           f"not {backend!r}")
        try:
            resolve_device(backend, device)
        except (RuntimeError, ValueError) as exc:
            raise CLIError(f"--device {device!r}: {exc}") from exc


# --- train ---------------------------------------------------------------------------------------
def _model_and_data(args: argparse.Namespace) -> tuple[Any, dict, dict, dict]:
    """(task, model config, datasets, data description) for ``lieconv train``."""
    from ..tasks import clouds

    task = get_task(args.task)
    if args.task == "springs":
        from ..data.springs import CENTER_CHOICES
        from ..tasks.springs import split_datasets

        _check_choice(args.center, CENTER_CHOICES, "--center")
        cfg = task.model_config(args.model, args.group or "T2", args.k, args.num_layers or 4)
        data = split_datasets(args.n_train or 3000, args.n_val or 200, 1, args.data_seed,
                              args.center)
        return task, cfg, data, {"data_seed": args.data_seed, "center": args.center}
    if args.task == "rotmnist":
        from ..tasks import rotmnist

        cfg = task.model_config(args.group or "SE2", args.k, args.num_layers, args.total_ds,
                                args.fill, args.nbhd, args.liftsamples, args.alpha,
                                knn=args.knn, augment=not args.no_augment)
        data, info = rotmnist.load_splits(tuple(args.amat) if args.amat else None,
                                          args.mnist_dir, args.data_seed, _sizes(args),
                                          upright=args.upright)
        return task, cfg, data, info
    if args.task == "qm9":
        from ..tasks import qm9

        cfg = task.model_config(args.target, args.group or "T3", args.k, args.num_layers,
                                args.nbhd, args.fill, args.liftsamples, args.alpha,
                                augment=not args.no_augment)
        data, info = qm9.load_splits(args.data_dir, args.data_seed, args.cache_dir, _sizes(args))
        data = {k: task.dataset_for_training(v, cfg) for k, v in data.items()}
        return task, clouds.standardise(cfg, data["train"]), data, info
    from ..tasks import pointcloud as P

    if not args.data:
        raise CLIError("train pointcloud needs --data FILE.npz")
    train = P.load_npz(args.data)
    if args.val_data:
        val = P.load_npz(args.val_data)
    else:
        train, val = P.holdout(train, seed=args.data_seed)
    kind = clouds.validate_kind(args.kind)
    key = "labels" if kind == "classify" else "targets"
    if key not in train.arrays:
        raise DataError(f"{args.data}: --kind {kind} needs the field {key!r}")
    n_out = int(train["labels"].max()) + 1 if kind == "classify" else train["targets"].shape[1]
    cfg = task.model_config(kind, args.group or "SE2", train["values"].shape[-1], n_out, args.k,
                            args.num_layers, args.nbhd, args.fill, args.liftsamples, args.alpha,
                            knn=args.knn, augment=not args.no_augment, bn=P.use_bn(train))
    return task, clouds.standardise(cfg, train), {"train": train, "val": val}, {
        "data": str(args.data), "val_data": str(args.val_data) if args.val_data else None}


def _sizes(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("train", args.n_train), ("val", args.n_val),
                              ("test", args.n_test)) if v is not None}


#: training defaults per task: (epochs, batch size, lr)
TRAIN_DEFAULTS = {"springs": (100, 200, None), "rotmnist": (20, 25, 3e-3),
                  "qm9": (20, 75, 3e-3), "pointcloud": (20, 32, 1e-2)}


def cmd_train(args: argparse.Namespace) -> int:
    from .._backend import compiling_backends
    from .training import fit

    if args.compile and args.backend not in compiling_backends():
        raise CLIError(f"--compile is for the {' and '.join(compiling_backends())} backend "
                       "(the others compile their step themselves or not at all)")
    setup_backend(args.backend, args.dtype, args.threads, args.device)
    task, cfg, data, info = _model_and_data(args)
    epochs, bs, lr = TRAIN_DEFAULTS[args.task]
    lr = args.lr or lr or task.default_lr(cfg)
    fit(task, cfg, data, args.out, backend=args.backend, epochs=args.epochs or epochs,
               batch_size=args.batch_size or bs, lr=lr, seed=args.seed, dtype=args.dtype,
               warmup_epochs=args.warmup_epochs, patience=args.patience,
               max_steps=args.max_steps, eval_every=args.eval_every, resume=args.resume,
               overwrite=args.overwrite, progress=not args.no_progress, device=args.device,
               compile=args.compile, info=info, dist_timeout=args.dist_timeout,
               optimizer=args.optimizer)
    if process_rank() != 0:  # data-parallel: rank 0 wrote the run folder and reports
        return 0
    metrics = json.loads((Path(args.out) / "metrics.json").read_text())
    print(json.dumps({"out": str(args.out), **{k: metrics[k] for k in (
        "steps", "epochs", "best_step", "best_val", "train_seconds", "samples_per_second")}}))
    return 0


# --- evaluate / predict --------------------------------------------------------------------------
def _load(args: argparse.Namespace) -> tuple[Any, dict, Any, Any, dict]:
    """(task, model config, model, runner on the chosen backend, run config)."""
    from .._backend import backend_names, trainable_backends
    from .training.engine import load_run, runner_for

    if args.backend is not None:
        _check_choice(args.backend, backend_names(), "backend")
    task, cfg, model, params, state, config = load_run(args.checkpoint)
    if task.name != args.task:
        raise CLIError(f"{args.checkpoint} is a {task.name} run, not {args.task}")
    backend = args.backend or config.get("backend", "torch")
    dtype = config.get("dtype", "float32")
    # springs' models differentiate the Hamiltonian: its forward needs autodiff
    choices = backend_names() if task.name != "springs" else trainable_backends()
    setup_backend(backend, dtype, args.threads, args.device, choices)
    runner = runner_for(backend, task, model, cfg, params, state, dtype, args.device)
    return task, cfg, model, runner, {**config, "eval_backend": backend}


def _test_data(task: Any, cfg: dict, config: dict, args: argparse.Namespace) -> Any:
    info = config.get("info", {})
    if getattr(args, "data", None):
        from ..tasks import pointcloud as P

        return P.load_npz(args.data)
    if task.name == "rotmnist":
        from ..tasks import rotmnist

        if args.amat:
            return rotmnist.load_amat(args.amat[1])
        sizes = {**info.get("sizes", {}), **({"test": args.n_test} if args.n_test else {})}
        upright = bool(info.get("upright")) if args.upright is None else args.upright
        return rotmnist.load_splits(None, args.mnist_dir, info.get("seed", 0), sizes,
                                    upright=upright)[0]["test"]
    if task.name == "qm9":
        from ..tasks import qm9

        sizes = {**info.get("sizes", {}), **({"test": args.n_test} if args.n_test else {})}
        data = qm9.load_splits(args.data_dir, info.get("seed", 0), args.cache_dir, sizes)[0]
        return task.dataset_for_training(data["test"], cfg)
    raise CLIError(f"evaluate {task.name} needs --data FILE.npz")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .training import RunDir

    if args.task == "springs":
        return _evaluate_springs(args)
    task, cfg, model, runner, config = _load(args)
    data = _test_data(task, cfg, config, args)
    if args.n_test and len(data) > args.n_test:
        data = data.subset(slice(0, args.n_test))
    task.check(data, cfg)
    with RunDir.open(args.out, "output", overwrite=args.overwrite) as run:
        outputs = _outputs(task, cfg, model, runner, data, config, args)
        metrics = {**task.metrics(outputs, data, cfg), "checkpoint": str(args.checkpoint),
                   "backend": config["eval_backend"], "data": data.source}
        metrics["plots"] = _task_plots(run, task, cfg, model, runner, data, outputs, config)
        run.write_json("metrics.json", metrics)
    print(json.dumps(metrics, indent=2))
    return 0


def _outputs(task, cfg, model, runner, data, config, args, moved=None) -> np.ndarray:
    from .training.engine import run_outputs
    from .training.loader import progress_bar

    bar = progress_bar(not args.no_progress, len(data), "evaluate")
    fn = task.predict_fn(model, cfg, config["eval_backend"])

    def prepare(b: dict) -> dict:
        b = task.inputs(b, cfg)
        return moved(b) if moved is not None else b

    try:
        return run_outputs(runner, fn, data, args.batch_size, seed=10_000, progress=bar,
                           prepare=prepare, keys=("coords", "values", "mask"))
    finally:
        if bar is not None:
            bar.close()


def _task_plots(run, task, cfg, model, runner, data, outputs, config) -> list[str]:
    from . import task_plots as plots

    if task.name == "rotmnist":
        return plots.rotmnist_grid(run, task, cfg, model, runner, data, config["eval_backend"])
    if task.name == "qm9":
        return plots.parity(run, outputs[:, 0], data["targets"][:, 0], cfg)
    if cfg["kind"] == "regress":
        return plots.parity(run, outputs[:, 0], data["targets"][:, 0], cfg)
    return plots.confusion(run, outputs, data["labels"])


def cmd_predict(args: argparse.Namespace) -> int:
    from .training import RunDir

    if args.task == "springs":
        raise CLIError("predict is for rotmnist, qm9 and pointcloud; for springs use evaluate")
    task, cfg, model, runner, config = _load(args)
    data = _test_data(task, cfg, config, args)
    with RunDir.open(args.out, "output", overwrite=args.overwrite) as run:
        outputs = _outputs(task, cfg, model, runner, data, config, args)
        arrays = {"outputs": outputs}
        if cfg["kind"] == "classify":
            arrays["labels"] = np.argmax(outputs, axis=-1)
        from .training.rundir import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic_write(run.file("predictions.npz"), write)
    print(json.dumps({"out": str(Path(args.out) / "predictions.npz"), "n": len(outputs)}))
    return 0


# --- compare -------------------------------------------------------------------------------------
def cmd_compare(args: argparse.Namespace) -> int:
    """Runs side by side: compare.png (validation metric against training minutes) and
    compare.json."""
    from .training import compare_runs, runs_table

    try:
        rows = compare_runs(args.runs, args.out, overwrite=args.overwrite)
    except (KeyError, TypeError) as exc:  # a history or config without the expected fields
        raise CLIError(f"cannot compare these runs: {exc!r}") from exc
    print(runs_table(rows))
    return 0


# --- equivariance --------------------------------------------------------------------------------
def cmd_equivariance(args: argparse.Namespace) -> int:
    """Each model's metric on the test inputs and on the same inputs moved by random elements of
    ``--group``; an equivariant model's metric moves by noise only."""
    from ..tasks.base import make_group, random_motion

    rows = []
    for ckpt in args.checkpoint:
        args.__dict__["checkpoint"] = ckpt
        task, cfg, model, runner, config = _load(args)
        data = _test_data(task, cfg, config, args)
        if args.n_test and len(data) > args.n_test:
            data = data.subset(slice(0, args.n_test))
        gname = args.group or ("SE2" if make_group(cfg["group"]).space_dim == 2 else "SE3")
        group = make_group(gname)
        gen = np.random.default_rng([args.seed, 11])

        def moved(b: dict, group=group, gen=gen) -> dict:
            return {**b, "coords": random_motion(group, b["coords"], gen)}

        base = task.metrics(_outputs(task, cfg, model, runner, data, config, args), data, cfg)
        tr = task.metrics(_outputs(task, cfg, model, runner, data, config, args, moved), data,
                          cfg)
        key = task.primary_for(cfg)[0]
        rows.append({"checkpoint": ckpt, "model_group": cfg["group"], "moved_by": gname,
                     "metric": key, "original": base[key], "transformed": tr[key]})
        args.__dict__["checkpoint"] = None
    print(f"{'model (group)':<34}{'metric':>10}{'original':>12}{'moved':>12}  moved by")
    for r in rows:
        print(f"{Path(r['checkpoint']).name + ' (' + r['model_group'] + ')':<34}{r['metric']:>10}"
              f"{r['original']:>12.4g}{r['transformed']:>12.4g}  random {r['moved_by']}")
    if args.out:
        from .training import RunDir

        with RunDir.open(args.out, "output", overwrite=args.overwrite) as run:
            run.write_json("metrics.json", {"equivariance": rows})
    return 0


# --- springs: evaluate and demo ------------------------------------------------------------------
def _evaluate_springs(args: argparse.Namespace) -> int:
    from . import springs as springs_app
    from .training import RunDir

    task, cfg, model, runner, config = _load(args)
    with RunDir.open(args.out, "output", overwrite=args.overwrite) as run:
        metrics, arrays = springs_app.evaluate_run(task, cfg, model, runner, config, args.n_test,
                                          args.n_rollout, args.rollout_steps, args.substeps,
                                          progress=not args.no_progress,
                                          batch_size=args.batch_size)
        metrics["plots"] = springs_app.write_plots(run, arrays, cfg.get("model", ""))
        metrics["checkpoint"] = str(args.checkpoint)
        run.write_json("metrics.json", metrics)
    print(json.dumps(metrics, indent=2))
    return 0


DEMO_RUNS = (("HLieConv-T2", "hlieconv", "T2", 64, 1e-2),
             ("FLieConv-T2", "flieconv", "T2", 64, 1e-2),
             ("FC", "fc", "T2", 128, 1e-2))


def cmd_demo(args: argparse.Namespace) -> int:
    from ..data import springs as S
    from ..tasks import springs as SP
    from . import springs as springs_app
    from .training import RunDir, fit

    root = Path(args.out) if args.out else Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    setup_backend(args.backend, "float64", args.threads)
    with RunDir.open(root, "output", overwrite=False) as top:
        if top.entries():
            raise CLIError(f"--out {root} already holds files; nothing was overwritten. "
                           "Choose a new folder.")
        task = get_task("springs")
        data = SP.split_datasets(args.n_train, 50, 1, 0)
        zs_true, sys_r, t = S.test_trajectories(args.n_rollout, n_steps=args.rollout_steps)
        rows = []
        for label, name, group, k, lr in DEMO_RUNS:
            t0 = time.perf_counter()
            cfg = task.model_config(name, group, k, 2)
            hist = fit(task, cfg, data, root / name, backend=args.backend, epochs=args.epochs,
                       batch_size=50, lr=lr, seed=0, dtype="float64",
                       progress=not args.no_progress)
            model = task.build_model(cfg)
            roll = task.rollout_fn(model, t, args.backend)
            pred = hist["trainer"].run(roll, {"z": zs_true[:, :1], "sys": sys_r})
            curves = SP.rel_drift_curves(pred, sys_r)
            rows.append((label, hist["best"], float(np.mean((pred - zs_true) ** 2)),
                         *(float(np.mean(np.max(curves[c], axis=1))) for c in SP.CONSERVED),
                         time.perf_counter() - t0))
        truth = SP.rel_drift_curves(zs_true, sys_r)
        rows.append(("RK4 ground truth", 0.0, 0.0,
                     *(float(np.mean(np.max(truth[c], axis=1))) for c in SP.CONSERVED), 0.0))
        table = _demo_table(rows, args)
        top.write_text("table.txt", table)
        top.write_json("metrics.json", {"rows": [dict(zip(
            ("model", "val_mse", "rollout_mse", "energy_rel_drift", "linear_momentum_rel_drift",
             "angular_momentum_rel_drift", "seconds"), r)) for r in rows]})
        springs_app.drift_plot(top, rows)
    print(table + f"(runs, table.txt and drift.png in {root})")
    return 0


def _demo_table(rows: list, args: argparse.Namespace) -> str:
    lines = [f"spring systems: {args.n_train} training chunks, {args.epochs} epochs, "
             f"{args.backend} float64; rollouts of {args.n_rollout} test systems x "
             f"{args.rollout_steps} steps (relative drift, mean over systems of max over time)"]
    head = ("model", "val MSE", "rollout MSE", "energy", "lin. momentum", "ang. momentum", "secs")
    lines.append(f"{head[0]:<18}{head[1]:>11}{head[2]:>13}{head[3]:>11}{head[4]:>15}"
                 f"{head[5]:>15}{head[6]:>7}")
    for r in rows:
        lines.append(f"{r[0]:<18}{r[1]:>11.3g}{r[2]:>13.3g}{r[3]:>11.2e}{r[4]:>15.2e}"
                     f"{r[5]:>15.2e}{r[6]:>7.0f}")
    return "\n".join(lines) + "\n"


# --- parser --------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=POS_INT, default=None,
                   help="CPU threads of the backend's operations (torch: any count; jax: 1)")
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files this command writes in --out (other files stay)")


def _data_flags(p: argparse.ArgumentParser, train: bool = False) -> None:
    g = p.add_argument_group("data (by task)")
    g.add_argument("--data", default=None, help="pointcloud: an .npz file (see the docs)")
    g.add_argument("--amat", nargs=2, metavar=("TRAIN_VALID", "TEST"), default=None,
                   help="rotmnist: the official .amat files")
    g.add_argument("--mnist-dir", default=None,
                   help="rotmnist: folder with MNIST's IDX files (default: the MNIST_dir "
                        "package); the rotated re-creation is made from them")
    if train:
        g.add_argument("--upright", action="store_true",
                       help="rotmnist: the same split of MNIST's digits, not rotated")
    else:
        g.add_argument("--upright", action=argparse.BooleanOptionalAction, default=None,
                       help="rotmnist: test on upright (or, --no-upright, rotated) digits "
                            "(default: as the run was trained)")
    g.add_argument("--data-dir", default=None,
                   help="qm9: folder with Cormorant train/valid/test.npz (default: qm9pack)")
    g.add_argument("--cache-dir", default=None, help="qm9: cache of the parsed qm9pack tables")
    g.add_argument("--n-test", type=POS_INT, default=None, help="use this many test samples")


def build_parser() -> argparse.ArgumentParser:
    from .._backend import trainable_backends

    ap = argparse.ArgumentParser(prog="lieconv", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a model and write a run folder")
    tr.add_argument("task", help=" | ".join(TASKS))
    tr.add_argument("--out", required=True, help="run folder (new, empty, or --resume)")
    tr.add_argument("--backend", default="torch", help=" | ".join(trainable_backends()))
    tr.add_argument("--epochs", type=POS_INT, default=None)
    tr.add_argument("--batch-size", type=POS_INT, default=None)
    tr.add_argument("--lr", type=POS_FLOAT, default=None, help="peak learning rate")
    tr.add_argument("--optimizer", default="adam", choices=("adam", "sgd"),
                    help="Adam, or plain SGD (no momentum), on the same schedule")
    tr.add_argument("--warmup-epochs", type=NONNEG_FLOAT, default=0.0)
    tr.add_argument("--seed", type=NONNEG_INT, default=0, help="init, batch order, draws")
    tr.add_argument("--data-seed", type=NONNEG_INT, default=0)
    tr.add_argument("--k", type=POS_INT, default=None, help="channel width")
    tr.add_argument("--num-layers", type=NONNEG_INT, default=None)
    tr.add_argument("--nbhd", type=POS_INT, default=None, help="neighbourhood size")
    tr.add_argument("--fill", type=POS_FLOAT, default=None, help="radius controller's target")
    tr.add_argument("--liftsamples", type=POS_INT, default=None)
    tr.add_argument("--alpha", type=NONNEG_FLOAT, default=None, help="group distance weight")
    tr.add_argument("--total-ds", type=POS_FLOAT, default=None, help="rotmnist: subsampling")
    tr.add_argument("--knn", action="store_true", help="k nearest instead of ball subsets")
    tr.add_argument("--group", default=None, help="a group name (SE2, SO2, T2, T3, SE3, ...)")
    tr.add_argument("--no-augment", action="store_true", help="train without augmentation")
    tr.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.add_argument("--patience", type=POS_INT, default=None,
                    help="stop after this many evaluations without improvement")
    tr.add_argument("--max-steps", type=POS_INT, default=None)
    tr.add_argument("--eval-every", type=POS_INT, default=None,
                    help="also validate every N steps (default: each epoch)")
    tr.add_argument("--compile", action="store_true",
                    help="torch, springs: one torch.compile-d step (compiles for minutes)")
    tr.add_argument("--dist-timeout", type=POS_FLOAT, default=None,
                    help="data-parallel (torchrun): seconds a process waits for the others "
                         "before the job fails (default 600)")
    tr.add_argument("--n-train", type=POS_INT, default=None, help="use this many samples")
    tr.add_argument("--n-val", type=POS_INT, default=None)
    g = tr.add_argument_group("springs")
    g.add_argument("--model", default="hlieconv", help="hlieconv | flieconv | hfc | fc")
    g.add_argument("--center", default="none", help="momentum centring of the data")
    g = tr.add_argument_group("qm9")
    g.add_argument("--target", default="homo", help="a QM9 target (homo, lumo, gap, mu, ...)")
    g = tr.add_argument_group("pointcloud")
    g.add_argument("--val-data", default=None, help="validation .npz (default: hold out 10%%)")
    g.add_argument("--kind", default="classify", help="classify | regress")
    _data_flags(tr, train=True)
    _common(tr)
    tr.set_defaults(func=cmd_train)
    for name, fn, hlp in (("evaluate", cmd_evaluate, "metrics and plots of a trained run"),
                          ("predict", cmd_predict, "predictions of a trained run"),
                          ("equivariance", cmd_equivariance,
                           "metric on test inputs and on randomly moved test inputs")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("task", help=" | ".join(TASKS))
        p.add_argument("--checkpoint", required=True, nargs="+" if name == "equivariance"
                       else None, help="run folder(s) written by train")
        p.add_argument("--out", required=name != "equivariance", default=None)
        p.add_argument("--backend", default=None, help="default: the training backend; "
                       "numpy works for evaluate and predict (not springs)")
        p.add_argument("--batch-size", type=POS_INT, default=64)
        p.add_argument("--seed", type=NONNEG_INT, default=0)
        if name == "equivariance":
            p.add_argument("--group", default=None,
                           help="moves the inputs (default: SE2 in the plane, SE3 in space)")
        _data_flags(p)
        _common(p)
        p.set_defaults(func=fn)
        if name == "evaluate":
            g = p.add_argument_group("springs")
            g.add_argument("--n-rollout", type=POS_INT, default=10)
            g.add_argument("--rollout-steps", type=POS_INT, default=500)
            g.add_argument("--substeps", type=POS_INT, default=1,
                           help="RK4 steps per data time step in the long rollout")
    co = sub.add_parser("compare", help="runs side by side: validation metric against training "
                        "minutes (compare.png) and what each reached (compare.json)")
    co.add_argument("runs", nargs="+", help="run folders written by train")
    co.add_argument("--out", required=True, help="output folder")
    co.add_argument("--overwrite", action="store_true", help="replace compare.json/.png in --out")
    co.set_defaults(func=cmd_compare)
    de = sub.add_parser("demo", help="short run: HLieConv-T2 vs FLieConv vs FC conservation table")
    de.add_argument("--backend", default="torch", help=" | ".join(trainable_backends()))
    de.add_argument("--n-train", type=POS_INT, default=400)
    de.add_argument("--epochs", type=POS_INT, default=6)
    de.add_argument("--n-rollout", type=POS_INT, default=10)
    de.add_argument("--rollout-steps", type=POS_INT, default=200)
    de.add_argument("--threads", type=POS_INT, default=1)
    de.add_argument("--out", default=None,
                    help="output folder (default: runs/demo-YYYYmmdd-HHMMSS); must be new or empty")
    de.add_argument("--no-progress", action="store_true")
    de.set_defaults(func=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage and the message naming the flag
        return int(exc.code or 0)
    try:
        if hasattr(args, "task"):
            _check_choice(args.task, tuple(TASKS), "task")
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        if args.command == "train" and out and (Path(out) / "last.safetensors").exists():
            print(f"\nlieconv: interrupted; the last checkpoint is {Path(out) / 'last.safetensors'}"
                  f"; continue with the same command and --resume", file=sys.stderr)
        else:
            print("\nlieconv: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileExistsError, RuntimeError, RunDirError, DataError,
            io.CheckpointError) as exc:
        print(f"lieconv: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
