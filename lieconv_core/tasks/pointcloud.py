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
(:func:`pad_clouds`). In Python::

    from lieconv_core.tasks.pointcloud import Classifier
    clf = Classifier(group="SE2", epochs=20).fit(coords, labels, out="runs/mine")
    clf.predict(test_coords)                      # labels
    clf.evaluate(test_coords, test_labels)        # {"accuracy": ..., ...}
    Classifier.load("runs/mine").predict(...)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import DataError, Dataset, make_group, random_motion, read_npz
from .clouds import CloudTask, standardise, validate_kind

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


class _Estimator:
    """fit / predict / evaluate on numpy arrays, through the training engine."""

    kind = "classify"

    def __init__(self, group: str = "SE2", backend: str = "torch", epochs: int | None = None,
                 batch_size: int | None = None, lr: float | None = None, seed: int = 0,
                 dtype: str = "float32", device: str | None = None, progress: bool = True,
                 **model: Any):
        self.group, self.backend, self.seed, self.dtype = group, backend, seed, dtype
        self.epochs = epochs or DEFAULTS["epochs"]
        self.batch_size = batch_size or DEFAULTS["batch_size"]
        self.lr = lr or DEFAULTS["lr"]
        self.device, self.progress, self.model_kw = device, progress, model
        self.task = PointCloudTask()
        self.cfg: dict | None = None
        self._runner: Any = None

    def _dataset(self, coords, y, values, mask, source):
        key = "labels" if self.kind == "classify" else "targets"
        return from_arrays(coords, values, mask, **{key: y}, source=source)

    def fit(self, coords: Any, y: Any, values: Any = None, mask: Any = None, *,
            out: str | Path, val: tuple | None = None, overwrite: bool = False) -> _Estimator:
        """Train on labelled clouds and write the run to ``out``.

        Parameters
        ----------
        coords : array_like, shape (n, N, d)
            The clouds (padded to N points).
        y : array_like, shape (n,) or (n, t)
            Class labels (Classifier) or targets (Regressor).
        values : array_like, shape (n, N, c), optional
            Point features; default ones.
        mask : array_like of bool, shape (n, N), optional
            False on padding; default all true.
        out : str or pathlib.Path
            The run folder (see :mod:`lieconv_core.training.rundir`).
        val : tuple, optional
            ``(coords, y[, values, mask])`` for validation; default 10% of the data held out.
        overwrite : bool, default False
            Replace an existing run in ``out``.

        Returns
        -------
        Classifier or Regressor
            ``self``, trained (the best checkpoint by the validation metric).
        """
        from ..training import fit

        train = self._dataset(coords, y, values, mask, "training data")
        if val is None:
            train, valid = holdout(train, seed=self.seed)
        else:
            valid = self._dataset(*val[:2], *val[2:4], source="validation data")
        c = train["values"].shape[-1]
        n_out = int(train["labels"].max()) + 1 if self.kind == "classify" else \
            train["targets"].shape[1]
        kw = {"bn": use_bn(train), **self.model_kw}
        cfg = self.task.model_config(self.kind, self.group, c, n_out, **kw)
        self.cfg = standardise(cfg, train)
        fit(self.task, self.cfg, {"train": train, "val": valid}, out, backend=self.backend,
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
            dtype=self.dtype, overwrite=overwrite, progress=self.progress, device=self.device)
        self._load(out)
        return self

    def _load(self, out: str | Path) -> None:
        from ..training.engine import load_run, runner_for

        task, cfg, model, params, state, config = load_run(out)
        self.cfg, self.model = cfg, model
        self._runner = runner_for(self.backend, task, model, cfg, params, state,
                                  config.get("dtype", self.dtype), self.device)
        self._predict = task.predict_fn(model, cfg, self.backend)

    @classmethod
    def load(cls, run: str | Path, backend: str = "torch", device: str | None = None
             ) -> _Estimator:
        """A trained estimator from a run folder.

        Parameters
        ----------
        run : str or pathlib.Path
            The run folder written by :meth:`fit` or ``lieconv train pointcloud``.
        backend : str, default "torch"
            Where it evaluates (numpy included).
        device : str, optional
            E.g. ``"cuda"``.

        Returns
        -------
        Classifier or Regressor
            The estimator with the run's best weights.
        """
        est = cls(backend=backend, device=device)
        est._load(run)
        return est

    def _outputs(self, coords, values=None, mask=None) -> np.ndarray:
        from ..training.engine import run_outputs

        if self._runner is None:
            raise RuntimeError("fit or load the estimator first")
        ds = from_arrays(coords, values, mask, source="inputs")
        return run_outputs(self._runner, self._predict, ds, self.batch_size,
                           keys=("coords", "values", "mask"))

    def evaluate(self, coords: Any, y: Any, values: Any = None, mask: Any = None) -> dict:
        """The task's metrics on labelled data.

        Parameters
        ----------
        coords : array_like, shape (n, N, d)
            The clouds.
        y : array_like, shape (n,) or (n, t)
            Labels or targets.
        values : array_like, shape (n, N, c), optional
            Point features.
        mask : array_like of bool, shape (n, N), optional
            False on padding.

        Returns
        -------
        dict of str to float
            ``accuracy``, ``cross_entropy`` and ``n`` (Classifier); ``mae``, ``rmse`` and ``n``
            (Regressor).
        """
        ds = self._dataset(coords, y, values, mask, "evaluation data")
        self.task.check(ds, self.cfg)
        return self.task.metrics(self._outputs(coords, values, mask), ds, self.cfg)


