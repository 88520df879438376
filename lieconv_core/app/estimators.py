"""Estimators of your own point clouds: fit / predict / evaluate on numpy arrays, through the
training engine (the task is :mod:`lieconv_core.tasks.pointcloud`)::

    from lieconv_core.app.estimators import Classifier
    clf = Classifier(group="SE2", epochs=20).fit(coords, labels, out="runs/mine")
    clf.predict(test_coords)                      # labels
    clf.evaluate(test_coords, test_labels)        # {"accuracy": ..., ...}
    Classifier.load("runs/mine").predict(...)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..tasks.clouds import standardise
from ..tasks.pointcloud import DEFAULTS, PointCloudTask, from_arrays, holdout, use_bn
from .training import fit
from .training.engine import load_run, run_outputs, runner_for


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
            The run folder (see :mod:`lieconv_core.app.training.rundir`).
        val : tuple, optional
            ``(coords, y[, values, mask])`` for validation; default 10% of the data held out.
        overwrite : bool, default False
            Replace an existing run in ``out``.

        Returns
        -------
        Classifier or Regressor
            ``self``, trained (the best checkpoint by the validation metric).
        """
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
