"""The spring-systems task: Hamiltonian (and control) dynamics models trained on 5-step chunks
of simulated trajectories (:mod:`lieconv_core.data.springs`), MSE of the model's RK4 rollout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..data import springs as S
from ..dynamics.models import DEFAULT_LR, MODELS, from_config, make_model
from .base import DataError, Dataset, Task, check_finite

GROUPS = ("T2", "SO2", "Trivial")


class SpringsModel:
    """A dynamics model in the engine's (params, state) form (its state is empty)."""

    def __init__(self, model: Any):
        self.model = model

    def init_host(self, gen: np.random.Generator) -> tuple[dict, dict]:
        return self.model.init_host(gen), {}

    def config(self) -> dict:
        return self.model.config()


def chunk_times(cfg: dict) -> tuple[float, ...]:
    return tuple(float(t) for t in cfg["ts"])


class SpringsTask(Task):
    name = "springs"
    draws = False

    def primary_for(self, cfg: dict) -> tuple[str, bool]:
        return "mse", False

    def model_config(self, model: str = "hlieconv", group: str = "T2", k: int | None = None,
                     num_layers: int = 4) -> dict:
        """The model config of a dynamics model plus the chunks' time grid."""
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
        if group not in GROUPS:
            raise ValueError(f"unknown group {group!r} for springs; choose one of: "
                             f"{', '.join(GROUPS)}")
        cfg = make_model(model, group=group, k=k, num_layers=num_layers).config()
        t = S.time_grid()
        return {**cfg, "ts": (t[:S.CHUNK_LEN] - t[0]).tolist()}

    def validate_config(self, cfg: dict) -> dict:
        from .base import check_model_config

        check_model_config(cfg)
        if "ts" not in cfg:  # runs written before the time grid was stored: the data's chunks
            t = S.time_grid()
            cfg = {**cfg, "ts": (t[:S.CHUNK_LEN] - t[0]).tolist()}
        if not isinstance(cfg["ts"], list) or len(cfg["ts"]) < 2:
            raise ValueError("the springs model config's time grid 'ts' must list >= 2 times")
        return cfg

    def default_lr(self, cfg: dict) -> float:
        lr = DEFAULT_LR[cfg["model"]]
        return lr * (0.3 if cfg["model"] == "hlieconv" and cfg.get("group") == "SO2" else 1.0)

    def build_model(self, cfg: dict) -> SpringsModel:
        return SpringsModel(from_config(cfg))

    def loss_fn(self, model: SpringsModel, cfg: dict, backend: str) -> Callable:
        m, ts = model.model, chunk_times(cfg)
        scan_loss = _training_hook(backend, "scan_loss")
        if scan_loss is not None:
            jloss = scan_loss(m, ts)

            def loss(params, state, batch, rng):
                return jloss(params, batch["z"], batch["sys"]), state

            return loss

        def loss(params, state, batch, rng):
            return m.loss(params, batch["z"], batch["sys"], list(ts)), state

        return loss

    def predict_fn(self, model: SpringsModel, cfg: dict, backend: str) -> Callable:
        """The model's rollout over the chunk times from each chunk's first state."""
        return self.rollout_fn(model, chunk_times(cfg), backend)

    def rollout_fn(self, model: SpringsModel, ts: Any, backend: str) -> Callable:
        m, ts = model.model, tuple(float(t) for t in ts)
        scan_rollout = _training_hook(backend, "scan_rollout")
        if scan_rollout is not None:
            def roll(params, state, batch, rng):
                return scan_rollout(m, params, batch["z"][:, 0], batch["sys"], ts)

            return roll

        def roll(params, state, batch, rng):
            return m.rollout(params, batch["z"][:, 0], batch["sys"], list(ts))

        return roll

    def metrics(self, outputs: np.ndarray, data: Dataset, cfg: dict) -> dict[str, float]:
        return {"mse": float(np.mean((outputs.astype(np.float64) - data["z"]) ** 2)),
                "n": len(data)}

    def check(self, ds: Dataset, cfg: dict) -> None:
        for key in ("z", "sys"):
            if key not in ds.arrays:
                raise DataError(f"{ds.source}: missing field {key!r}")
        check_finite(ds, ("z", "sys"))


def split_datasets(n_train: int, n_val: int, n_test: int = 1, seed: int = 0,
                   center: str = "none") -> dict[str, Dataset]:
    """Train / val / test chunks of :func:`lieconv_core.data.springs.make_splits` as datasets."""
    splits = S.make_splits(n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, center=center)
    return {name: Dataset({"z": sp.z, "sys": sp.sys}, f"springs {name} split")
            for name, sp in splits.items()}


# --- evaluation: conservation along long rollouts ------------------------------------------------
CONSERVED = ("energy", "linear_momentum", "angular_momentum")


def conservation(zs: np.ndarray, sys: np.ndarray) -> dict[str, np.ndarray]:
    """True E, P components and L along trajectories zs (N, T, 2, n, 2) -> each (N, T, c)."""
    return {"energy": S.energy(zs, sys[:, None])[..., None],
            "linear_momentum": S.linear_momentum(zs),
            "angular_momentum": S.angular_momentum(zs)[..., None]}


def rel_drift_curves(zs: np.ndarray, sys: np.ndarray) -> dict[str, np.ndarray]:
    """|X(t) − X(0)| / max(|X(0)|, scale) per system and time, each (N, T); ``scale`` is the
    mean |X(0)| over the systems (so systems with X(0) ≈ 0 do not divide by ~0)."""
    out = {}
    for name, x in conservation(zs, sys).items():
        dev = np.linalg.norm(x - x[:, :1], axis=-1)
        x0 = np.linalg.norm(x[:, 0], axis=-1)
        scale = max(float(np.mean(x0)), 1e-300)
        out[name] = dev / np.maximum(x0, scale)[:, None]
    return out


def rollout(runner: Any, backend: str, model: Any, z0: np.ndarray, sys: np.ndarray,
            ts: Any) -> np.ndarray:
    """The RK4 rollout (bs, T, 2, n, 2) of a dynamics ``model`` from z0 (bs, 2, n, 2) on a
    trainer or runner ``runner`` (its parameters)."""
    fn = SpringsTask().rollout_fn(SpringsModel(model), ts, backend)
    return runner.run(fn, {"z": z0[:, None], "sys": sys})


def _training_hook(backend: str, name: str) -> Callable | None:
    """The function ``name`` of the backend's training module (where its registered trainer
    lives), or None: a backend may provide ``scan_loss`` / ``scan_rollout`` that run the
    integration steps as one compiled loop."""
    import importlib

    from .._backend import get_backend

    trainer = get_backend(backend).trainer
    if trainer is None:
        return None
    return getattr(importlib.import_module(trainer.partition(":")[0]), name, None)