class Classifier(_Estimator):
    """A LieResNet classifier of point clouds (cross-entropy loss; accuracy).

    Parameters
    ----------
    group : str, default "SE2"
        The symmetry, a name from :func:`lieconv_core.groups.names`.
    backend : {"torch", "jax", "numpy"}, default "torch"
        Where training runs (numpy only evaluates and predicts).
    epochs : int, optional
        Training epochs; default ``DEFAULTS["epochs"]``.
    batch_size : int, optional
        Clouds per step; default ``DEFAULTS["batch_size"]``.
    lr : float, optional
        Peak learning rate; default ``DEFAULTS["lr"]``.
    seed : int, default 0
        Seed of the weights, the batches and the random draws.
    dtype : {"float32", "float64"}, default "float32"
        Floating dtype of training.
    device : str, optional
        E.g. ``"cuda"``; default the backend's default.
    progress : bool, default True
        Show a progress bar.
    **model
        Model settings (``k``, ``num_layers``, ``nbhd``, ``liftsamples``, ...; see
        :class:`lieconv_core.LieResNet`).
    """

    kind = "classify"

    def predict(self, coords: Any, values: Any = None, mask: Any = None) -> np.ndarray:
        """Predicted class labels.

        Parameters
        ----------
        coords : array_like, shape (n, N, d)
            The clouds (padded to N points).
        values : array_like, shape (n, N, c), optional
            Point features; default ones.
        mask : array_like of bool, shape (n, N), optional
            False on padding; default all true.

        Returns
        -------
        numpy.ndarray of int, shape (n,)
            The most likely class of each cloud.
        """
        return np.argmax(self._outputs(coords, values, mask), axis=-1)

    def predict_logits(self, coords: Any, values: Any = None, mask: Any = None) -> np.ndarray:
        """The class logits.

        Parameters
        ----------
        coords : array_like, shape (n, N, d)
            The clouds (padded to N points).
        values : array_like, shape (n, N, c), optional
            Point features; default ones.
        mask : array_like of bool, shape (n, N), optional
            False on padding; default all true.

        Returns
        -------
        numpy.ndarray, shape (n, num_classes)
            Unnormalised log-probabilities.
        """
        return self._outputs(coords, values, mask)


class Regressor(_Estimator):
    """A LieResNet regressor of point clouds (L1 loss on standardised targets; mae, rmse).

    Parameters
    ----------
    group : str, default "SE2"
        The symmetry, a name from :func:`lieconv_core.groups.names`.
    backend : {"torch", "jax", "numpy"}, default "torch"
        Where training runs (numpy only evaluates and predicts).
    epochs : int, optional
        Training epochs; default ``DEFAULTS["epochs"]``.
    batch_size : int, optional
        Clouds per step; default ``DEFAULTS["batch_size"]``.
    lr : float, optional
        Peak learning rate; default ``DEFAULTS["lr"]``.
    seed : int, default 0
        Seed of the weights, the batches and the random draws.
    dtype : {"float32", "float64"}, default "float32"
        Floating dtype of training.
    device : str, optional
        E.g. ``"cuda"``; default the backend's default.
    progress : bool, default True
        Show a progress bar.
    **model
        Model settings (``k``, ``num_layers``, ``nbhd``, ``liftsamples``, ...; see
        :class:`lieconv_core.LieResNet`).
    """

    kind = "regress"

    def predict(self, coords: Any, values: Any = None, mask: Any = None) -> np.ndarray:
        """Predicted targets in the targets' units.

        Parameters
        ----------
        coords : array_like, shape (n, N, d)
            The clouds (padded to N points).
        values : array_like, shape (n, N, c), optional
            Point features; default ones.
        mask : array_like of bool, shape (n, N), optional
            False on padding; default all true.

        Returns
        -------
        numpy.ndarray, shape (n, t)
            The predictions.
        """
        return self._outputs(coords, values, mask)
