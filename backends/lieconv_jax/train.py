"""The jax trainer: value and gradient of any loss of (params, state, batch) in one jitted step,
with an ``optax.adam`` (or plain ``optax.sgd``) update on the schedule of
:mod:`lieconv_core.app.training.schedule`.

float64 needs ``jax.config.update("jax_enable_x64", True)`` by the caller (this module never changes
jax's global configuration). Optimizer state converts to and from the portable flat format
``{"opt.mu.<name>", "opt.nu.<name>", "opt.count"}`` (SGD: ``"opt.count"`` alone) shared with the
torch trainer.

:func:`scan_rollout` and :func:`scan_loss` are the springs task's jax forms of the RK4 rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lieconv_core.nn.module import flatten, to_backend, unflatten

from .random import JaxDraws


def scan_rollout(model: Any, params: dict, z0: Any, sys: Any, ts: tuple) -> Any:
    """The RK4 rollout of :meth:`DynamicsModel.rollout` as a ``lax.scan`` over a uniform grid,
    with the vector field under its own ``jax.jit``: the network is traced once instead of
    4·(T−1) times, which cuts trace and compile time several-fold. Same numbers.

    Each RK4 step is rematerialised (``jax.checkpoint``): the gradient recomputes the step's four
    vector fields instead of keeping their intermediates as scan residuals, which XLA stacks
    with a copy per step; the springs training step is then both faster to run and faster to
    compile."""
    from lieconv_core.dynamics.integrators import rk4_step

    dt = float(ts[1] - ts[0])
    vf = jax.jit(model.vector_field)

    @jax.checkpoint
    def step(z):
        return rk4_step(lambda zz: vf(params, zz, sys), z, dt)

    def body(z, _):
        z = step(z)
        return z, z

    _, zs = jax.lax.scan(body, z0, None, length=len(ts) - 1)
    return jnp.concatenate([z0[:, None], jnp.moveaxis(zs, 0, 1)], axis=1)


def scan_loss(model: Any, ts: tuple):
    def loss_fn(p, z, s):
        return jnp.mean((scan_rollout(model, p, z[:, 0], s, ts) - z) ** 2)

    return loss_fn


def make_optimizer(lr: float, total_steps: int, warmup_steps: int = 0, optimizer: str = "adam"
                   ) -> optax.GradientTransformation:
    """Adam (or plain SGD: ``optimizer="sgd"``) with a linear warm-up over ``warmup_steps`` and a
    cosine decay to 0 at ``total_steps`` (:func:`lieconv_core.app.training.schedule.lr_at`)."""
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"unknown optimizer {optimizer!r}; choose one of ('adam', 'sgd')")
    total, warm = max(int(total_steps), 1), max(int(warmup_steps), 0)
    if warm:
        sched = optax.warmup_cosine_decay_schedule(0.0, float(lr), warm, max(total, warm + 1))
    else:
        sched = optax.cosine_decay_schedule(float(lr), total)
    return optax.adam(sched) if optimizer == "adam" else optax.sgd(sched)


class JaxTrainer:
    """Adam (or plain SGD) on the parameters of a functional model, one jitted :meth:`step` per
    batch (compiled once per batch shape).

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, state, batch, rng) -> (loss, new_state)`` on jax arrays; ``rng`` is a
        :class:`lieconv_jax.JaxDraws` made from the seed :meth:`step` receives.
    params, state : dict
        Nested dicts of host arrays (state may be empty).
    lr, total_steps, warmup_steps : float, int, int
        The schedule (:func:`lieconv_core.app.training.schedule.lr_at`).
    dtype : {"float32", "float64"}
        Floating dtype of parameters and batches.
    device : jax.Device, optional
        Default: jax's default device.
    opt_state : dict, optional
        Portable optimizer state to continue from.
    optimizer : {"adam", "sgd"}
        ``optax.adam``, or ``optax.sgd`` without momentum.
    """

    backend = "jax"

    def __init__(self, loss_fn: Callable, params: dict, state: dict | None = None, *,
                 lr: float = 1e-3, total_steps: int = 1, warmup_steps: int = 0,
                 dtype: str = "float32", device: Any = None, opt_state: dict | None = None,
                 optimizer: str = "adam"):
        if dtype == "float64" and not jax.config.jax_enable_x64:
            raise RuntimeError("float64 on jax needs jax.config.update('jax_enable_x64', True) "
                               "before training (lieconv never changes jax's global settings)")
        self.loss_fn = loss_fn
        self.dtype = jnp.float64 if dtype == "float64" else jnp.float32
        self.device = device if device is not None else jax.devices()[0]
        self.params = self._put(to_backend(params, jnp, self.dtype))
        self.state = self._put(to_backend(state or {}, jnp, self.dtype))
        self.optimizer = optimizer
        self.opt = make_optimizer(lr, total_steps, warmup_steps, optimizer)
        self.opt_state = self._put(self.opt.init(self.params))
        if opt_state is not None:
            self.load_opt_state(opt_state)
        self._step = jax.jit(self._step_fn)
        self._runs: dict[Any, Any] = {}
        self._state_fn: Any = None

    def _put(self, tree: Any) -> Any:
        # committed arrays everywhere, so that the jitted step is compiled once
        return jax.device_put(tree, self.device)

    def _step_fn(self, p, s, o, batch, key):
        def loss(pp):
            return self.loss_fn(pp, s, batch, JaxDraws(key))

        (value, new_s), g = jax.value_and_grad(loss, has_aux=True)(p)
        upd, o = self.opt.update(g, o, p)
        return optax.apply_updates(p, upd), new_s, o, value

    def array(self, x: Any) -> Any:
        """A host array on the trainer's device; floats in the trainer's dtype.

        Parameters
        ----------
        x : array_like
            Host values (numpy array, scalar or nested sequence).

        Returns
        -------
        jax.Array
            Same shape as ``x``; floating values cast to the trainer's dtype, other dtypes kept.
        """
        a = np.asarray(x)
        dt = self.dtype if a.dtype.kind == "f" else a.dtype
        return jax.device_put(jnp.asarray(a, dtype=dt), self.device)

    def batch(self, batch: dict) -> dict:
        """A host batch on the trainer's device (:meth:`array` of every entry).

        Parameters
        ----------
        batch : dict
            ``{name: host array}``.

        Returns
        -------
        dict
            ``{name: jax.Array}``, the same keys.
        """
        return {k: self.array(v) for k, v in batch.items()}

    def step(self, batch: dict, seed: int = 0) -> float:
        """One optimizer step on a host batch.

        Computes the loss and the parameter gradients, applies an optimizer step at the
        scheduled learning rate and stores the loss's new state.

        Parameters
        ----------
        batch : dict
            ``{name: host array}``, the loss's batch.
        seed : int
            Seed of the loss's random draws (a ``JaxDraws`` of ``jax.random.key(seed)``).

        Returns
        -------
        float
            The loss before the update.
        """
        self.params, self.state, self.opt_state, loss = self._step(
            self.params, self.state, self.opt_state, self.batch(batch), jax.random.key(seed))
        return float(loss)

    def update_state(self, batch: dict, seed: int = 0) -> None:
        """The loss's training-mode forward without a parameter update.

        Only the state (batch norm statistics, radii) moves.

        Parameters
        ----------
        batch : dict
            ``{name: host array}``, the loss's batch.
        seed : int
            Seed of the loss's random draws (a ``JaxDraws`` of ``jax.random.key(seed)``).
        """
        if self._state_fn is None:
            self._state_fn = jax.jit(
                lambda p, s, b, key: self.loss_fn(p, s, b, JaxDraws(key))[1])
        self.state = self._state_fn(self.params, self.state, self.batch(batch),
                                    jax.random.key(seed))

    def run(self, fn: Callable, batch: dict, seed: int = 0) -> Any:
        """Run ``fn(params, state, batch, rng)`` jitted (once per function and shape), no update.

        Parameters
        ----------
        fn : callable
            ``fn(params, state, batch, rng)`` on jax arrays; ``rng`` is a ``JaxDraws`` of
            ``jax.random.key(seed)``.
        batch : dict
            ``{name: host array}``.
        seed : int
            Seed of ``fn``'s random draws.

        Returns
        -------
        object
            ``fn``'s output with every array leaf converted to numpy.
        """
        jitted = self._runs.get(fn)
        if jitted is None:
            jitted = self._runs[fn] = jax.jit(
                lambda p, s, b, key: fn(p, s, b, JaxDraws(key)))
        out = jitted(self.params, self.state, self.batch(batch), jax.random.key(seed))
        return jax.tree_util.tree_map(np.asarray, out)

    @property
    def count(self) -> int:
        """The number of optimizer steps taken (the optimizer state's step count)."""
        return int(_counted(self.opt_state).count)

    def params_host(self) -> dict:
        """Host copies of the parameters.

        Returns
        -------
        dict
            ``{flat name: numpy.ndarray}``.
        """
        return {k: np.asarray(v) for k, v in flatten(self.params).items()}

    def state_host(self) -> dict:
        """Host copies of the state (batch norm statistics, radii).

        Returns
        -------
        dict
            ``{flat name: numpy.ndarray}``; empty when the model has no state.
        """
        return {k: np.asarray(v) for k, v in flatten(self.state).items()}

    def opt_state_host(self) -> dict:
        """The optimizer state in the portable flat format shared by the torch and jax trainers.

        Returns
        -------
        dict
            ``{"opt.count": int64 array (), "opt.mu.<name>": first moments, "opt.nu.<name>": second
            moments}``, numpy arrays shaped like the parameters (SGD: ``"opt.count"`` alone).
        """
        out = {"opt.count": np.asarray(self.count, dtype=np.int64)}
        if self.optimizer == "sgd":
            return out
        adam = self.opt_state[0]
        out.update({f"opt.mu.{k}": np.asarray(v) for k, v in flatten(adam.mu).items()})
        out.update({f"opt.nu.{k}": np.asarray(v) for k, v in flatten(adam.nu).items()})
        return out

    def load_opt_state(self, flat: dict) -> None:
        """Continue from an optimizer state in the portable flat format (:meth:`opt_state_host`).

        Parameters
        ----------
        flat : dict
            ``{"opt.count", "opt.mu.<name>", "opt.nu.<name>"}`` host arrays, as
            :meth:`opt_state_host` of either trainer writes them.
        """
        n = int(np.asarray(flat["opt.count"]).reshape(-1)[0])
        count = jnp.asarray(n, dtype=_counted(self.opt_state).count.dtype)
        if self.optimizer == "sgd":
            self.opt_state = self._put(tuple(s._replace(count=count) if _counts(s) else s
                                             for s in self.opt_state))
            return
        adam = self.opt_state[0]
        mu = unflatten({k[len("opt.mu."):]: v for k, v in flat.items() if k.startswith("opt.mu.")})
        nu = unflatten({k[len("opt.nu."):]: v for k, v in flat.items() if k.startswith("opt.nu.")})
        adam = adam._replace(count=count, mu=to_backend(mu, jnp, self.dtype),
                             nu=to_backend(nu, jnp, self.dtype))
        rest = tuple(s._replace(count=count) if _counts(s) else s for s in self.opt_state[1:])
        self.opt_state = self._put((adam, *rest))


def _counted(opt_state: tuple) -> Any:
    """The first part of an optax chain's state that counts the steps."""
    return next(s for s in opt_state if _counts(s))


def _counts(part: Any) -> bool:
    """Whether a part of an optax chain's state has a step count (a ``count`` field; every
    state is a named tuple, whose ``count`` method does not count)."""
    return "count" in getattr(part, "_fields", ())
