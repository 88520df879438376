"""Spring-system workflows on the training engine: evaluating a run (test MSE, long rollouts,
conservation drift), its plots, and a trainer of a dynamics model outside the engine. The task
itself is :mod:`lieconv_core.tasks.springs`."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import springs as S
from ..tasks.springs import (
    CONSERVED,
    SpringsModel,
    SpringsTask,
    rel_drift_curves,
    split_datasets,
)
from .training import make_trainer
from .training.engine import run_outputs
from .training.loader import progress_bar
from .training.plots import pyplot


def evaluate_run(task: SpringsTask, cfg: dict, model: SpringsModel, runner: Any, config: dict,
                 n_test: int | None = None, n_rollout: int = 10, rollout_steps: int = 500,
                 substeps: int = 1, progress: bool = True,
                 batch_size: int = 200) -> tuple[dict, dict]:
    """(metrics, arrays for plots): the 5-step MSE on ``n_test`` test chunks (default 400) and
    long rollouts of ``n_rollout`` test systems over ``rollout_steps`` steps of the data grid,
    each taken in ``substeps`` RK4 steps (the integrator's share of the drift shrinks with
    them, the model's does not)."""
    info, backend = config.get("info", {}), config["eval_backend"]
    seed, center = info.get("data_seed", 0), info.get("center", "none")
    n_test = n_test or 400
    test = split_datasets(1, 1, n_test, seed, center)["test"]
    bar = progress_bar(progress, n_test + n_rollout, "evaluate springs", unit="system")
    outputs = run_outputs(runner, task.predict_fn(model, cfg, backend), test,
                          min(batch_size, n_test), progress=bar)
    zs_true, sys_r, t = S.test_trajectories(n_rollout, seed=seed, center=center,
                                            n_steps=rollout_steps)
    t_fine = np.linspace(t[0], t[-1], (len(t) - 1) * substeps + 1)  # the data grid is uniform
    roll = task.rollout_fn(model, t_fine, backend)
    preds = []
    for i in range(0, n_rollout, 10):  # a few systems at a time: progress, bounded memory
        batch = {"z": zs_true[i:i + 10, :1], "sys": sys_r[i:i + 10]}
        preds.append(runner.run(roll, batch)[:, ::substeps])
        if bar is not None:
            bar.update(len(batch["z"]))
    if bar is not None:
        bar.close()
    zs_pred = np.concatenate(preds)
    curves = rel_drift_curves(zs_pred.astype(np.float64), sys_r)
    metrics = {"test_mse": task.metrics(outputs, test, cfg)["mse"],
               "rollout_mse": float(np.mean((zs_pred - zs_true) ** 2)),
               **{f"{k}_rel_drift": float(np.mean(np.max(v, axis=1))) for k, v in curves.items()},
               "n_test": n_test, "n_rollout": n_rollout, "rollout_steps": rollout_steps,
               "substeps": substeps, "backend": backend, "dtype": config.get("dtype"),
               "model": {k: v for k, v in cfg.items() if k != "ts"}}
    return metrics, {"t": t, "true": zs_true, "pred": zs_pred, "curves": curves,
                     "curves_true": rel_drift_curves(zs_true, sys_r)}


def write_plots(run: Any, arrays: dict, title: str = "") -> list[str]:
    """``trajectories.png`` (a test system, true and predicted) and ``conservation.png`` (mean
    relative drift of E, P, L over time) in the run folder ``run``."""
    plt = pyplot()
    if plt is None:
        return []
    true, pred, t = arrays["true"], arrays["pred"], arrays["t"]
    fig, ax = plt.subplots(figsize=(5, 5))
    for i in range(true.shape[3]):
        line, = ax.plot(true[0, :, 0, i, 0], true[0, :, 0, i, 1], "-", lw=1)
        ax.plot(pred[0, :, 0, i, 0], pred[0, :, 0, i, 1], "--", lw=1, color=line.get_color())
    ax.set_title(f"{title} test system 0: true (solid) vs model (dashed)")
    ax.set_aspect("equal")
    paths = [str(run.save_figure("trajectories.png", fig))]
    plt.close(fig)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, name in zip(axes, CONSERVED):
        ax.semilogy(t, np.maximum(np.mean(arrays["curves"][name], axis=0), 1e-18), label="model")
        ax.semilogy(t, np.maximum(np.mean(arrays["curves_true"][name], axis=0), 1e-18),
                    label="RK4 ground truth")
        ax.set_title(f"{name} relative drift")
        ax.set_xlabel("t")
        ax.legend()
    fig.tight_layout()
    paths.append(str(run.save_figure("conservation.png", fig)))
    plt.close(fig)
    return paths


def drift_plot(run: Any, rows: list) -> str | None:
    """``drift.png``: the demo's table as bars (relative drift per model and quantity)."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        ax.bar(np.arange(3) + i * width, np.maximum(r[3:6], 1e-17), width, label=r[0])
    ax.set_xticks(np.arange(3) + 0.4 - width / 2, [c.replace("_", " ") for c in CONSERVED])
    ax.set_yscale("log")
    ax.set_ylabel("relative drift")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = run.save_figure("drift.png", fig)
    plt.close(fig)
    return str(path)


def trainer(backend: str, model: Any, params: dict | None = None, ts: Any = None, *,
            seed: int = 0, **kw: Any) -> Any:
    """The backend trainer of a dynamics model, for use outside the training engine.

    The loss is the MSE of the model's rollout over the chunk times ``ts``.
    ``tr.step({"z": z, "sys": sys})`` takes a batch of chunks z (bs, T, 2, n, 2) and system
    features (bs, n, 2).

    Parameters
    ----------
    backend : {"torch", "jax"}
        Where training runs.
    model : DynamicsModel
        From :func:`lieconv_core.dynamics.models.make_model`.
    params : dict, optional
        Host parameters to start from; default drawn from ``seed``.
    ts : array_like, shape (T,), optional
        Chunk times relative to the chunk start; default the data's 5-step chunks.
    seed : int, default 0
        Seed of the initial parameters.
    **kw
        Passed to :func:`lieconv_core.app.training.make_trainer` (``lr``, ``total_steps``,
        ``dtype``, ``device``, ``compile``, ...).

    Returns
    -------
    TorchTrainer or JaxTrainer
        The trainer, with ``step``, ``params`` and ``state``.
    """
    task = SpringsTask()
    cfg = model.config()
    if ts is None:
        t = S.time_grid()
        ts = t[:S.CHUNK_LEN] - t[0]
    cfg = {**cfg, "ts": [float(t) for t in ts]}
    wrapped = SpringsModel(model)
    host = params if params is not None else model.init_host(np.random.default_rng(seed))
    return make_trainer(backend, task.loss_fn(wrapped, cfg, backend), host, {}, **kw)
