"""One training engine for every task: :func:`fit`, :func:`evaluate` and :func:`predict`.

:func:`fit` runs epochs of minibatches (prepared on the host by a background thread), evaluates
the validation set at the end of each epoch (and every ``eval_every`` steps), keeps the best
weights (``model.safetensors``), checkpoints the latest weights, optimizer state and history as
one file (``last.safetensors``), stops early after ``patience`` evaluations without improvement,
follows a warm-up + cosine schedule, resumes, shows a progress bar with samples/s and ETA, and
writes ``history.json``, ``metrics.json`` and ``curves.png``.

The step itself is done by a backend trainer (``lieconv_torch.train.TorchTrainer``,
``lieconv_jax.train.JaxTrainer``): "value and gradient of the task's loss of (params, state,
batch), then an optimizer step". Importing this module imports no framework.

Data-parallel training is a property of the trainer: under a ``torchrun`` launch (torch) or with
several visible jax devices, :func:`fit` gets a communicator (:func:`data_parallel`) and a
trainer that splits every global batch into equal shares (docs/training.md). Every process runs
the same loop on the same global batches; rank 0 alone opens the run folder, writes checkpoints,
history, metrics and plots, and its evaluation metrics decide for all.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..._backend import (
    adapter_for,
    compiling_backends,
    get_backend,
    load,
    namespace_for,
    trainable_backends,
)
from ...nn.lieconv import CACHE_KEYS
from ...nn.module import flatten, unflatten
from ...tasks.base import Dataset, Task, pad_batch
from .. import checkpoints as io  # the run's checkpoint files
from .loader import Batches, chunks, epoch_order, progress_bar, step_seed
from .rundir import CONFIG, HISTORY, LAST, METRICS, WEIGHTS, RunDir, RunDirError

#: settings that a resumed run must share with the run it continues
RESUME_KEYS = ("batch_size", "lr", "seed", "warmup_epochs", "eval_every", "optimizer")
#: the optimizers of the trainers: Adam, and plain SGD (no momentum)
OPTIMIZERS = ("adam", "sgd")
#: values of settings that runs from before the setting existed used
IMPLIED = {"optimizer": "adam"}
#: settings a resumed run may change (recorded in the history and the config)
CHANGEABLE = ("epochs", "patience")


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss)."""


# --- backends ------------------------------------------------------------------------------------
def trainer_class(backend: str) -> Any:
    """The trainer class of a registered backend (:class:`lieconv_core.BackendEntry`)."""
    if backend not in trainable_backends():
        raise ValueError(f"unknown training backend {backend!r}; choose one of: "
                         f"{', '.join(trainable_backends())} "
                         "(training needs automatic differentiation)")
    try:
        return load(get_backend(backend).trainer)
    except ImportError as exc:
        raise RuntimeError(f"backend {backend!r} is not installed ({exc}); "
                           f"pip install 'lieconv[{backend}]'") from exc


def resolve_device(backend: str, device: str | None) -> Any:
    """A device string ("cpu", "cuda:1" for torch; "cpu", "gpu:0" for jax) -> the framework's
    device object, or None for the trainer's default. ValueError / RuntimeError naming it when
    it does not exist here."""
    if device is None:
        return None
    trainer_class(backend)  # the unknown-backend error
    xp = namespace_for(backend)
    return adapter_for(xp).device(xp, device)


def data_parallel(backend: str, device: str | None = None, timeout: float | None = None
                  ) -> Any:
    """The communicator of a data-parallel run, or None for one process on one device.

    torch: a ``torchrun`` launch (``WORLD_SIZE`` > 1) joins its process group. jax: several
    visible devices and no explicit ``device`` give a mesh over all of them (after
    ``jax.distributed.initialize`` on several hosts). The backend's registry entry names the
    communicator (:class:`lieconv_core.BackendEntry`).

    Parameters
    ----------
    backend : str
        A registered backend; those without data parallelism (numpy, ...) give None.
    device : str or None
        The requested device; None: the backend's default.
    timeout : float or None
        Seconds a collective waits for the other processes before the job fails (torch); None:
        the framework's default.

    Returns
    -------
    object or None
        The communicator (with ``rank``, ``shares``, ``processes`` and ``broadcast``), or None for
        the ordinary single-process path.

    Raises
    ------
    ValueError
        For an unregistered backend.
    RuntimeError
        When the backend is not installed.
    """
    if get_backend(backend).dp_comm is None:  # ValueError for an unregistered name
        return None
    trainer_class(backend)  # the not-installed error
    return load(get_backend(backend).dp_comm)(device=device, timeout=timeout)


