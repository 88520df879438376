"""The ``lieconv`` command line.

    lieconv train springs --backend {torch,jax} --model {hlieconv,flieconv,hfc,fc}
                          --group {T2,SO2,Trivial} --n-train N --epochs E --seed S --out DIR
                          [--dtype float32|float64] [--resume] [--overwrite] ...
    lieconv evaluate springs --checkpoint DIR --out DIR2 [--backend ...] [--overwrite]
    lieconv demo [--backend torch|jax] [--out DIR]

``evaluate`` writes DIR2/metrics.json (test_mse, rollout_mse, energy_rel_drift,
linear_momentum_rel_drift, angular_momentum_rel_drift) and PNG plots. A relative drift is
max_t |X(t) − X(0)| / max(|X(0)|, scale) of the *true* conserved quantity X along the model's
rollout, averaged over test systems; ``scale`` is the mean |X(0)| over the evaluated systems (so
systems with X(0) ≈ 0 do not divide by ~0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from .data import springs as S
from .dynamics.models import DEFAULT_LR, MODELS, make_model

GROUP_CHOICES = ("T2", "SO2", "Trivial")
DEVICE_HELP = ("torch: cpu (default), cuda, cuda:1, ...; jax: cpu, gpu, gpu:1, ... "
               "(default: jax's default device)")
BACKEND_CHOICES = ("torch", "jax")


class CLIError(Exception):
    pass


def _check_choice(value: str, choices: tuple, what: str) -> str:
    if value not in choices:
        raise CLIError(f"unknown {what} {value!r}; choose one of: {', '.join(choices)}")
    return value


def _setup_backend(backend: str, dtype: str, threads: int | None,
                   device: str | None = None) -> None:
    """Application-level framework settings (the library never changes them at import), and a
    check that ``device`` exists before any work starts."""
    _check_choice(backend, BACKEND_CHOICES, "backend")
    try:
        if backend == "torch":
            import torch

            if threads:
                torch.set_num_threads(int(threads))
        else:
            import jax

            if dtype == "float64":
                jax.config.update("jax_enable_x64", True)
    except ImportError as exc:
        raise CLIError(f"backend {backend!r} is not installed ({exc}); "
                       f"pip install 'lieconv[{backend}]'") from exc
    if device is not None:
        from .train import resolve_device

        try:
            resolve_device(backend, device)
        except (RuntimeError, ValueError) as exc:
            raise CLIError(f"--device {device!r}: {exc}") from exc


def _trainer(backend: str, model: Any, params_flat: dict, dtype: str,
             device: str | None = None) -> Any:
    from .nn.module import unflatten
    from .train import resolve_device, trainer_class

    dev = resolve_device(backend, device)
    return trainer_class(backend)(model, unflatten(params_flat), 0.0, 1, dtype=dtype,
                                  **({} if dev is None else {"device": dev}))


# --- train ---------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from .train import check_compile, fit

    _check_choice(args.model, tuple(MODELS), "model")
    _check_choice(args.group, GROUP_CHOICES, "group")
    check_compile(args.backend, args.compile)
    _setup_backend(args.backend, args.dtype, args.threads, args.device)
    model = make_model(args.model, group=args.group, k=args.k, num_layers=args.num_layers)
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.model] * (
        0.3 if args.model == "hlieconv" and args.group == "SO2" else 1.0)
    splits = S.make_splits(n_train=args.n_train, n_val=args.n_val, n_test=1, seed=args.data_seed,
                           center=args.center)
    hist = fit(model, splits, args.backend, args.out, epochs=args.epochs,
               batch_size=args.batch_size, lr=lr, seed=args.seed, dtype=args.dtype,
               resume=args.resume, overwrite=args.overwrite, patience=args.patience,
               progress=not args.no_progress, max_steps=args.max_steps, device=args.device,
               compile=args.compile,
               run_config={"data_seed": args.data_seed, "center": args.center,
                           "n_val": args.n_val})
    print(json.dumps({"out": str(args.out), "epochs": hist["epoch"],
                      "best_val_mse": hist["best_val"], "best_epoch": hist["best_epoch"],
                      "last_train_loss": hist["train_loss"][-1] if hist["train_loss"] else None}))
    return 0


# --- evaluate ------------------------------------------------------------------------------------
def conservation(zs: np.ndarray, sys: np.ndarray) -> dict[str, np.ndarray]:
    """True E, |P| components and L along trajectories zs (N, T, 2, n, 2) -> each (N, T, c)."""
    return {"energy": S.energy(zs, sys[:, None])[..., None],
            "linear_momentum": S.linear_momentum(zs),
            "angular_momentum": S.angular_momentum(zs)[..., None]}


def rel_drift_curves(zs: np.ndarray, sys: np.ndarray) -> dict[str, np.ndarray]:
    """|X(t) − X(0)| / max(|X(0)|, scale) per system and time: each (N, T)."""
    out = {}
    for name, x in conservation(zs, sys).items():
        dev = np.linalg.norm(x - x[:, :1], axis=-1)
        x0 = np.linalg.norm(x[:, 0], axis=-1)
        scale = max(float(np.mean(x0)), 1e-300)
        out[name] = dev / np.maximum(x0, scale)[:, None]
    return out


def evaluate_run(checkpoint: str | Path, backend: str | None = None, n_test: int = 2000,
                 n_rollout: int = 50, rollout_steps: int = 500, threads: int | None = None,
                 batch_size: int = 200, device: str | None = None,
                 substeps: int = 1) -> tuple[dict, dict]:
    """(metrics, arrays for plots) of a run directory. ``substeps``: integrator steps per step
    of the data's time grid in the long rollout (the metrics are taken on the data grid), to show
    which drift is the integrator's (it shrinks as the step shrinks) and which is the model's."""
    if not (isinstance(substeps, int) and substeps >= 1):
        raise ValueError(f"--substeps must be an integer >= 1, got {substeps!r}")
    checkpoint = Path(checkpoint)
    cfg = io.load_json(checkpoint / io.CONFIG)
    backend = backend or cfg.get("backend", "torch")
    dtype = cfg.get("dtype", "float32")
    model, params, cfg = io.load_model(checkpoint, backend="numpy", dtype="float64")
    _setup_backend(backend, dtype, threads, device)
    from .nn.module import flatten

    tr = _trainer(backend, model, flatten(params), dtype, device)
    tcfg = cfg.get("train", {})
    seed, center = tcfg.get("data_seed", 0), tcfg.get("center", "none")
    test = S.make_splits(n_train=1, n_val=1, n_test=n_test, seed=seed, center=center)["test"]
    from .train import evaluate_mse

    test_mse = evaluate_mse(tr, test, batch_size)
    zs_true, sys_r, t = S.test_trajectories(n_rollout, seed=seed, center=center,
                                            n_steps=rollout_steps)
    t_fine = np.linspace(t[0], t[-1], (len(t) - 1) * substeps + 1)  # the data grid is uniform
    zs_pred = tr.rollout(zs_true[:, 0], sys_r, t_fine)[:, ::substeps]
    rollout_mse = float(np.mean((zs_pred - zs_true) ** 2))
    curves = rel_drift_curves(zs_pred.astype(np.float64), sys_r)
    metrics = {"test_mse": float(test_mse), "rollout_mse": rollout_mse,
               **{f"{k}_rel_drift": float(np.mean(np.max(v, axis=1))) for k, v in curves.items()},
               "n_test": n_test, "n_rollout": n_rollout, "rollout_steps": rollout_steps,
               "substeps": substeps, "backend": backend, "dtype": dtype, "model": cfg["model"]}
    return metrics, {"t": t, "true": zs_true, "pred": zs_pred, "curves": curves,
                     "curves_true": rel_drift_curves(zs_true, sys_r)}


def write_plots(out: Path, arrays: dict, title: str = "") -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    true, pred, t = arrays["true"], arrays["pred"], arrays["t"]
    fig, ax = plt.subplots(figsize=(5, 5))
    for i in range(true.shape[3]):
        line, = ax.plot(true[0, :, 0, i, 0], true[0, :, 0, i, 1], "-", lw=1)
        ax.plot(pred[0, :, 0, i, 0], pred[0, :, 0, i, 1], "--", lw=1, color=line.get_color())
    ax.set_title(f"{title} test system 0: true (solid) vs model (dashed)")
    ax.set_aspect("equal")
    p = out / "trajectories.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(str(p))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, name in zip(axes, ("energy", "linear_momentum", "angular_momentum")):
        ax.semilogy(t, np.maximum(np.mean(arrays["curves"][name], axis=0), 1e-18), label="model")
        ax.semilogy(t, np.maximum(np.mean(arrays["curves_true"][name], axis=0), 1e-18),
                    label="RK4 ground truth")
        ax.set_title(f"{name} relative drift")
        ax.set_xlabel("t")
        ax.legend()
    fig.tight_layout()
    p = out / "conservation.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    paths.append(str(p))
    return paths


def cmd_evaluate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    io.ensure_writable(out / "metrics.json", args.overwrite)
    if args.backend is not None:
        _check_choice(args.backend, BACKEND_CHOICES, "backend")
    metrics, arrays = evaluate_run(args.checkpoint, args.backend, args.n_test, args.n_rollout,
                                   args.rollout_steps, args.threads, device=args.device,
                                   substeps=args.substeps)
    out.mkdir(parents=True, exist_ok=True)
    metrics["plots"] = write_plots(out, arrays, metrics["model"].get("model", ""))
    io.save_json(out / "metrics.json", metrics)
    print(json.dumps(metrics, indent=2))
    return 0


# --- demo ----------------------------------------------------------------------------------------
DEMO_RUNS = (("HLieConv-T2", "hlieconv", "T2", 64, 1e-2),
             ("FLieConv-T2", "flieconv", "T2", 64, 1e-2),
             ("FC", "fc", "T2", 128, 1e-2))


def cmd_demo(args: argparse.Namespace) -> int:
    from .train import fit

    root = Path(args.out) if args.out else Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"lieconv demo: --out {root} already holds files; nothing was "
                         "overwritten. Choose a new directory.")
    _setup_backend(args.backend, "float64", args.threads)
    splits = S.make_splits(n_train=args.n_train, n_val=50, n_test=1, seed=0)
    zs_true, sys_r, t = S.test_trajectories(args.n_rollout, n_steps=args.rollout_steps)
    rows = []
    for label, name, group, k, lr in DEMO_RUNS:
        t0 = time.perf_counter()
        model = make_model(name, group=group, k=k, num_layers=2)
        hist = fit(model, splits, args.backend, root / name, epochs=args.epochs, batch_size=50,
                   lr=lr, seed=0, dtype="float64", overwrite=True, progress=not args.no_progress)
        pred = hist["trainer"].rollout(zs_true[:, 0], sys_r, t)
        curves = rel_drift_curves(pred, sys_r)
        rows.append((label, hist["best_val"], float(np.mean((pred - zs_true) ** 2)),
                     *(float(np.mean(np.max(curves[c], axis=1)))
                       for c in ("energy", "linear_momentum", "angular_momentum")),
                     time.perf_counter() - t0))
    truth = rel_drift_curves(zs_true, sys_r)
    rows.append(("RK4 ground truth", 0.0, 0.0,
                 *(float(np.mean(np.max(truth[c], axis=1)))
                   for c in ("energy", "linear_momentum", "angular_momentum")), 0.0))
    print(f"\nspring systems: {args.n_train} training chunks, {args.epochs} epochs, "
          f"{args.backend} float64; rollouts of {args.n_rollout} test systems x "
          f"{args.rollout_steps} steps (relative drift, mean over systems of max over time)")
    head = ("model", "val MSE", "rollout MSE", "energy", "lin. momentum", "ang. momentum", "secs")
    print(f"{head[0]:<18}{head[1]:>11}{head[2]:>13}{head[3]:>11}{head[4]:>15}{head[5]:>15}"
          f"{head[6]:>7}")
    for r in rows:
        print(f"{r[0]:<18}{r[1]:>11.3g}{r[2]:>13.3g}{r[3]:>11.2e}{r[4]:>15.2e}{r[5]:>15.2e}"
              f"{r[6]:>7.0f}")
    print(f"(runs in {root})")
    return 0


# --- parser --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lieconv", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a dynamics model")
    tr.add_argument("task", help="only 'springs'")
    tr.add_argument("--backend", default="torch", help="torch | jax")
    tr.add_argument("--model", default="hlieconv", help="hlieconv | flieconv | hfc | fc")
    tr.add_argument("--group", default="T2", help="T2 | SO2 | Trivial (LieConv models)")
    tr.add_argument("--n-train", type=int, default=3000)
    tr.add_argument("--n-val", type=int, default=200)
    tr.add_argument("--epochs", type=int, default=100)
    tr.add_argument("--batch-size", type=int, default=200)
    tr.add_argument("--lr", type=float, default=None, help="default: paper value per model")
    tr.add_argument("--k", type=int, default=None, help="width (default: 384 LieConv, 256 FC)")
    tr.add_argument("--num-layers", type=int, default=4)
    tr.add_argument("--seed", type=int, default=0, help="init and batch order")
    tr.add_argument("--data-seed", type=int, default=0)
    tr.add_argument("--center", default="none", choices=S.CENTER_CHOICES,
                    help="momentum centring of the data (see lieconv_core.data.springs)")
    tr.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    tr.add_argument("--out", required=True)
    tr.add_argument("--resume", action="store_true", help="continue from OUT/last.safetensors")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing run in OUT")
    tr.add_argument("--patience", type=int, default=None, help="early stopping (epochs)")
    tr.add_argument("--max-steps", type=int, default=None)
    tr.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    tr.add_argument("--device", default=None, help=DEVICE_HELP)
    tr.add_argument("--compile", action="store_true",
                    help="torch: run each step as one torch.compile-d function (the first step "
                         "compiles for minutes; later steps faster on CPU)")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=cmd_train)
    ev = sub.add_parser("evaluate", help="metrics and plots of a trained run")
    ev.add_argument("task", help="only 'springs'")
    ev.add_argument("--checkpoint", required=True, help="a run directory written by train")
    ev.add_argument("--out", required=True)
    ev.add_argument("--backend", default=None, help="default: the training backend")
    ev.add_argument("--n-test", type=int, default=2000)
    ev.add_argument("--n-rollout", type=int, default=50)
    ev.add_argument("--rollout-steps", type=int, default=500)
    ev.add_argument("--substeps", type=int, default=1,
                    help="RK4 steps per data time step in the long rollout (integrator error)")
    ev.add_argument("--threads", type=int, default=None)
    ev.add_argument("--device", default=None, help=DEVICE_HELP)
    ev.add_argument("--overwrite", action="store_true")
    ev.set_defaults(func=cmd_evaluate)
    de = sub.add_parser("demo", help="short run: HLieConv-T2 vs FLieConv vs FC conservation table")
    de.add_argument("--backend", default="torch", help="torch | jax")
    de.add_argument("--n-train", type=int, default=400)
    de.add_argument("--epochs", type=int, default=6)
    de.add_argument("--n-rollout", type=int, default=10)
    de.add_argument("--rollout-steps", type=int, default=200)
    de.add_argument("--threads", type=int, default=1)
    de.add_argument("--out", default=None,
                    help="output folder (default: runs/demo-YYYYmmdd-HHMMSS); must be new or empty")
    de.add_argument("--no-progress", action="store_true")
    de.set_defaults(func=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "task", "springs") != "springs":
            raise CLIError(f"unknown task {args.task!r}; only 'springs' is available")
        return int(args.func(args) or 0)
    except (CLIError, ValueError, FileExistsError, RuntimeError) as exc:
        print(f"lieconv: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
