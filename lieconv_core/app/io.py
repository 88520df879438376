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

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "lieconv-weights-v1"
CONFIG, WEIGHTS = "config.json", "model.safetensors"
LAST, HISTORY = "last.safetensors", "history.json"


class CheckpointError(ValueError):
    """A checkpoint or config that is missing, corrupt, or does not fit the model."""


def _atomic_write(path: Path, write) -> None:
    from .training.rundir import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def tensors_sha256(flat: dict[str, np.ndarray]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a flat {name: array} dict (sorted by
    name): stored in a checkpoint's metadata and checked when it is read."""
    h = hashlib.sha256()
    for k in sorted(flat):
        a = np.asarray(flat[k], order="C")
        h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def ensure_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to replace an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; refusing to overwrite it "
                              "(choose another output or pass overwrite / --overwrite)")
    return path


def save_tensors(path: str | os.PathLike, flat: dict[str, Any],
                 metadata: dict | None = None) -> None:
    """Write a flat ``{name: array}`` dict as one safetensors file, atomically.

    The file's metadata records the format tag, ``metadata`` and a sha256 of the tensors, which
    :func:`load_tensors` checks.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced atomically).
    flat : dict of str to array_like
        The tensors by name; each is converted to a C-ordered numpy array.
    metadata : dict, optional
        Extra string metadata (values are converted with ``str``).
    """
    from safetensors.numpy import save_file

    arrays = {}
    for k, v in flat.items():
        a = np.asarray(v, order="C")  # keeps 0-d arrays 0-d (ascontiguousarray makes them 1-d)
        arrays[k] = a
    meta = {"format": FORMAT, **{k: str(v) for k, v in (metadata or {}).items()},
            "sha256": tensors_sha256(arrays)}
    _atomic_write(Path(path), lambda tmp: save_file(arrays, tmp, metadata=meta))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors checkpoint written by :func:`save_tensors`.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.

    Returns
    -------
    flat : dict of str to numpy.ndarray
        The tensors by name.
    metadata : dict of str to str
        The file's metadata.

    Raises
    ------
    CheckpointError
        When the file is missing, a symbolic link, not a lieconv safetensors file, corrupt (its
        sha256 does not match), or holds NaN or inf.
    """
    from safetensors import safe_open

    from .training.rundir import RunDirError, refuse_symlink

    path = Path(path)
    try:
        refuse_symlink(path, "checkpoint")
    except RunDirError as exc:
        raise CheckpointError(str(exc)) from exc
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            flat = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises several types for bad headers / truncation
        raise CheckpointError(f"{path} is not a valid safetensors checkpoint "
                              f"(corrupt or truncated): {exc}") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a lieconv checkpoint (format {meta.get('format')!r}, "
                              f"expected {FORMAT!r})")
    if "sha256" in meta and tensors_sha256(flat) != meta["sha256"]:
        raise CheckpointError(f"{path} is corrupt: its tensors do not match the sha256 stored "
                              "in it (the file was changed after it was written)")
    for k, v in flat.items():
        if v.dtype.kind == "f" and not np.all(np.isfinite(v)):
            raise CheckpointError(f"{path}: tensor {k!r} contains NaN or inf")
    return flat, meta


def save_json(path: str | os.PathLike, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True)
    _atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text + "\n"))


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


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
        The run folder (written by ``lieconv train`` or :func:`lieconv_core.training.fit`).
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

    from ._backend import default_device, namespace_for
    from .nn.module import resolve_dtype, to_backend
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
from .original import OriginalWeightsError, from_original  # noqa: E402

__all__ = ["load_run", "load_model", "from_original", "save_weights", "save_tensors",
           "load_tensors", "CheckpointError", "OriginalWeightsError"]