def make_trainer(backend: str, loss_fn: Any, params: dict, state: dict, *, lr: float = 0.0,
                 total_steps: int = 1, warmup_steps: int = 0, dtype: str = "float32",
                 device: str | None = None, opt_state: dict | None = None,
                 compile: bool = False, comm: Any = None, optimizer: str = "adam") -> Any:
    """The backend's trainer for ``loss_fn``; with a communicator, its data-parallel trainer.

    Parameters
    ----------
    backend : str
        A registered training backend ("torch", "jax").
    loss_fn : callable
        ``loss_fn(params, state, batch, rng) -> (scalar loss, new state)``.
    params : dict
        Nested dict of host (numpy) arrays.
    state : dict
        Nested dict of host arrays (BN statistics, radii; may be empty).
    lr : float
        Peak learning rate of the schedule.
    total_steps : int
        Optimizer steps of the whole run (end of the cosine decay).
    warmup_steps : int
        Steps of the linear warm-up.
    dtype : str
        "float32" or "float64": dtype of parameters and batches.
    device : str or None
        Device string ("cpu", "cuda:1", "gpu:0"); None: the trainer's default.
    opt_state : dict or None
        Portable optimizer state to continue from.
    compile : bool
        Compile the step (only for the backends in
        :func:`lieconv_core.compiling_backends`).
    comm : object or None
        A communicator from :func:`data_parallel`; None: single-process training.
    optimizer : {"adam", "sgd"}
        Adam, or plain SGD (no momentum) of the framework.

    Returns
    -------
    object
        The trainer (``step``, ``update_state``, ``run``, ``params_host``, ...).

    Raises
    ------
    ValueError
        When ``compile`` is asked of a backend that does not compile, or for an unknown backend.
    """
    if compile and backend not in compiling_backends():
        raise ValueError(f"--compile is for the {' and '.join(compiling_backends())} backend "
                         f"(the others compile their step themselves or not at all), "
                         f"got backend {backend!r}")
    if comm is not None:
        return load(get_backend(backend).dp_trainer)(loss_fn, params, state, lr=lr,
                                           total_steps=total_steps, warmup_steps=warmup_steps,
                                           dtype=dtype, opt_state=opt_state, compile=compile,
                                           comm=comm, optimizer=optimizer)
    dev = resolve_device(backend, device)
    kw = {} if dev is None else {"device": dev}
    if compile:
        kw["compile"] = True
    return trainer_class(backend)(loss_fn, params, state, lr=lr, total_steps=total_steps,
                                  warmup_steps=warmup_steps, dtype=dtype, opt_state=opt_state,
                                  optimizer=optimizer, **kw)


class HostRunner:
    """Runs eval functions on an array-API namespace without autodiff (numpy,
    array_api_strict): what :func:`evaluate` and :func:`predict` use on those backends."""

    def __init__(self, backend: str, params: dict, state: dict, dtype: str = "float64"):
        from ...nn.module import resolve_dtype, to_backend

        self.xp = namespace_for(backend)
        self.dtype = resolve_dtype(self.xp, dtype)
        self.params = to_backend(params, self.xp, self.dtype)
        self.state = to_backend(state, self.xp, self.dtype)

    def run(self, fn: Any, batch: dict, seed: int = 0) -> Any:
        from ...nn.module import to_backend

        out = fn(self.params, self.state, to_backend(batch, self.xp, self.dtype), int(seed))
        return np.asarray(adapter_for(self.xp).to_numpy(out))


def runner_for(backend: str, task: Task, model: Any, cfg: dict, params: dict, state: dict,
               dtype: str, device: str | None = None) -> Any:
    """An object with ``run(fn, batch, seed)`` on ``backend`` that holds params and state.

    Training backends give their trainer; the others (numpy, array_api_strict) a host runner
    without autodiff.

    Parameters
    ----------
    backend : str
        A registered backend name.
    task : Task
        The task (its loss builds the trainer).
    model : object
        The model built from ``cfg``.
    cfg : dict
        The model config.
    params : dict
        Nested dict of host arrays.
    state : dict
        Nested dict of host arrays.
    dtype : str
        "float32" or "float64".
    device : str or None
        Device string; None: the default.

    Returns
    -------
    object
        The runner.
    """
    if backend in trainable_backends():
        return make_trainer(backend, task.loss_fn(model, cfg, backend), params, state,
                            dtype=dtype, device=device)
    return HostRunner(backend, params, state, dtype)


