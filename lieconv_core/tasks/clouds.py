"""Classification and regression of point clouds with a LieResNet: the part that your own
clouds, RotMNIST and QM9 share.

Model configs (``cfg``, stored in a run's ``config.json``) hold the architecture (``arch``:
"lieresnet", "image" or "molecule"; ``group``, ``alpha``, ``k``, ``num_layers``, ``nbhd``,
``fill``, ``liftsamples``, ...) and what the loss needs: ``kind`` ("classify" / "regress"),
``num_outputs``, and for regression the training targets' ``target_mean`` / ``target_std``
(the network predicts standardised targets; predictions come back in the targets' units).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from array_api_compat import device as _device

from .._backend import array_namespace
from .base import INPUTS, DataError, Dataset, Task, check_finite, lieresnet_from_config

KINDS = ("classify", "regress")


def cross_entropy(xp: Any, logits: Any, labels: Any) -> Any:
    """Mean cross-entropy of logits (bs, C) against integer labels (bs,)."""
    m = xp.max(logits, axis=-1, keepdims=True)
    lse = m[:, 0] + xp.log(xp.sum(xp.exp(logits - m), axis=-1))
    classes = xp.arange(logits.shape[-1], dtype=labels.dtype, device=_device(labels))
    onehot = xp.astype(labels[:, None] == classes[None, :], logits.dtype)
    return xp.mean(lse - xp.sum(onehot * logits, axis=-1))


def _scale(out: Any, mean: np.ndarray, std: np.ndarray) -> tuple[Any, Any, Any]:
    """(namespace, mean, std) of the outputs ``out``: the targets' standardisation as arrays of
    its library, dtype and device."""
    xp = array_namespace(out)
    dev = _device(out)
    return (xp, xp.asarray(mean, dtype=out.dtype, device=dev),
            xp.asarray(std, dtype=out.dtype, device=dev))


class CloudTask(Task):
    """A LieResNet on (coords, values, mask) with cross-entropy (``classify``) or L1 on
    standardised targets (``regress``)."""

    name = "pointcloud"

    def target_key(self, cfg: dict) -> str:
        return "labels" if cfg["kind"] == "classify" else "targets"

    def build_model(self, cfg: dict) -> Any:
        return lieresnet_from_config(cfg)

    def validate_config(self, cfg: Any) -> dict:
        from .base import check_model_config, make_group

        check_model_config(cfg)
        missing = [k for k in ("kind", "group", "chin", "num_outputs", "k", "num_layers")
                   if k not in cfg]
        if missing:
            raise ValueError(f"model config lacks {', '.join(missing)}")
        validate_kind(cfg["kind"])
        make_group(cfg["group"], cfg.get("alpha"))
        return cfg

    def finish_config(self, cfg: dict, alpha: float | None = None) -> dict:
        """``cfg`` with the group's ``alpha`` (if given), validated."""
        if alpha is not None:
            cfg = {**cfg, "alpha": float(alpha)}
        return self.validate_config(cfg)

    def primary_for(self, cfg: dict) -> tuple[str, bool]:
        """The metric that picks the best checkpoint, and whether larger is better."""
        return ("accuracy", True) if cfg["kind"] == "classify" else ("mae", False)

    # --- the functions the trainers run --------------------------------------------------------
    def loss_fn(self, model: Any, cfg: dict, backend: str) -> Callable:
        classify = cfg["kind"] == "classify"
        mean = np.asarray(cfg.get("target_mean", 0.0))
        std = np.asarray(cfg.get("target_std", 1.0))

        def loss(params: dict, state: dict, batch: dict, rng: Any) -> tuple[Any, dict]:
            inputs = tuple(batch[k] for k in INPUTS)
            out, new_state = model.apply(params, state, inputs, train=True, rng=rng)
            if classify:
                return cross_entropy(array_namespace(out), out, batch["labels"]), new_state
            y = batch["targets"]
            xp, m, s = _scale(out, mean, std)
            return xp.mean(xp.abs(out - (y - m) / s)), new_state

        return loss

    def predict_fn(self, model: Any, cfg: dict, backend: str) -> Callable:
        classify = cfg["kind"] == "classify"
        mean = np.asarray(cfg.get("target_mean", 0.0))
        std = np.asarray(cfg.get("target_std", 1.0))

        def predict(params: dict, state: dict, batch: dict, rng: Any) -> Any:
            inputs = tuple(batch[k] for k in INPUTS)
            out, _ = model.apply(params, state, inputs, train=False, rng=rng)
            if classify:
                return out
            _, m, s = _scale(out, mean, std)
            return out * s + m

        return predict

    # --- metrics -------------------------------------------------------------------------------
    def metrics(self, outputs: np.ndarray, data: Dataset, cfg: dict) -> dict[str, float]:
        if cfg["kind"] == "classify":
            labels = data["labels"]
            logits = outputs.astype(np.float64)
            lse = np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1))
            lse += logits.max(-1)
            ce = float(np.mean(lse - logits[np.arange(len(labels)), labels]))
            return {"accuracy": float(np.mean(np.argmax(logits, -1) == labels)),
                    "cross_entropy": ce, "n": int(len(labels))}
        err = outputs.astype(np.float64) - data["targets"]
        out = {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))),
               "n": int(len(err))}
        names = cfg.get("target_names") or [f"target{i}" for i in range(err.shape[1])]
        if len(names) > 1:
            for i, name in enumerate(names):
                out[f"mae_{name}"] = float(np.mean(np.abs(err[:, i])))
        return out

    # --- data ----------------------------------------------------------------------------------
    def check(self, ds: Dataset, cfg: dict) -> None:
        """DataError naming the source and field unless ``ds`` fits the model config."""
        src = ds.source
        for key in (*INPUTS, self.target_key(cfg)):
            if key not in ds.arrays:
                raise DataError(f"{src}: missing field {key!r}")
        coords, values, mask = (ds[k] for k in INPUTS)
        if coords.ndim != 3 or coords.shape[-1] != model_dim(cfg):
            raise DataError(f"{src}: field 'coords' must have shape (n_samples, n_points, "
                            f"{model_dim(cfg)}) for group {cfg['group']}, got {coords.shape}")
        if values.shape[:2] != coords.shape[:2] or values.ndim != 3 or \
                values.shape[-1] != cfg["chin"]:
            want = (*coords.shape[:2], cfg["chin"])
            raise DataError(f"{src}: field 'values' must have shape {want}, got {values.shape}")
        if mask.shape != coords.shape[:2] or mask.dtype != np.bool_:
            raise DataError(f"{src}: field 'mask' must be bool of shape {coords.shape[:2]}, "
                            f"got {mask.dtype} {mask.shape}")
        check_finite(ds, INPUTS)
        if cfg["kind"] == "classify":
            labels = ds["labels"]
            if labels.ndim != 1 or labels.dtype.kind not in "iu":
                raise DataError(f"{src}: field 'labels' must be integers of shape (n_samples,), "
                                f"got {labels.dtype} {labels.shape}")
            bad = (labels < 0) | (labels >= cfg["num_outputs"])
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(f"{src}: field 'labels' holds {int(labels[i])} at sample {i}, "
                                f"outside [0, {cfg['num_outputs']})")
        else:
            t = ds["targets"]
            if t.ndim != 2 or t.shape[1] != cfg["num_outputs"]:
                raise DataError(f"{src}: field 'targets' must have shape (n_samples, "
                                f"{cfg['num_outputs']}), got {t.shape}")
            check_finite(ds, ("targets",))
        if not mask.any(axis=1).all():
            i = int(np.argmin(mask.any(axis=1)))
            raise DataError(f"{src}: sample {i} has no valid point (field 'mask' all False)")


def model_dim(cfg: dict) -> int:
    from .base import make_group

    return make_group(cfg["group"], cfg.get("alpha")).space_dim


def standardise(cfg: dict, train: Dataset) -> dict:
    """cfg with ``target_mean`` / ``target_std`` of the training targets (regression)."""
    if cfg["kind"] != "regress":
        return cfg
    t = train["targets"].astype(np.float64)
    std = t.std(axis=0)
    if np.any(std == 0):
        raise DataError(f"{train.source}: field 'targets' is constant over the training set")
    return {**cfg, "target_mean": t.mean(axis=0).tolist(), "target_std": std.tolist()}


def validate_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind
