"""Dynamics models for the spring systems (the paper's Hamiltonian model), functional.

State z (bs, 2, n, d) with q = z[:, 0], p = z[:, 1]; system features sys (bs, n, 2) = [m_i, k_i].

* :class:`HLieResNet`: H(q, p) = Σ_i ‖p_i‖²/2m_i + V_θ(q − mean(q), sys), V_θ a LieResNet; the
  vector field ż = (∂H/∂p, −∂H/∂q) comes from the backend's autodiff inside the forward pass
  (training then differentiates through a gradient). With G = T(2) or SO(2) the flow conserves
  linear or angular momentum exactly (the centring alone already makes H translation invariant,
  for every group).
* :class:`FLieResNet`: a LieResNet that predicts ż per particle directly (no conservation law
  built in; the control).
* :class:`FC`: an MLP from (z, sys) to ż; :class:`HFC`: an MLP potential plus the known kinetic
  term.

Every model: ``init(seed=0, dtype="float32", backend=None, device=None) -> params`` (nested dict of
arrays, drawn on the host so every backend starts from the same numbers),
``vector_field(params, z, sys)``, ``rollout(params, z0, sys, ts, method)``,
``loss(params, z, sys, ts)`` (MSE of the rollout from z[:, 0] against the chunk z (bs, T, 2, n, d));
Hamiltonian models also ``energy(params, z, sys)`` and ``potential(params, q, sys)``, which need no
autodiff and so run on numpy too. ``config()`` returns a JSON-able dict and :func:`from_config`
rebuilds the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import device as _device

from .._backend import adapter_for, array_namespace, backend_name, default_device, namespace_for
from ..groups import by_name
from ..nn.layers import linear, linear_init, swish
from ..nn.module import resolve_dtype, to_backend, tree_leaves
from ..nn.resnet import LieResNet
from .integrators import odeint

N_PARTICLES, DIM = 6, 2


class DynamicsModel:
    """Common plumbing: init on the host, rollout and loss."""

    kind = "base"
    hamiltonian = False

    def init_host(self, gen: np.random.Generator) -> dict:
        """Draw the parameters on the host in float64; each model implements this.

        Parameters
        ----------
        gen : numpy.random.Generator
            The random generator.

        Returns
        -------
        dict
            Nested dicts of numpy arrays.
        """
        raise NotImplementedError

    def config(self) -> dict:
        """The constructor arguments that rebuild this model (:func:`from_config`).

        Returns
        -------
        dict
            ``{"model": name, ...}``, JSON-serialisable.
        """
        raise NotImplementedError

    def init(self, seed: int = 0, dtype: Any = "float32", backend: str | None = None,
             device: Any = None, xp: Any = None) -> dict:
        """Parameters (nested dict of arrays) drawn on the host from ``default_rng(seed)``."""
        xp = xp if xp is not None else namespace_for(backend)
        dt = resolve_dtype(xp, dtype)
        device = device if device is not None else default_device(xp)
        return to_backend(self.init_host(np.random.default_rng(seed)), xp, dt, device)

    def vector_field(self, params: dict, z: Any, sys: Any) -> Any:
        """The predicted time derivative ż of the states.

        Parameters
        ----------
        params : dict
            The model's parameters (:meth:`init`).
        z : Array, shape (bs, 2, n, d)
            Positions and momenta.
        sys : Array, shape (bs, n, 2)
            Masses and spring constants.

        Returns
        -------
        Array, shape (bs, 2, n, d)
            (q̇, ṗ).
        """
        raise NotImplementedError

    def rollout(self, params: dict, z0: Any, sys: Any, ts: Any, method: str = "rk4",
                substeps: int = 1) -> Any:
        """z0 (bs, 2, n, d) -> (bs, T, 2, n, d) on the host time grid ``ts``."""
        xp = array_namespace(z0, sys, names=("z0", "sys"))
        return odeint(lambda z: self.vector_field(params, z, sys), z0, ts, method, substeps, xp)

    def loss(self, params: dict, z: Any, sys: Any, ts: Any, method: str = "rk4") -> Any:
        """MSE of the rollout from z[:, 0] against the chunk z (bs, T, 2, n, d)."""
        xp = array_namespace(z, sys, names=("z", "sys"))
        pred = self.rollout(params, z[:, 0], sys, ts, method)
        return xp.mean((pred - z) ** 2)

    def _check(self, z: Any, sys: Any) -> Any:
        xp = array_namespace(z, sys, names=("z", "sys"))
        if z.ndim != 4 or z.shape[1] != 2 or z.shape[-1] != DIM:
            raise ValueError(f"z must have shape (batch, 2, n, {DIM}), got {tuple(z.shape)}")
        if sys.ndim != 3 or tuple(sys.shape) != (z.shape[0], z.shape[2], 2):
            raise ValueError(f"sys must have shape (batch, n, 2) = {(z.shape[0], z.shape[2], 2)}, "
                             f"got {tuple(sys.shape)}")
        return xp


class _Hamiltonian(DynamicsModel):
    hamiltonian = True

    def potential(self, params: dict, q: Any, sys: Any) -> Any:
        """The learned potential energy V.

        Parameters
        ----------
        params : dict
            The model's parameters (:meth:`init`).
        q : Array, shape (bs, n, d)
            Positions.
        sys : Array, shape (bs, n, 2)
            Masses and spring constants.

        Returns
        -------
        Array, shape (bs,)
            V(q − mean q, sys).
        """
        raise NotImplementedError

    def energy(self, params: dict, z: Any, sys: Any) -> Any:
        """H (bs,) = Σ ‖p‖²/2m + V(q − mean q)."""
        xp = self._check(z, sys)
        q, p = z[:, 0, ...], z[:, 1, ...]
        kinetic = xp.sum(xp.sum(p * p, axis=-1) / (2 * sys[..., 0]), axis=-1)
        return kinetic + self.potential(params, q, sys)

    def vector_field(self, params: dict, z: Any, sys: Any) -> Any:
        """ż = (∂H/∂p, −∂H/∂q) by the backend's autodiff (torch: create_graph=True; jax.grad)."""
        xp = self._check(z, sys)
        adapter = adapter_for(xp)

        def total_h(zz, prm, ss):
            return xp.sum(self.energy(prm, zz, ss))

        dh = adapter.grad(total_h)(z, params, sys)
        return xp.stack([dh[:, 1], -dh[:, 0]], axis=1)


def _centre(xp: Any, q: Any) -> Any:
    return q - xp.mean(q, axis=1, keepdims=True)


def _all_valid(xp: Any, q: Any) -> Any:
    return xp.ones(tuple(q.shape[:2]), dtype=xp.bool, device=_device(q))


class _LieBase(DynamicsModel):
    def __init__(self, group: str = "T2", k: int = 384, num_layers: int = 4):
        self.group_name = str(group)
        self.group = by_name(self.group_name)
        if self.group.space_dim != DIM:
            raise ValueError(f"group {group!r} does not act on R^2")
        self.k, self.num_layers = int(k), int(num_layers)
        self.net = self._make_net()
        self._state_host = self.net.init_host(np.random.default_rng(0))[1]
        self._state_cache: dict = {}

    def config(self) -> dict:
        return {"model": self.kind, "group": self.group_name, "k": self.k,
                "num_layers": self.num_layers}

    def init_host(self, gen: np.random.Generator) -> dict:
        return self.net.init_host(gen)[0]

    def _state(self, xp: Any, like: Any) -> dict:
        """The (constant: no BN, kNN neighbourhoods) LieResNet state on like's backend/dtype.

        Cached only where the conversion made concrete arrays: under ``jax.jit`` it makes
        tracers of the current trace, which a cache would leak into later traces (the springs
        evaluation after a training step then ran an executable compiled for other arguments)."""
        key = (backend_name(xp), str(like.dtype), str(_device(like)))
        state = self._state_cache.get(key)
        if state is None:
            state = to_backend(self._state_host, xp, like.dtype, _device(like))
            adapter = adapter_for(xp)
            if not any(adapter.traced(a) for a in tree_leaves(state)):
                self._state_cache[key] = state
        return state


class HLieResNet(_Hamiltonian, _LieBase):
    """Hamiltonian LieConv: the potential V_θ is a LieResNet.

    The network takes [m, k] as features, treats all particles as neighbours (kNN with k ≥ n),
    fill 1, no subsampling, no batch norm, mean pooling and one output; the dynamics come from the
    gradient of H = Σ ‖p‖²/2m + V_θ, so they conserve H and, for an invariant V_θ, the matching
    momenta.

    Parameters
    ----------
    group : str, default "T2"
        The symmetry of V_θ (``"T2"``, ``"SO2"``, ``"Trivial"``, ...; must act on R²).
    k : int, default 384
        Channels.
    num_layers : int, default 4
        Residual blocks.
    """

    kind = "hlieconv"

    def _make_net(self) -> LieResNet:
        return LieResNet(chin=2, num_outputs=1, k=self.k, nbhd=None, ds_frac=1, bn=False,
                         num_layers=self.num_layers, mean=True, pool=True, liftsamples=1, fill=1.0,
                         group=self.group, knn=True)

    def potential(self, params: dict, q: Any, sys: Any) -> Any:
        """The potential V(q − mean q, sys), a LieResNet on the centred positions.

        Parameters
        ----------
        params : dict
            The model's parameters (:meth:`init`).
        q : Array, shape (bs, n, 2)
            Positions.
        sys : Array, shape (bs, n, 2)
            Masses and spring constants (the network's input features).

        Returns
        -------
        Array, shape (bs,)
            The potential energy.
        """
        xp = array_namespace(q, sys, names=("q", "sys"))
        inputs = (_centre(xp, q), sys, _all_valid(xp, q))
        out, _ = self.net.apply(params, self._state(xp, q), inputs)
        return out[:, 0]


class FLieResNet(_LieBase):
    """LieConv that predicts ż per particle directly (no conservation built in).

    Coordinates q − mean q, features [p, m, k], four outputs per particle (q̇, ṗ).

    Parameters
    ----------
    group : str, default "T2"
        The symmetry (must act on R²).
    k : int, default 384
        Channels.
    num_layers : int, default 4
        Residual blocks.
    """

    kind = "flieconv"

    def _make_net(self) -> LieResNet:
        return LieResNet(chin=4, num_outputs=4, k=self.k, nbhd=None, ds_frac=1, bn=False,
                         num_layers=self.num_layers, mean=True, pool=False, liftsamples=1,
                         fill=1.0, group=self.group, knn=True)

    def vector_field(self, params: dict, z: Any, sys: Any) -> Any:
        xp = self._check(z, sys)
        q, p = z[:, 0], z[:, 1]
        feats = xp.concat([p, sys], axis=-1)
        out, _ = self.net.apply(params, self._state(xp, q), (_centre(xp, q), feats,
                                                             _all_valid(xp, q)))
        return xp.stack([out[..., :2], out[..., 2:]], axis=1)


def _mlp_init(gen: np.random.Generator, sizes: list[int]) -> dict:
    return {str(i): linear_init(gen, a, b) for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))}


def _mlp(xp: Any, params: dict, x: Any) -> Any:
    n = len(params)
    for i in range(n):
        x = linear(params[str(i)], x)
        if i < n - 1:
            x = swish(xp, x)
    return x