# --- checkpoints ---------------------------------------------------------------------------------
def save_checkpoint(run: RunDir, name: str, trainer: Any, history: dict | None = None,
                    with_opt: bool = False) -> None:
    """Params, state (``state.*``) and, for ``last.safetensors``, the optimizer state and the
    history (in the metadata): one file, written atomically."""
    flat = dict(trainer.params_host())
    flat.update({f"state.{k}": v for k, v in trainer.state_host().items() if not _is_cache(k)})
    if with_opt:
        flat.update(trainer.opt_state_host())
    meta = {"step": trainer.count}
    if history is not None:
        meta["history"] = json.dumps(history, allow_nan=False)
    io.save_tensors(run.file(name), flat, meta)


def split_flat(flat: dict) -> tuple[dict, dict, dict]:
    """{name: array} of a checkpoint -> (params, state, optimizer state) flat dicts."""
    params = {k: v for k, v in flat.items() if not k.startswith(("state.", "opt."))}
    state = {k[len("state."):]: v for k, v in flat.items() if k.startswith("state.")}
    opt = {k: v for k, v in flat.items() if k.startswith("opt.")}
    return params, state, opt


def check_against(model: Any, params: dict, state: dict, source: str) -> dict:
    """CheckpointError unless flat params and state have the model's names and shapes; returns
    the flat state, completed where it predates the running-average radius ("r_train",
    "r_count")."""
    p_host, s_host = model.init_host(np.random.default_rng(0))
    _compare(flatten(p_host), params, f"{source} (parameters)")
    want_s = flatten(s_host)
    got_s = _upgrade_state(want_s, state)
    _compare(want_s, got_s, f"{source} (state)")
    return got_s


def _is_cache(name: str) -> bool:
    """Whether a flat state name is a per-call cache (``lieconv_core.nn.lieconv.CACHE_KEYS``)."""
    return name.rsplit(".", 1)[-1] in CACHE_KEYS


def _upgrade_state(want: dict, got: dict) -> dict:
    """The flat state ``got`` without caches (checkpoints of jax runs once held the FPS
    indices) and completed where it predates the running-average radius."""
    out = {k: v for k, v in got.items() if not _is_cache(k)}
    for k in want:
        if k.endswith(".r_train") and k not in out and k[:-len("_train")] in out:
            out[k] = out[k[:-len("_train")]]
        if k.endswith(".r_count") and k not in out:
            out[k] = np.asarray(0.0)
    return out


def _compare(want: dict, got: dict, source: str) -> None:
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    bad = sorted(k for k in set(want) & set(got)
                 if tuple(np.shape(got[k])) != tuple(np.shape(want[k])))
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if extra:
            parts.append(f"unexpected {extra[:5]}")
        if bad:
            parts.append("shape mismatch " + ", ".join(
                f"{k}: {tuple(np.shape(got[k]))} vs {tuple(np.shape(want[k]))}" for k in bad[:5]))
        raise io.CheckpointError(f"{source} does not fit the model config: " + "; ".join(parts))


