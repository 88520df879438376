"""What every task gives the training engine: data splits as host arrays, a model built from a
config, the loss, the predictions, the metrics and the augmentation.

A :class:`Dataset` is a dict of numpy arrays sharing their first axis (samples). The point-cloud
tasks (your own clouds, RotMNIST, QM9) share :class:`CloudTask`: inputs ``coords`` (n, N, d),
``values`` (n, N, c) and ``mask`` (n, N), and a target ``labels`` (n,) (classification) or
``targets`` (n, t) (regression), fed to a :class:`lieconv_core.LieResNet`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import groups as G
from ..nn import LieResNet
from ..random import PortableDraws

INPUTS = ("coords", "values", "mask")


class DataError(ValueError):
    """Data that cannot be used: a missing key, arrays that disagree, NaN, labels out of range."""


@dataclass
class Dataset:
    """Host arrays with a common first axis (the samples).

    Parameters
    ----------
    arrays : dict of str to numpy.ndarray
        The arrays by name (``coords``, ``labels``, ...); all of one length.
    source : str, default "data"
        Where they came from, named in errors.

    Raises
    ------
    DataError
        When the arrays disagree in length.
    """

    arrays: dict[str, np.ndarray]
    source: str = "data"

    def __post_init__(self) -> None:
        lengths = {k: len(v) for k, v in self.arrays.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"{self.source}: arrays disagree in length: "
                            + ", ".join(f"{k} {n}" for k, n in lengths.items()))

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values()))) if self.arrays else 0

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def take(self, idx: Any) -> dict[str, np.ndarray]:
        """The samples at ``idx`` as a batch dict.

        Parameters
        ----------
        idx : int, slice or array of int
            Which samples.

        Returns
        -------
        dict of str to numpy.ndarray
            Every array indexed by ``idx``.
        """
        return {k: v[idx] for k, v in self.arrays.items()}

    def subset(self, idx: Any, source: str | None = None) -> Dataset:
        """The samples at ``idx`` as a new :class:`Dataset`.

        Parameters
        ----------
        idx : int, slice or array of int
            Which samples.
        source : str, optional
            Its source name; default this dataset's.

        Returns
        -------
        Dataset
            The subset.
        """
        return Dataset(self.take(idx), source or self.source)


def make_group(name: str, alpha: float | None = None) -> G.Group:
    """A group from its registered name, with ``alpha`` (weight of the rotational part of the
    distance) where the group has one."""
    return G.get(name, **({} if alpha is None else {"alpha": alpha}))


def read_npz(path: Path, what: str, required: tuple[str, ...], count: str = "length"
             ) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file; DataError naming the file (``what`` describes it) for a
    missing or unreadable file, a missing ``required`` field, or fields whose first axes
    (``count``: what they count) disagree."""
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from exc
    for key in required:
        if key not in arrays:
            raise DataError(f"{path}: missing field {key!r} "
                            f"(found: {', '.join(arrays) or 'none'})")
    lengths = {k: len(v) for k, v in arrays.items() if np.ndim(v)}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{path}: fields disagree in {count}: "
                        + ", ".join(f"{k} {n}" for k, n in lengths.items()))
    return arrays


def check_finite(ds: Dataset, keys: tuple[str, ...]) -> None:
    for k in keys:
        a = ds.arrays.get(k)
        if a is not None and a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            bad = int(np.argwhere(~np.isfinite(a))[0][0])
            raise DataError(f"{ds.source}: field {k!r} holds NaN or inf (sample {bad})")