class FC(DynamicsModel):
    """MLP from the flattened (z, sys) to ż (the direct control).

    Parameters
    ----------
    k : int, default 256
        Width of the hidden layers.
    num_layers : int, default 4
        Hidden layers (Swish activations).
    n : int, default 6
        Particles per system.
    """

    kind = "fc"

    def __init__(self, k: int = 256, num_layers: int = 4, n: int = N_PARTICLES):
        self.k, self.num_layers, self.n = int(k), int(num_layers), int(n)

    def config(self) -> dict:
        return {"model": self.kind, "k": self.k, "num_layers": self.num_layers, "n": self.n}

    def _sizes(self) -> list[int]:
        n_in = 2 * self.n * DIM + 2 * self.n
        return [n_in] + [self.k] * self.num_layers + [2 * self.n * DIM]

    def init_host(self, gen: np.random.Generator) -> dict:
        return {"mlp": _mlp_init(gen, self._sizes())}

    def vector_field(self, params: dict, z: Any, sys: Any) -> Any:
        xp = self._check(z, sys)
        bs = z.shape[0]
        x = xp.concat([xp.reshape(z, (bs, -1)), xp.reshape(sys, (bs, -1))], axis=-1)
        return xp.reshape(_mlp(xp, params["mlp"], x), tuple(z.shape))


class HFC(_Hamiltonian):
    """Hamiltonian control: the known kinetic term plus an MLP potential V(q − mean q, sys).

    Parameters
    ----------
    k : int, default 256
        Width of the hidden layers.
    num_layers : int, default 4
        Hidden layers (Swish activations).
    n : int, default 6
        Particles per system.
    """

    kind = "hfc"

    def __init__(self, k: int = 256, num_layers: int = 4, n: int = N_PARTICLES):
        self.k, self.num_layers, self.n = int(k), int(num_layers), int(n)

    def config(self) -> dict:
        return {"model": self.kind, "k": self.k, "num_layers": self.num_layers, "n": self.n}

    def init_host(self, gen: np.random.Generator) -> dict:
        sizes = [self.n * DIM + 2 * self.n] + [self.k] * self.num_layers + [1]
        return {"mlp": _mlp_init(gen, sizes)}

    def potential(self, params: dict, q: Any, sys: Any) -> Any:
        xp = array_namespace(q, sys, names=("q", "sys"))
        bs = q.shape[0]
        x = xp.concat([xp.reshape(_centre(xp, q), (bs, -1)), xp.reshape(sys, (bs, -1))], axis=-1)
        return _mlp(xp, params["mlp"], x)[:, 0]


MODELS = {"hlieconv": HLieResNet, "flieconv": FLieResNet, "hfc": HFC, "fc": FC}
#: paper defaults: LieConv k=384, 4 layers; FC/HFC k=256
DEFAULT_K = {"hlieconv": 384, "flieconv": 384, "hfc": 256, "fc": 256}
DEFAULT_LR = {"hlieconv": 1e-3, "flieconv": 1e-3, "hfc": 1e-2, "fc": 1e-2}


def make_model(model: str, group: str = "T2", k: int | None = None,
               num_layers: int = 4) -> DynamicsModel:
    """A dynamics model by name.

    Parameters
    ----------
    model : {"hlieconv", "flieconv", "hfc", "fc"}
        Which model.
    group : str, default "T2"
        The symmetry of the LieConv models (ignored by the MLPs).
    k : int, optional
        Width; default the model's own (``DEFAULT_K``).
    num_layers : int, default 4
        Depth.

    Returns
    -------
    DynamicsModel
        The model configuration (call ``init`` for its parameters).

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    k = DEFAULT_K[model] if k is None else k
    if model in ("hlieconv", "flieconv"):
        return MODELS[model](group=group, k=k, num_layers=num_layers)
    return MODELS[model](k=k, num_layers=num_layers)


def from_config(cfg: dict) -> DynamicsModel:
    """Rebuild a model from :meth:`DynamicsModel.config`."""
    try:
        name = cfg["model"]
        if name in ("hlieconv", "flieconv"):
            return MODELS[name](group=cfg["group"], k=cfg["k"], num_layers=cfg["num_layers"])
        if name in ("hfc", "fc"):
            return MODELS[name](k=cfg["k"], num_layers=cfg["num_layers"], n=cfg.get("n", 6))
    except KeyError as exc:
        raise ValueError(f"model config is missing key {exc}: {cfg!r}") from exc
    raise ValueError(f"unknown model {cfg.get('model')!r} in config; choose one of: "
                     f"{', '.join(MODELS)}")
