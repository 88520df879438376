"""Checkpoint files: flat ``{name: array}`` dicts as safetensors files whose metadata carries a
format tag and a sha256 of the tensors, and JSON files, all written atomically. The training
engine writes and reads runs through these; :mod:`lieconv_core.app.io` builds the public loading
API on them."""

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
    from ..files import atomic_write

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

    from ..files import RunDirError, refuse_symlink

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