class Task:
    """The contract between a task and :func:`lieconv_core.app.training.fit`."""

    name = "task"
    #: the validation metric that picks the best checkpoint, and whether larger is better
    primary, maximize = "loss", False
    #: whether the model draws random numbers (lifts, FPS, ball subsets); --compile needs False
    draws = True

    def build_model(self, cfg: dict) -> Any:
        """The model a config describes.

        Parameters
        ----------
        cfg : dict
            The model config (:meth:`validate_config` has checked it).

        Returns
        -------
        object
            A model with ``init`` and ``apply`` (e.g. a :class:`lieconv_core.LieResNet`).
        """
        raise NotImplementedError

    def validate_config(self, cfg: Any) -> dict:
        """Check a model config before a model is built from it.

        Sizes are bounded so that a corrupt config cannot allocate for minutes.

        Parameters
        ----------
        cfg : object
            The candidate config (as read from ``config.json``).

        Returns
        -------
        dict
            The config, checked.

        Raises
        ------
        ValueError
            Naming the field, unless ``cfg`` is a model config this task can build.
        """
        return check_model_config(cfg)

    def primary_for(self, cfg: dict) -> tuple[str, bool]:
        """The validation metric that picks the best checkpoint.

        Parameters
        ----------
        cfg : dict
            The model config (:meth:`validate_config` has checked it).

        Returns
        -------
        name : str
            The metric's key in the validation metrics.
        maximize : bool
            Whether larger is better.
        """
        return self.primary, self.maximize

    def loss_fn(self, model: Any, cfg: dict, backend: str) -> Callable:
        """The training loss as a function of the parameters.

        Parameters
        ----------
        model : object
            From :meth:`build_model`.
        cfg : dict
            The model config (:meth:`validate_config` has checked it).
        backend : str
            The array library the function runs on.

        Returns
        -------
        callable
            ``loss(params, state, batch, rng) -> (scalar, new_state)`` in training mode.
        """
        raise NotImplementedError

    def predict_fn(self, model: Any, cfg: dict, backend: str) -> Callable:
        """The model's outputs as a function of the parameters.

        Parameters
        ----------
        model : object
            From :meth:`build_model`.
        cfg : dict
            The model config (:meth:`validate_config` has checked it).
        backend : str
            The array library the function runs on.

        Returns
        -------
        callable
            ``predict(params, state, batch, rng) -> outputs`` in eval mode.
        """
        raise NotImplementedError

    def metrics(self, outputs: np.ndarray, data: Dataset, cfg: dict) -> dict[str, float]:
        """The task's metrics of outputs on labelled data.

        Parameters
        ----------
        outputs : numpy.ndarray
            The model's outputs for every sample of ``data``, in order.
        data : Dataset
            The labelled data.
        cfg : dict
            The model config (:meth:`validate_config` has checked it).

        Returns
        -------
        dict of str to float
            E.g. ``{"accuracy": ..., "cross_entropy": ..., "n": ...}``.
        """
        raise NotImplementedError

    def inputs(self, batch: dict, cfg: dict) -> dict:
        """The arrays the model's functions take, from a batch of stored arrays.

        E.g. image pixels to coordinates, values and mask. The default returns the batch unchanged.

        Parameters
        ----------
        batch : dict of str to numpy.ndarray
            Stored arrays of some samples.
        cfg : dict
            The model config (:meth:`validate_config` has checked it).

        Returns
        -------
        dict of str to numpy.ndarray
            The model's inputs.
        """
        return batch

    def augment(self, batch: dict, gen: np.random.Generator, cfg: dict) -> dict:
        """A training batch randomly transformed; the default returns it unchanged.

        Parameters
        ----------
        batch : dict of str to numpy.ndarray
            The batch after :meth:`inputs`.
        gen : numpy.random.Generator
            The random generator.
        cfg : dict
            The model config (:meth:`validate_config` has checked it).

        Returns
        -------
        dict of str to numpy.ndarray
            The transformed batch.
        """
        return batch

    def check(self, ds: Dataset, cfg: dict) -> None:
        """Check that a dataset fits the task and the model config.

        Parameters
        ----------
        ds : Dataset
            The data.
        cfg : dict
            The model config (:meth:`validate_config` has checked it).

        Raises
        ------
        DataError
            Naming the source and the field that does not fit.
        """


