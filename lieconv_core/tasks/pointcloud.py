"""Your own point clouds: classification or regression with a LieResNet, from numpy arrays or
``.npz`` files.

File layout (``.npz``):

=========  =================================  ==============================================
key        shape, dtype                       meaning
=========  =================================  ==============================================
coords     (n_samples, n_points, d) float     point coordinates (d = 2 or 3, the group's)
values     (n_samples, n_points, c) float     per-point features; optional (ones, c = 1)
mask       (n_samples, n_points) bool         which points are real; optional (all true)
labels     (n_samples,) int                   classes 0 … C−1 (classification)
targets    (n_samples, t) float               values to regress (regression)
=========  =================================  ==============================================

Clouds of different sizes are padded to a common n_points with ``mask`` False on the padding
(:func:`pad_clouds`). In Python, the estimators of :mod:`lieconv_core.app.estimators` train and
evaluate this task on numpy arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import DataError, Dataset, make_group, random_motion, read_npz
from .clouds import CloudTask, validate_kind

#: defaults for your own data: small enough to train in minutes on a CPU
DEFAULTS = {"k": 64, "num_layers": 3, "nbhd": 16, "fill": 0.25, "liftsamples": None,
            "epochs": 20, "batch_size": 32, "lr": 1e-2}


class PointCloudTask(CloudTask):
    name = "pointcloud"

    def model_config(self, kind: str, group: str, chin: int, num_outputs: int,
                     k: int | None = None, num_layers: int | None = None,
                     nbhd: int | None = None, fill: float | None = None,
                     liftsamples: int | None = None, alpha: float | None = None,
                     knn: bool = False, augment: bool = True, bn: bool = True) -> dict:
        """A model config for your data (defaults in :data:`DEFAULTS`). ``bn``: batch norm
        (:func:`use_bn` decides it from the data: off for constant features)."""
        validate_kind(kind)
        g = make_group(group, alpha)
        ns = liftsamples or DEFAULTS["liftsamples"] or (2 if g.random_lift else 1)
        cfg = {"arch": "lieresnet", "kind": kind, "group": group, "chin": int(chin),
               "num_outputs": int(num_outputs), "k": int(k or DEFAULTS["k"]),
               "num_layers": int(DEFAULTS["num_layers"] if num_layers is None else num_layers),
               "nbhd": int(nbhd or DEFAULTS["nbhd"]),
               "fill": float(fill or DEFAULTS["fill"]), "liftsamples": int(ns),
               "knn": bool(knn), "augment": bool(augment), "bn": bool(bn)}
        return self.finish_config(cfg, alpha)

    def augment(self, batch: dict, gen: np.random.Generator, cfg: dict) -> dict:
        """A random element of the model's group applied to each training cloud."""
        if not cfg.get("augment", False):
            return batch
        group = make_group(cfg["group"], cfg.get("alpha"))
        return {**batch, "coords": random_motion(group, batch["coords"], gen)}


def use_bn(train: Dataset) -> bool:
    """Batch norm unless every point of every training cloud has the same features (e.g. the
    default ones): then the first normalisation sees channels of zero variance, which it maps
    to 0 in training, while in eval the running mean lags the moving weights and the running
    variance decays towards 0, so eval outputs blow up."""
    v = train["values"][train["mask"]]
    return bool(len(v) and np.any(v != v[:1]))


def from_arrays(coords: Any, values: Any = None, mask: Any = None, labels: Any = None,
                targets: Any = None, source: str = "arrays") -> Dataset:
    """A :class:`Dataset` from arrays (values default to ones, mask to all true)."""
    coords = np.asarray(coords)
    if coords.ndim != 3 or coords.dtype.kind not in "fiu":
        raise DataError(f"{source}: field 'coords' must be numbers of shape (n_samples, "
                        f"n_points, d), got {coords.dtype} {coords.shape}")
    coords = coords.astype(np.float64)
    arrays = {"coords": coords,
              "values": (np.ones((*coords.shape[:2], 1)) if values is None
                         else np.asarray(values, dtype=np.float64)),
              "mask": (np.ones(coords.shape[:2], bool) if mask is None else np.asarray(mask))}
    if labels is not None:
        lab = np.asarray(labels)
        if lab.dtype.kind == "f" and np.all(lab == np.round(lab)):
            lab = lab.astype(np.int64)
        arrays["labels"] = lab
    if targets is not None:
        t = np.asarray(targets, dtype=np.float64)
        arrays["targets"] = t[:, None] if t.ndim == 1 else t
    return Dataset(arrays, source)


def load_npz(path: str | Path) -> Dataset:
    """A :class:`Dataset` from an ``.npz`` file in the layout above.

    Parameters
    ----------
    path : str or pathlib.Path
        The file, with ``coords`` and optionally ``values``, ``mask``, ``labels`` or ``targets``.

    Returns
    -------
    Dataset
        Its arrays.

    Raises
    ------
    DataError
        Naming the file and the field: a missing file, a file that is not an npz, a missing
        ``coords``, an unknown key.
    """
    path = Path(path)
    arrays = read_npz(path, "data file", ("coords",), count="n_samples")
    unknown = set(arrays) - {"coords", "values", "mask", "labels", "targets"}
    if unknown:
        raise DataError(f"{path}: unknown field(s) {sorted(unknown)}; expected coords, values, "
                        "mask, labels or targets")
    mask = arrays.get("mask")
    if mask is not None and mask.dtype != np.bool_:
        if mask.dtype.kind in "iu" and np.isin(mask, (0, 1)).all():
            mask = mask.astype(bool)
        else:
            raise DataError(f"{path}: field 'mask' must be bool, got {mask.dtype}")
    return from_arrays(arrays["coords"], arrays.get("values"), mask, arrays.get("labels"),
                       arrays.get("targets"), source=str(path))


def pad_clouds(clouds: list[np.ndarray], values: list[np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clouds of different sizes as one padded batch.

    Parameters
    ----------
    clouds : list of numpy.ndarray
        The clouds, each (n_i, d).
    values : list of numpy.ndarray, optional
        Their features, each (n_i, c).

    Returns
    -------
    coords : numpy.ndarray, shape (N, n_max, d)
        Zero-padded points.
    values : numpy.ndarray, shape (N, n_max, c)
        Zero-padded features (a single channel of ones where ``values`` is None).
    mask : numpy.ndarray of bool, shape (N, n_max)
        False on padding.
    """
    n_max = max(len(c) for c in clouds)
    d = clouds[0].shape[1]
    vals = values if values is not None else [np.ones((len(c), 1)) for c in clouds]
    coords = np.zeros((len(clouds), n_max, d))
    v = np.zeros((len(clouds), n_max, vals[0].shape[1]))
    mask = np.zeros((len(clouds), n_max), bool)
    for i, (c, f) in enumerate(zip(clouds, vals)):
        coords[i, :len(c)], v[i, :len(c)], mask[i, :len(c)] = c, f, True
    return coords, v, mask


def holdout(ds: Dataset, fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """A fixed-seed share of ``ds`` held out for validation: (train, val)."""
    n = len(ds)
    if n < 2:
        raise DataError(f"{ds.source}: {n} sample(s) cannot be split into train and "
                        "validation; pass validation data")
    perm = np.random.default_rng([seed, 5]).permutation(n)
    n_val = min(max(1, round(fraction * n)), n - 1)
    return (ds.subset(np.sort(perm[n_val:]), f"{ds.source} (training part)"),
            ds.subset(np.sort(perm[:n_val]), f"{ds.source} (held-out part)"))
