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

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "lieconv-weights-v1"
CONFIG, WEIGHTS = "config.json", "model.safetensors"
LAST, HISTORY = "last.safetensors", "history.json"


class CheckpointError(ValueError):
    """A checkpoint or config that is missing, corrupt, or does not fit the model."""


def _atomic_write(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def ensure_writable(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse to replace an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; refusing to overwrite it "
                              "(choose another output or pass overwrite / --overwrite)")
    return path


def save_tensors(path: str | os.PathLike, flat: dict[str, Any],
                 metadata: dict | None = None) -> None:
    """Write a flat {name: array} dict as one safetensors file, atomically."""
    from safetensors.numpy import save_file

    arrays = {}
    for k, v in flat.items():
        a = np.ascontiguousarray(np.asarray(v))
        arrays[k] = a
    meta = {"format": FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}}
    _atomic_write(Path(path), lambda tmp: save_file(arrays, tmp, metadata=meta))


def load_tensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file -> ({name: numpy array}, metadata); clear errors if missing or
    corrupt."""
    from safetensors import safe_open

    path = Path(path)
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


def check_params(model: Any, flat: dict[str, np.ndarray], source: str = "checkpoint") -> None:
    """Raise CheckpointError unless ``flat`` has exactly the model's parameter names and shapes."""
    from .nn.module import flatten

    host = flatten(model.init_host(np.random.default_rng(0)))
    expected = {k: np.shape(v) for k, v in host.items()}
    missing = sorted(set(expected) - set(flat))
    extra = sorted(set(flat) - set(expected))
    bad = sorted(k for k in set(expected) & set(flat) if tuple(flat[k].shape) != expected[k])
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {extra[:5]}{' ...' if len(extra) > 5 else ''}")
        if bad:
            parts.append("shape mismatch " + ", ".join(
                f"{k}: {tuple(flat[k].shape)} vs {expected[k]}" for k in bad[:5]))
        raise CheckpointError(f"{source} does not fit the model config {model.config()}: "
                              + "; ".join(parts))


def save_weights(run_dir: str | os.PathLike, params_flat: dict[str, np.ndarray],
                 name: str = WEIGHTS, metadata: dict | None = None) -> Path:
    path = Path(run_dir) / name
    save_tensors(path, params_flat, metadata)
    return path


def load_model(run_dir: str | os.PathLike, backend: str | None = None, dtype: str | None = None,
               device: Any = None, name: str = WEIGHTS) -> tuple[Any, dict, dict]:
    """(model, params on ``backend``, config) from a run directory; works on numpy too (there the
    Hamiltonian models evaluate V and H; the vector field needs an autodiff backend)."""
    from ._backend import default_device, namespace_for
    from .dynamics.models import from_config
    from .nn.module import resolve_dtype, to_backend, unflatten

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"checkpoint directory {run_dir} does not exist")
    cfg = load_json(run_dir / CONFIG)
    if not isinstance(cfg, dict) or "model" not in cfg:
        raise CheckpointError(f"{run_dir / CONFIG} has no model config")
    try:
        model = from_config(cfg["model"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{run_dir / CONFIG}: {exc}") from exc
    flat, _ = load_tensors(run_dir / name)
    params_flat = {k: v for k, v in flat.items() if not k.startswith("opt.")}
    check_params(model, params_flat, str(run_dir / name))
    xp = namespace_for(backend)
    dt = resolve_dtype(xp, dtype or cfg.get("dtype", "float32"))
    device = device if device is not None else default_device(xp)
    return model, to_backend(unflatten(params_flat), xp, dt, device), cfg
from .original import OriginalWeightsError, from_original  # noqa: E402,F401