# --- point clouds ---------------------------------------------------------------------------------
def lieresnet_from_config(cfg: dict) -> LieResNet:
    """The LieResNet a cloud task's model config describes (see :func:`cloud_model_config`)."""
    from ..nn import presets

    group = make_group(cfg["group"], cfg.get("alpha"))
    arch = cfg.get("arch", "lieresnet")
    common = dict(k=cfg["k"], num_layers=cfg["num_layers"], nbhd=cfg["nbhd"],
                  fill=cfg["fill"], liftsamples=cfg["liftsamples"])
    if arch == "image":
        net = presets.image_lieresnet(group, chin=cfg["chin"], num_targets=cfg["num_outputs"],
                                       total_ds=cfg["total_ds"], knn=cfg.get("knn", False),
                                       cache=cfg.get("cache", True), **common)
    elif arch == "molecule":
        net = presets.molecule_lieresnet(group, num_targets=cfg["num_outputs"], **common)
    elif arch == "lieresnet":
        net = LieResNet(cfg["chin"], num_outputs=cfg["num_outputs"], group=group,
                        ds_frac=cfg.get("ds_frac", 1.0), knn=cfg.get("knn", False),
                        bn=cfg.get("bn", True), mean=cfg.get("mean", True), **common)
    else:
        raise ValueError(f"unknown architecture {arch!r} in the model config")
    # the pair orientation after subsampling (LieResNet's original_pairs; the original's by
    # default); stored in the config so that a run is rebuilt as it was trained
    if not cfg.get("original_pairs", True):
        net.original_pairs = False
        for block in net.blocks:
            block.conv.swap_pairs = False
    return net


#: bounds on the sizes a config may ask for (a corrupt config must not allocate for minutes)
LIMITS = {"k": (4, 8192), "num_layers": (0, 64), "nbhd": (1, 1 << 20), "liftsamples": (1, 64),
          "chin": (1, 1 << 16), "num_outputs": (1, 1 << 16)}


def check_model_config(cfg: Any, source: str = "model config") -> dict:
    """ValueError naming the field unless ``cfg`` is a dict whose sizes are integers within
    :data:`LIMITS`, and whose k is divisible into the bottleneck blocks' quarters."""
    if not isinstance(cfg, dict):
        raise ValueError(f"{source} must be a JSON object, got {type(cfg).__name__}")
    for key, (lo, hi) in LIMITS.items():
        if key not in cfg:
            continue
        val = cfg[key]
        if not isinstance(val, int) or isinstance(val, bool) or not lo <= val <= hi:
            raise ValueError(f"{source}: {key} must be an integer in [{lo}, {hi}], got {val!r}")
    if "k" in cfg and cfg["k"] % 4:
        raise ValueError(f"{source}: k must be a multiple of 4 (bottleneck blocks), got {cfg['k']}")
    if "group" in cfg and not isinstance(cfg["group"], str):
        raise ValueError(f"{source}: group must be a name, got {cfg['group']!r}")
    return cfg


def pad_batch(batch: dict, size: int) -> tuple[dict, int]:
    """A batch padded to ``size`` samples by repeating its first sample (same array shapes for
    every batch of an evaluation, so a jitted function compiles once); returns it and the
    number of real samples."""
    n = len(next(iter(batch.values())))
    if n >= size:
        return batch, n
    idx = np.concatenate([np.arange(n), np.zeros(size - n, dtype=np.int64)])
    return {k: v[idx] for k, v in batch.items()}, n


def random_motion(group: G.Group, coords: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """coords (n, N, d) moved by one random element of ``group`` per sample (host, float64)."""
    draws = PortableDraws(gen)
    g = group.random_element(np, (coords.shape[0],), draws, np.float64, None)
    return group.act_on_points(np, g, coords.astype(np.float64)).astype(coords.dtype)
