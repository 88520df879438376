"""Backend-neutral training driver for the spring-dynamics models.

:func:`fit` runs epochs of minibatches over the training chunks, evaluates the validation MSE after
each epoch, keeps the best weights (``model.safetensors``), checkpoints the latest weights and the
optimizer state (``last.safetensors`` + ``history.json``), stops early when the validation MSE has
not improved for ``patience`` epochs, and shows a tqdm progress bar. The step itself is done by a
backend trainer (``lieconv_torch.train.TorchTrainer`` or ``lieconv_jax.train.JaxTrainer``) imported
only when a run starts, so importing this module imports no framework.

Batches are a deterministic function of (seed, epoch), so resuming from the last checkpoint
continues the same loss trajectory.
"""

from __future__ import annotations

import importlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from .nn.module import flatten

TRAINERS = {"torch": "lieconv_torch.train:TorchTrainer", "jax": "lieconv_jax.train:JaxTrainer"}


def trainer_class(backend: str) -> Any:
    if backend not in TRAINERS:
        raise ValueError(f"unknown training backend {backend!r}; choose one of: "
                         f"{', '.join(TRAINERS)} (training needs automatic differentiation)")
    mod, cls = TRAINERS[backend].split(":")
    try:
        return getattr(importlib.import_module(mod), cls)
    except ImportError as exc:
        raise RuntimeError(f"backend {backend!r} is not installed ({exc}); "
                           f"pip install 'lieconv[{backend}]'") from exc


def check_compile(backend: str, compile: bool) -> None:
    """ValueError unless ``compile`` is off or the backend is torch (jax always jits its step)."""
    if compile and backend != "torch":
        raise ValueError(f"--compile is for the torch backend (jax always jits its step), "
                         f"got backend {backend!r}")


def resolve_device(backend: str, device: str | None) -> Any:
    """A device string (``"cpu"``, ``"cuda:1"`` for torch; ``"cpu"``, ``"gpu:0"`` for jax) -> the
    framework's device object (by the backend's trainer module), or None for the trainer's
    default (torch: cpu; jax: its default device). Raises ValueError / RuntimeError naming the
    device when it does not exist here."""
    if device is None:
        return None
    mod = TRAINERS.get(backend, ":").split(":")[0]
    if not mod:
        trainer_class(backend)  # raises the unknown-backend error
    return importlib.import_module(mod).resolve_device(device)


def batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    perm = np.random.default_rng([seed, 2, epoch]).permutation(n)
    return [perm[i:i + batch_size] for i in range(0, n, batch_size)]


def check_data(split: Any, name: str) -> None:
    if not (np.all(np.isfinite(split.z)) and np.all(np.isfinite(split.sys))):
        raise ValueError(f"{name} data contain NaN or inf")


def evaluate_mse(trainer: Any, split: Any, batch_size: int = 200) -> float:
    total, count = 0.0, 0
    for i in range(0, len(split), batch_size):
        sl = slice(i, i + batch_size)
        n = len(split.z[sl])
        total += trainer.eval_loss(split.z[sl], split.sys[sl], split.ts) * n
        count += n
    return total / max(count, 1)