def check_header(cfg: dict, path: Path) -> None:
    """CheckpointError unless the widths and depth in ``cfg`` (``k``, ``num_layers``) agree with
    the tensor shapes in the header of the safetensors file ``path`` (read without its data),
    so that a config that does not belong to the weights is refused before a model is built."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception:  # a missing or corrupt file: load_tensors says which, with its reason
        return
    lin_in = [s for k, s in shapes.items() if k.endswith("lin_in.w")]
    blocks = {k.split("blocks.")[1].split(".")[0] for k in shapes
              if "blocks." in k and not k.startswith(("state.", "opt."))}
    bad = []
    if lin_in and "k" in cfg and cfg.get("arch", "lieresnet") == "lieresnet" \
            and lin_in[0][-1] != cfg["k"]:
        bad.append(f"k {cfg['k']} (the weights have {lin_in[0][-1]})")
    if blocks and "num_layers" in cfg and len(blocks) != cfg["num_layers"]:
        bad.append(f"num_layers {cfg['num_layers']} (the weights have {len(blocks)})")
    if bad:
        raise io.CheckpointError(f"{path}: the config does not fit the weights: "
                                 + "; ".join(bad))


def load_checkpoint(path: Path, model: Any) -> tuple[dict, dict, dict, dict]:
    """(params, state, optimizer state, history or {}) of a checkpoint file, checked against
    ``model`` (names and shapes) and against its stored sha256."""
    flat, meta = io.load_tensors(path)
    params, state, opt = split_flat(flat)
    state = check_against(model, params, state, str(path))
    history = {}
    if "history" in meta:
        try:
            history = json.loads(meta["history"])
        except json.JSONDecodeError as exc:
            raise io.CheckpointError(f"{path}: its stored history is not valid JSON") from exc
    return unflatten(params), unflatten(state), opt, history


# --- evaluation ----------------------------------------------------------------------------------
def run_outputs(runner: Any, fn: Any, data: Dataset, batch_size: int, seed: int = 0,
                keys: tuple[str, ...] | None = None, progress: Any = None,
                prepare: Any = None) -> np.ndarray:
    """Apply ``fn`` over a data set in batches and concatenate the outputs along the first axis.

    The last batch is padded so that every call has the same shapes; its padding rows are
    dropped from the output.

    Parameters
    ----------
    runner : object
        Has ``run(fn, batch, seed)`` (a trainer or :func:`runner_for`'s result).
    fn : callable
        ``fn(params, state, batch, rng)`` -> an array with one row per sample.
    data : Dataset
        The samples.
    batch_size : int
        Samples per call.
    seed : int
        Seed of the first batch; batch ``i`` uses ``seed + i``.
    keys : tuple of str or None
        Batch entries passed to ``fn``; None: all.
    progress : object or None
        A progress bar with ``update(n)``, or None.
    prepare : callable or None
        ``prepare(batch)`` -> batch, applied first (e.g. a task's :meth:`~Task.inputs`).

    Returns
    -------
    numpy.ndarray
        ``(len(data), ...)``, the outputs in data order.
    """
    outs = []
    for i, sl in enumerate(chunks(len(data), batch_size)):
        batch = data.take(sl)
        if prepare is not None:
            batch = prepare(batch)
        if keys is not None:
            batch = {k: batch[k] for k in keys if k in batch}
        batch, n = pad_batch(batch, batch_size)
        out = runner.run(fn, batch, seed + i)
        outs.append(np.asarray(out)[:n])
        if progress is not None:
            progress.update(n)
    return np.concatenate(outs, axis=0)


def evaluate(task: Task, cfg: dict, runner: Any, fn: Any, data: Dataset, batch_size: int,
             seed: int = 0, progress: Any = None) -> tuple[dict, np.ndarray]:
    """Metrics and outputs of the eval function ``fn`` on a data set.

    Parameters
    ----------
    task : Task
        The task (its inputs and metrics).
    cfg : dict
        The model config.
    runner : object
        Has ``run(fn, batch, seed)``.
    fn : callable
        The eval function, ``fn(params, state, batch, rng)``.
    data : Dataset
        The samples.
    batch_size : int
        Samples per call (at most ``len(data)``).
    seed : int
        Seed of the first batch.
    progress : object or None
        A progress bar with ``update(n)``, or None.

    Returns
    -------
    metrics : dict
        The task's metrics of the outputs.
    outputs : numpy.ndarray
        ``(len(data), ...)``, ``fn``'s outputs in data order.
    """
    outputs = run_outputs(runner, fn, data, min(batch_size, max(len(data), 1)), seed,
                          progress=progress, prepare=lambda b: task.inputs(b, cfg))
    return task.metrics(outputs, data, cfg), outputs


# --- fit -----------------------------------------------------------------------------------------
def _check_settings(epochs: int, batch_size: int, lr: float, patience: int | None,
                    max_steps: int | None, warmup_epochs: float, eval_every: int | None) -> None:
    checks = [("epochs", epochs, epochs >= 1), ("batch_size", batch_size, batch_size >= 1),
              ("lr", lr, lr > 0 and math.isfinite(lr)),
              ("patience", patience, patience is None or patience >= 1),
              ("max_steps", max_steps, max_steps is None or max_steps >= 1),
              ("warmup_epochs", warmup_epochs, 0 <= warmup_epochs < epochs),
              ("eval_every", eval_every, eval_every is None or eval_every >= 1)]
    for name, val, ok in checks:
        if not ok:
            raise ValueError(f"{name} out of range: {val!r}")


def fit(task: Task, cfg: dict, data: dict[str, Dataset], out: str | Path, *,
        backend: str = "torch", epochs: int = 10, batch_size: int = 32, lr: float = 1e-3,
        seed: int = 0, dtype: str = "float32", warmup_epochs: float = 0.0,
        patience: int | None = None, max_steps: int | None = None,
        eval_every: int | None = None, resume: bool = False, overwrite: bool = False,
        progress: bool = True, device: str | None = None, compile: bool = False,
        info: dict | None = None, eval_batch_size: int | None = None,
        refresh: int = 16, dist_timeout: float | None = None, optimizer: str = "adam") -> dict:
    """Train the model that ``cfg`` describes and write the run folder.

    Trains on ``data["train"]``, validating on ``data["val"]``; the module docstring describes the
    loop, checkpoints and files.

    Parameters
    ----------
    task : Task
        The task (model, loss, metrics).
    cfg : dict
        The model config.
    data : dict of Dataset
        ``{"train": ..., "val": ...}``.
    out : str or Path
        The run folder.
    backend : str
        A registered training backend ("torch", "jax").
    epochs : int
        Passes over the training set.
    batch_size : int
        Samples per optimizer step (the global batch in data-parallel runs; capped at the
        training set's size).
    lr : float
        Peak learning rate.
    seed : int
        Seed of the initialisation, the batch order and the draws.
    dtype : str
        "float32" or "float64".
    warmup_epochs : float
        Epochs of linear learning-rate warm-up, in ``[0, epochs)``.
    patience : int or None
        Stop after that many evaluations without improvement; None: never early.
    max_steps : int or None
        Stop after that many optimizer steps in total; None: no bound.
    eval_every : int or None
        Also evaluate every that many steps; None: at the end of each epoch only.
    resume : bool
        Continue ``out`` from its last checkpoint (settings must match).
    overwrite : bool
        Without ``resume``, allow a non-empty ``out``.
    progress : bool
        Show a progress bar.
    device : str or None
        Device string; None: the trainer's default.
    compile : bool
        Compile the step (backends in :func:`lieconv_core.compiling_backends`; models that draw
        no random numbers).
    info : dict or None
        Stored in ``config.json`` (e.g. the data's origin).
    eval_batch_size : int or None
        Samples per evaluation call; None: ``batch_size``.
    refresh : int
        Training-mode forwards (no updates) that renew the batch-norm statistics and radii before
        each evaluation and checkpoint.
    dist_timeout : float or None
        Seconds a data-parallel collective waits for the other processes before the job fails
        (torch).
    optimizer : {"adam", "sgd"}
        Adam, or plain SGD without momentum (on the same learning-rate schedule).

    Returns
    -------
    dict
        The history (steps, losses, evaluations, best result), with the trainer under
        ``"trainer"``.

    Raises
    ------
    ValueError
        For settings out of range, ``compile`` with a model that draws, or a batch size that does
        not split into the data-parallel shares.
    """
    _check_settings(epochs, batch_size, lr, patience, max_steps, warmup_epochs, eval_every)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
    if compile and task.draws:
        raise ValueError(f"--compile needs a model that draws no random numbers; the "
                         f"{task.name} task's model does")
    train, val = data["train"], data["val"]
    for ds in (train, val):
        task.check(ds, cfg)
    batch_size = min(batch_size, len(train))
    steps_per_epoch = len(train) // batch_size
    total_steps = epochs * steps_per_epoch
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                "warmup_epochs": warmup_epochs, "patience": patience, "eval_every": eval_every,
                "n_train": len(train), "n_val": len(val), "refresh": refresh,
                "optimizer": optimizer}
    config = {"task": task.name, "model": cfg, "dtype": dtype, "backend": backend,
              "train": settings, "info": info or {}}
    model = task.build_model(cfg)
    loss_fn = task.loss_fn(model, cfg, backend)
    predict_fn = task.predict_fn(model, cfg, backend)
    comm = data_parallel(backend, device, dist_timeout)
    if comm is not None and batch_size % comm.shares:
        raise ValueError(f"data-parallel training splits each batch into {comm.shares} equal "
                         f"shares: the batch size {batch_size} must be a multiple of "
                         f"{comm.shares}")
    writer = comm is None or comm.rank == 0
    run, start, failure = None, None, None
    if writer:
        try:
            run = RunDir.open(out, "resume" if resume else "new", overwrite=overwrite)
            start = _start(run, resume, config, model, seed)
        except BaseException as exc:
            if run is not None:
                run.close()
            failure = exc
    if comm is not None and comm.processes > 1:
        # every process starts from rank 0's weights, optimizer state and history, and fails
        # with rank 0's reason when rank 0 cannot start; the others never touch the run folder
        got = comm.broadcast(("ok", start) if failure is None
                             else ("error", f"{type(failure).__name__}: {failure}"))
        if not writer:
            if got[0] == "error":
                raise RuntimeError(f"rank 0 could not start the run: {got[1]}")
            start = got[1]
    if failure is not None:
        raise failure
    with run if run is not None else contextlib.nullcontext():
        params, state, opt_state, history = start
        trainer = make_trainer(backend, loss_fn, params, state, lr=lr, total_steps=total_steps,
                               warmup_steps=round(warmup_epochs * steps_per_epoch), dtype=dtype,
                               device=device, opt_state=opt_state, compile=compile, comm=comm,
                               optimizer=optimizer)
        loop = _Loop(task, cfg, run, trainer, predict_fn, train, val, history, settings,
                     max_steps, progress and writer, eval_batch_size or batch_size, comm)
        loop.run()
        history["trainer"] = trainer
        return history


def _start(run: RunDir, resume: bool, config: dict, model: Any, seed: int
           ) -> tuple[dict, dict, dict | None, dict]:
    """(params, state, optimizer state or None, history) a run starts from: its last checkpoint
    when resuming, else the seeded init (and the run's config is written)."""
    if resume:
        return _resume(run, config, model)
    params, state = model.init_host(np.random.default_rng(seed))
    run.write_json(CONFIG, config)
    return params, state, None, new_history()


def new_history() -> dict:
    return {"epoch": 0, "batch": 0, "step_loss": [], "evals": [], "best": None,
            "best_step": None, "stale": 0, "train_seconds": 0.0, "data_wait_seconds": 0.0,
            "done": False, "changes": []}


def _resume(run: RunDir, config: dict, model: Any) -> tuple[dict, dict, dict, dict]:
    saved = run.read_json(CONFIG)
    if not isinstance(saved, dict):
        raise io.CheckpointError(f"{run.file(CONFIG)} is not a run config (a JSON object)")
    if saved.get("task") != config["task"] or saved.get("model") != config["model"]:
        raise io.CheckpointError(f"cannot resume: {run.file(CONFIG)} describes another task or "
                                 f"model ({saved.get('task')}: {saved.get('model')})")
    old = saved.get("train", {})
    diff = [f"{k} {old.get(k, IMPLIED.get(k))!r} -> {config['train'][k]!r}" for k in RESUME_KEYS
            if old.get(k, IMPLIED.get(k)) != config["train"][k]]
    if saved.get("dtype") != config["dtype"]:
        diff.append(f"dtype {saved.get('dtype')!r} -> {config['dtype']!r}")
    if diff:
        raise io.CheckpointError("cannot resume with different settings (" + "; ".join(diff)
                                 + "): pass the run's own settings, or start a new run")
    params, state, opt, history = load_checkpoint(run.file(LAST), model)
    changes = [f"{k} {old.get(k)!r} -> {config['train'][k]!r}" for k in CHANGEABLE
               if old.get(k) != config["train"][k]]
    if changes:
        history.setdefault("changes", []).append(
            f"resumed at step {len(history.get('step_loss', []))}: " + "; ".join(changes))
        run.write_json(CONFIG, {**saved, "train": {**old, **{k: config["train"][k]
                                                               for k in CHANGEABLE}}})
    need = set(new_history())
    if not need <= set(history):
        raise io.CheckpointError(f"{run.file(LAST)} holds no complete training history "
                                 f"(missing {sorted(need - set(history))})")
    if "opt.count" not in opt:
        raise io.CheckpointError(f"{run.file(LAST)} holds no optimizer state")
    slots = ("mu", "nu") if config["train"]["optimizer"] == "adam" else ()
    for name, value in flatten(params).items():
        for slot in slots:
            got = opt.get(f"opt.{slot}.{name}")
            if got is None or tuple(np.shape(got)) != tuple(np.shape(value)):
                raise io.CheckpointError(
                    f"{run.file(LAST)}: the optimizer state of {name!r} ({slot}) is missing or "
                    f"has the wrong shape ({None if got is None else np.shape(got)})")
    if int(np.asarray(opt["opt.count"]).reshape(-1)[0]) != len(history["step_loss"]):
        raise io.CheckpointError(f"{run.file(LAST)}: optimizer step count and history disagree")
    return params, state, opt, history


class _Loop:
    """The epochs of :func:`fit` (its state lives in ``history``, saved with each checkpoint)."""

    def __init__(self, task, cfg, run, trainer, predict_fn, train, val, history, settings,
                 max_steps, progress, eval_batch_size, comm=None):
        self.task, self.cfg, self.run_dir, self.trainer = task, cfg, run, trainer
        # data-parallel: every process runs this loop; rank 0 (run_dir not None) writes
        self.comm, self.writer = comm, run is not None
        self.predict_fn, self.train, self.val, self.h = predict_fn, train, val, history
        self.s, self.max_steps, self.eval_bs = settings, max_steps, eval_batch_size
        self.primary, self.maximize = task.primary_for(cfg)
        self.bar = _bar(progress, settings, trainer.count, task.name)

    def _augment(self, batch: dict, gen: np.random.Generator) -> dict:
        return self.task.augment(self.task.inputs(batch, self.cfg), gen, self.cfg)

    def run(self) -> None:
        h, s = self.h, self.s
        try:
            while h["epoch"] < s["epochs"] and not self._stopping():
                self._epoch()
            h["done"] = True
            self._finish()
        finally:
            if self.bar is not None:
                self.bar.close()

    def _stopping(self) -> bool:
        h, s = self.h, self.s
        if s["patience"] is not None and h["stale"] >= s["patience"]:
            return True
        return self.max_steps is not None and self.trainer.count >= self.max_steps

    def _epoch(self) -> None:
        h, s, tr = self.h, self.s, self.trainer
        order = epoch_order(len(self.train), s["batch_size"], s["seed"], h["epoch"])
        batches = Batches(self.train, order, s["seed"], h["epoch"],
                          self._augment, start=h["batch"])
        t_last = time.perf_counter()
        for batch in batches:
            if self._stopping():
                break
            loss = tr.step(batch, step_seed(s["seed"], tr.count))
            if not math.isfinite(loss):
                raise TrainingError(f"training loss became {loss} at step {tr.count}; lower "
                                    "the learning rate or use float64")
            now = time.perf_counter()
            h["train_seconds"] += now - t_last
            h["step_loss"].append(loss)
            h["batch"] += 1
            if self.bar is not None:
                self.bar.update(s["batch_size"])
                self.bar.set_postfix(loss=f"{loss:.3g}", refresh=False)
            if s["eval_every"] and tr.count % s["eval_every"] == 0 and h["batch"] < len(order):
                self._evaluate()
            t_last = time.perf_counter()
        h["data_wait_seconds"] += batches.wait_seconds
        if h["batch"] >= len(order):
            h["epoch"] += 1
            h["batch"] = 0
            self._evaluate()

    def _refresh_state(self) -> None:
        """Batch-norm statistics and radii of the current weights: ``refresh`` training-mode
        forwards without updates before each evaluation. The running statistics otherwise lag
        the moving weights, which shows as eval accuracy well below train-mode accuracy after
        short or fast trainings."""
        n = min(self.s.get("refresh", 0), len(self.train) // self.s["batch_size"])
        if not n or not self.trainer.state_host():
            return
        order = epoch_order(len(self.train), self.s["batch_size"], self.s["seed"] + 1,
                            len(self.h["evals"]))[:n]
        for i, batch in enumerate(Batches(self.train, order, self.s["seed"],
                                          10**6 + len(self.h["evals"]), self._augment,
                                          prefetch=0)):
            self.trainer.update_state(batch, step_seed(self.s["seed"] + 1, i))

    def _evaluate(self) -> None:
        h, tr = self.h, self.trainer
        self._refresh_state()
        metrics, _ = evaluate(self.task, self.cfg, tr, self.predict_fn, self.val, self.eval_bs,
                              seed=10_000)
        if self.comm is not None and self.comm.processes > 1:
            metrics = self.comm.broadcast(metrics)  # rank 0's decide best and patience for all
        n_new = tr.count - sum(e["steps"] for e in h["evals"])
        recent = h["step_loss"][len(h["step_loss"]) - n_new:] if n_new else []
        entry = {"step": tr.count, "steps": n_new, "epoch": h["epoch"] + h["batch"] / max(
            1, len(self.train) // self.s["batch_size"]), "train_seconds": h["train_seconds"],
            "train_loss": float(np.mean(recent)) if recent else None, "val": metrics}
        h["evals"].append(entry)
        value = metrics[self.primary]
        better = h["best"] is None or (value > h["best"] if self.maximize else value < h["best"])
        if better:
            h["best"], h["best_step"], h["stale"] = value, tr.count, 0
            if self.writer:
                save_checkpoint(self.run_dir, WEIGHTS, tr)
        else:
            h["stale"] += 1
        if self.writer:
            save_checkpoint(self.run_dir, LAST, tr, _plain(h), with_opt=True)
            self.run_dir.write_json(HISTORY, _plain(h))
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{entry['train_loss'] or float('nan'):.3g}",
                                 **{f"val_{self.primary}": f"{value:.4g}"})

    def _finish(self) -> None:
        if not self.writer:
            return
        h = self.h
        best = next((e for e in h["evals"] if e["step"] == h["best_step"]), None)
        steps = len(h["step_loss"])
        metrics = {"task": self.task.name, "best_step": h["best_step"],
                   f"best_val_{self.primary}": h["best"], "best_val": best and best["val"],
                   "last_val": h["evals"][-1]["val"] if h["evals"] else None,
                   "steps": steps, "epochs": h["epoch"], "train_seconds": h["train_seconds"],
                   "data_wait_fraction": h["data_wait_seconds"] / max(h["train_seconds"], 1e-9),
                   "samples_per_second": steps * self.s["batch_size"] / max(
                       h["train_seconds"], 1e-9)}
        self.run_dir.write_json(METRICS, metrics)
        from .plots import training_curves

        training_curves(self.run_dir, h, self.primary)


def _plain(h: dict) -> dict:
    return {k: v for k, v in h.items() if k != "trainer"}


def _bar(progress: bool, s: dict, done_steps: int, name: str) -> Any:
    total = s["epochs"] * (s["n_train"] // s["batch_size"]) * s["batch_size"]
    return progress_bar(progress, total, f"train {name}", initial=done_steps * s["batch_size"])


# --- loading a run -------------------------------------------------------------------------------
def load_run(path: str | Path, name: str = WEIGHTS) -> tuple[Task, dict, Any, dict, dict, dict]:
    """Load a run folder's checkpoint and what it needs.

    The config is checked (sizes bounded) before the model is built, and the weights are checked
    against it.

    Parameters
    ----------
    path : str or Path
        The run folder.
    name : str
        The checkpoint file in it (default: the best weights, ``model.safetensors``).

    Returns
    -------
    task : Task
        The run's task.
    cfg : dict
        The validated model config.
    model : object
        The model.
    params : dict
        Nested dict of host arrays.
    state : dict
        Nested dict of host arrays.
    config : dict
        The run config (``config.json``).

    Raises
    ------
    lieconv_core.app.io.CheckpointError
        When the folder, its config or the checkpoint is missing or does not fit.
    """
    from ...tasks import get_task
    from .rundir import read_json, refuse_symlink

    path = Path(path)
    try:
        refuse_symlink(path, "folder")
        if not path.is_dir():
            raise io.CheckpointError(f"checkpoint folder {path} does not exist")
        config = read_json(path / CONFIG, "run config")
    except RunDirError as exc:
        raise io.CheckpointError(str(exc)) from exc
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise io.CheckpointError(f"{path / CONFIG} has no model config (a JSON object)")
    try:
        task = get_task(config.get("task", "springs"))
        cfg = task.validate_config(config["model"])
        check_header(cfg, path / name)
        model = task.build_model(cfg)
    except (ValueError, TypeError, KeyError) as exc:
        raise io.CheckpointError(f"{path / CONFIG}: {exc}") from exc
    params, state, _, _ = load_checkpoint(path / name, model)
    return task, cfg, model, params, state, config
