"""Portable weights and checkpoints.

A run directory holds:

* ``config.json``: the model config (:meth:`DynamicsModel.config`) plus dtype and training settings;
* ``model.safetensors``: the parameters with the best validation MSE (flat names ``a.b.c``),
  loadable on any backend, numpy included;
* ``last.safetensors``: the latest parameters plus the optimizer state (``opt.*``), and
  ``history.json`` (epoch, step count, losses): what ``--resume`` continues from.

Everything is written atomically (a temporary file in the same directory, then ``os.replace``), so a
crash never leaves a half-written file. Writers refuse to replace existing outputs unless told to.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .checkpoints import (  # noqa: F401  (the checkpoint files' helpers, part of io's API)
    CONFIG,
    HISTORY,
    LAST,
    WEIGHTS,
    CheckpointError,
    ensure_writable,
    load_json,
    load_tensors,
    save_json,
    save_tensors,
)


def save_weights(run_dir: str | os.PathLike, params_flat: dict[str, np.ndarray],
                 name: str = WEIGHTS, metadata: dict | None = None) -> Path:
    """Write flat weights into a run folder as one safetensors file.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.
    params_flat : dict of str to numpy.ndarray
        Weights by dotted name (see :func:`lieconv_core.nn.flatten`).
    name : str, default "model.safetensors"
        The file name inside ``run_dir``.
    metadata : dict, optional
        Extra metadata stored with the tensors.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(run_dir) / name
    save_tensors(path, params_flat, metadata)
    return path


def load_run(run_dir: str | os.PathLike, backend: str | None = None, dtype: str | None = None,
             device: Any = None, name: str = WEIGHTS) -> Any:
    """A trained run of any task, with its weights on the chosen backend.

    The config is checked (sizes bounded) before the model is built, and the weights (names,
    shapes, the sha256 stored with them) before they are used.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder (written by ``lieconv train`` or :func:`lieconv_core.app.training.fit`).
    backend : str, optional
        Array library of the weights; default ``LIECONV_BACKEND``.
    dtype : {"float32", "float64"}, optional
        Floating dtype of the weights; default the run's own.
    device : device, optional
        Where the weights live; default the library's default device.
    name : str, default "model.safetensors"
        Which checkpoint of the run (``"last.safetensors"`` for the latest).

    Returns
    -------
    types.SimpleNamespace
        With ``task``, ``cfg`` (the model config), ``model``, ``params`` and ``state`` (nested dicts
        of arrays on the backend) and ``config`` (the run's ``config.json``).
    """
    from types import SimpleNamespace

    from .._backend import default_device, namespace_for
    from ..nn.module import resolve_dtype, to_backend
    from .training.engine import load_run as _load

    task, cfg, model, params, state, config = _load(run_dir, name)
    xp = namespace_for(backend)
    dt = resolve_dtype(xp, dtype or config.get("dtype", "float32"))
    device = device if device is not None else default_device(xp)
    return SimpleNamespace(task=task, cfg=cfg, model=model, config=config,
                           params=to_backend(params, xp, dt, device),
                           state=to_backend(state, xp, dt, device))


def load_model(run_dir: str | os.PathLike, backend: str | None = None, dtype: str | None = None,
               device: Any = None, name: str = WEIGHTS) -> tuple[Any, dict, dict]:
    """(dynamics model, params on ``backend``, config) of a springs run; works on numpy too
    (there the Hamiltonian models evaluate V and H; the vector field needs an autodiff
    backend). Other tasks: :func:`load_run`.

    Parameters
    ----------
    run_dir : path
        A run folder written by ``lieconv train springs``.
    backend, dtype, device : optional
        Where the parameters go (default: ``LIECONV_BACKEND``, the run's dtype, the default
        device).
    name : str
        Weights file inside ``run_dir`` (default: the best weights, ``model.safetensors``).

    Returns
    -------
    model, params, config
        The dynamics model, its parameters as a nested dict of arrays, and the run's config.

    Raises
    ------
    CheckpointError
        Missing, corrupt or mismatched files, or a run of another task.
    """
    run = load_run(run_dir, backend, dtype, device, name)
    if run.task.name != "springs":
        raise CheckpointError(f"{run_dir} is a {run.task.name} run; use io.load_run")
    return run.model.model, run.params, run.config
from ..original import OriginalWeightsError, from_original  # noqa: E402

__all__ = ["load_run", "load_model", "from_original", "save_weights", "save_tensors",
           "load_tensors", "CheckpointError", "OriginalWeightsError"]