def fit(model: Any, splits: dict, backend: str, out: str | Path, epochs: int = 100,
        batch_size: int = 200, lr: float = 1e-3, seed: int = 0, dtype: str = "float32",
        resume: bool = False, overwrite: bool = False, patience: int | None = None,
        progress: bool = True, run_config: dict | None = None,
        max_steps: int | None = None, device: str | None = None, compile: bool = False) -> dict:
    """Train ``model`` and write the run directory ``out``; returns the history dict.

    ``resume``: continue from ``out/last.safetensors``. Without it an existing run in ``out`` is an
    error unless ``overwrite``. ``max_steps`` stops after that many optimizer steps in total.
    ``device``: see :func:`resolve_device` (the run directory does not depend on it).
    ``compile``: torch only, ``TorchTrainer(compile=True)`` (the step as one compiled function;
    the first step compiles for minutes; jax's step is always jitted).
    """
    check_compile(backend, compile)
    out = Path(out)
    for name in ("train", "val"):
        check_data(splits[name], name)
    n_train = len(splits["train"])
    steps_per_epoch = math.ceil(n_train / batch_size)
    total_steps = epochs * steps_per_epoch
    config = {"model": model.config(), "dtype": dtype, "backend": backend,
              "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                        "n_train": n_train, "patience": patience, **(run_config or {})}}
    Trainer = trainer_class(backend)
    history: dict[str, Any] = {"epoch": 0, "train_loss": [], "val_mse": [], "step_loss": [],
                               "best_val": None, "best_epoch": None, "seconds": 0.0}
    if resume:
        if not (out / io.LAST).exists():
            raise io.CheckpointError(f"nothing to resume: {out / io.LAST} does not exist")
        saved = io.load_json(out / io.CONFIG)
        if saved.get("model") != config["model"]:
            raise io.CheckpointError(f"cannot resume: {out / io.CONFIG} describes model "
                                     f"{saved.get('model')}, not {config['model']}")
        flat, _ = io.load_tensors(out / io.LAST)
        params_flat = {k: v for k, v in flat.items() if not k.startswith("opt.")}
        io.check_params(model, params_flat, str(out / io.LAST))
        from .nn.module import unflatten

        params = unflatten(params_flat)
        opt_state = {k: v for k, v in flat.items() if k.startswith("opt.")}
        history = io.load_json(out / io.HISTORY)
        config = {**config, "dtype": saved.get("dtype", dtype)}
        dtype = config["dtype"]
    else:
        if (out / io.CONFIG).exists() and not overwrite:
            raise FileExistsError(f"{out} already holds a run; pass resume=True (--resume) to "
                                  "continue it or overwrite=True (--overwrite) to replace it")
        params = model.init_host(np.random.default_rng(seed))
        opt_state = None
        out.mkdir(parents=True, exist_ok=True)
        io.save_json(out / io.CONFIG, config)
    dev = resolve_device(backend, device)
    trainer = Trainer(model, params, lr, total_steps, dtype=dtype, opt_state=opt_state,
                      **({} if dev is None else {"device": dev}),
                      **({"compile": True} if compile else {}))
    ts = splits["train"].ts
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=min(trainer.count, total_steps), unit="step",
                   desc=f"{model.config()['model']} {backend}")
    stale = 0
    if history["best_epoch"] is not None:
        stale = history["epoch"] - history["best_epoch"]
    try:
        for epoch in range(history["epoch"], epochs):
            if patience is not None and stale >= patience:
                break
            if max_steps is not None and trainer.count >= max_steps:
                break
            t0 = time.perf_counter()
            losses = []
            tr = splits["train"]
            for idx in batches(n_train, batch_size, seed, epoch):
                if max_steps is not None and trainer.count >= max_steps:
                    break
                loss = trainer.step(tr.z[idx], tr.sys[idx], ts)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss} at step {trainer.count}"
                                             "; lower the learning rate or use float64")
                losses.append(loss)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3g}")
            val = evaluate_mse(trainer, splits["val"], batch_size)
            history["epoch"] = epoch + 1
            history["train_loss"].append(float(np.mean(losses)) if losses else None)
            history["step_loss"].extend(losses)
            history["val_mse"].append(val)
            history["seconds"] += time.perf_counter() - t0
            params_flat = trainer.params_host()
            if history["best_val"] is None or val < history["best_val"]:
                history["best_val"], history["best_epoch"] = val, epoch + 1
                io.save_weights(out, params_flat, io.WEIGHTS, {"epoch": epoch + 1})
                stale = 0
            else:
                stale += 1
            io.save_tensors(out / io.LAST, {**params_flat, **trainer.opt_state_host()},
                            {"epoch": epoch + 1})
            io.save_json(out / io.HISTORY, history)
            if bar is not None:
                bar.set_postfix(loss=f"{history['train_loss'][-1]:.3g}", val=f"{val:.3g}")
    finally:
        if bar is not None:
            bar.close()
    history["trainer"] = trainer
    return history


__all__ = ["fit", "evaluate_mse", "batches", "trainer_class", "resolve_device", "flatten"]
