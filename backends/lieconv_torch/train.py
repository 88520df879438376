"""The torch trainer: value and gradient of any loss of (params, state, batch), then a
``torch.optim.Adam`` (or plain ``torch.optim.SGD``) step with the schedule of
:mod:`lieconv_core.app.training.schedule`.

The training engine (:func:`lieconv_core.app.training.fit`) talks to it through host (numpy) arrays
only. Optimizer state converts to and from the portable flat format
``{"opt.mu.<name>", "opt.nu.<name>", "opt.count"}`` (SGD: ``"opt.count"`` alone) shared with the
jax trainer, so a run can continue on the other backend.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lieconv_core.app.training.schedule import lr_at
from lieconv_core.nn.module import flatten, unflatten

from .nn import _copy_into, _Tree, torch_dtype

#: loss_fn(params, state, batch, rng) -> (scalar loss, new state); rng is an int seed
LossFn = Callable[[dict, dict, dict, Any], tuple[Any, dict]]


#: the optimizers a trainer can take (plain SGD: no momentum, no state besides the step count)
OPTIMIZERS = ("adam", "sgd")


class TorchTrainer:
    """Adam (or plain SGD) on the parameters of a functional model, one :meth:`step` per batch.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(params, state, batch, rng) -> (loss, new_state)`` on torch tensors; ``rng``
        is the int seed :meth:`step` receives (portable draws).
    params, state : dict
        Nested dicts of host arrays (state: BN statistics, radii; may be empty).
    lr, total_steps, warmup_steps : float, int, int
        The schedule (:func:`lieconv_core.app.training.schedule.lr_at`).
    dtype : {"float32", "float64"}
        Floating dtype of parameters and batches.
    device : torch.device or str
        Where they live.
    opt_state : dict, optional
        Portable optimizer state to continue from.
    compile : bool
        Run the loss and the parameter gradients as one ``torch.compile``-d
        ``torch.func.grad_and_value`` (:func:`lieconv_torch.adapter.functional_mode`), compiled
        for each new batch shape. Only for losses that draw no random numbers (the seed would
        be a constant of the compiled program): the first step compiles for minutes, later
        steps run faster on CPU; the same numbers up to rounding.
    optimizer : {"adam", "sgd"}
        ``torch.optim.Adam``, or ``torch.optim.SGD`` without momentum.
    """

    backend = "torch"

    def __init__(self, loss_fn: LossFn, params: dict, state: dict | None = None, *,
                 lr: float = 1e-3, total_steps: int = 1, warmup_steps: int = 0,
                 dtype: str = "float32", device: Any = "cpu", opt_state: dict | None = None,
                 compile: bool = False, optimizer: str = "adam"):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
        self.loss_fn, self.compile = loss_fn, bool(compile)
        self.lr, self.total_steps = float(lr), int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.dtype, self.device = torch_dtype(dtype), torch.device(device)
        self.params = _Tree(params, self.dtype, self.device)
        self.state = _Tree(state or {}, self.dtype, self.device, buffers=True)
        self.named = dict(self.params.named_parameters())
        self.optimizer = optimizer
        opt_cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
        self.opt = opt_cls(list(self.named.values()), lr=self.lr)
        self.count = 0
        self._compiled: dict[tuple, Any] = {}
        if opt_state is not None:
            self.load_opt_state(opt_state)

    # --- conversion ----------------------------------------------------------------------------
    def tensor(self, x: Any) -> torch.Tensor:
        """A host array on the trainer's device; floats in the trainer's dtype.

        Parameters
        ----------
        x : array_like
            Host values (numpy array, scalar or nested sequence).

        Returns
        -------
        torch.Tensor
            Same shape as ``x``; floating values cast to the trainer's dtype, other dtypes kept.
        """
        a = np.array(x)  # an own, writable copy
        t = torch.as_tensor(a, device=self.device)
        return t.to(self.dtype) if t.is_floating_point() else t

    def batch(self, batch: dict) -> dict:
        """A host batch on the trainer's device (:meth:`tensor` of every entry).

        Parameters
        ----------
        batch : dict
            ``{name: host array}``.

        Returns
        -------
        dict
            ``{name: torch.Tensor}``, the same keys.
        """
        return {k: self.tensor(v) for k, v in batch.items()}

    # --- steps ---------------------------------------------------------------------------------
    def step(self, batch: dict, seed: int = 0) -> float:
        """One optimizer step on a host batch.

        Computes the loss and the parameter gradients, applies an optimizer step at the scheduled
        learning rate and stores the loss's new state.

        Parameters
        ----------
        batch : dict
            ``{name: host array}``, the loss's batch.
        seed : int
            Seed of the loss's random draws (the ``rng`` argument of ``loss_fn``).

        Returns
        -------
        float
            The loss before the update.
        """
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.lr, self.count, self.total_steps, self.warmup_steps)
        self.opt.zero_grad(set_to_none=True)
        b = self.batch(batch)
        if self.compile:
            loss, new_state = self._compiled_grads(b)
        else:
            loss, new_state = self.loss_fn(self.params.tree(), self.state.tree(), b, int(seed))
            loss.backward()
        self.opt.step()
        _copy_into(self.state, new_state)
        self.count += 1
        return float(loss.detach())

    def _compiled_grads(self, b: dict) -> tuple[torch.Tensor, dict]:
        """The loss and new state, with the parameters' gradients set, from the compiled
        function of this batch shape (compiled at its first use)."""
        from .adapter import functional_mode

        key = tuple((k, tuple(v.shape)) for k, v in sorted(b.items()))
        fn = self._compiled.get(key)
        if fn is None:
            loss_fn = self.loss_fn

            def value(params: dict, state: dict, batch: dict) -> tuple[Any, dict]:
                loss, new_state = loss_fn(params, state, batch, 0)
                return loss, new_state

            fn = self._compiled[key] = torch.compile(
                torch.func.grad_and_value(value, has_aux=True))
            with torch.no_grad():  # fills the model's and the backend's caches outside the graph
                self.loss_fn(self.params.tree(), self.state.tree(), b, 0)
        params = unflatten({k: v.detach() for k, v in self.named.items()})
        with functional_mode(), warnings.catch_warnings():
            # dynamo traces through array_api_compat's lru_cache-d helpers, correctly (cached
            # facts about types), and warns about each once per process
            warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools")
            grads, (loss, new_state) = fn(params, self.state.tree(), b)
        flat = flatten(grads)
        for name, p in self.named.items():
            p.grad = flat[name]
        return loss, new_state

    def update_state(self, batch: dict, seed: int = 0) -> None:
        """The loss's training-mode forward without a parameter update.

        Only the state (batch norm statistics, radii) moves.

        Parameters
        ----------
        batch : dict
            ``{name: host array}``, the loss's batch.
        seed : int
            Seed of the loss's random draws (the ``rng`` argument of ``loss_fn``).
        """
        with torch.no_grad():
            _, new_state = self.loss_fn(self.params.tree(), self.state.tree(),
                                        self.batch(batch), int(seed))
        _copy_into(self.state, new_state)

    def run(self, fn: Callable, batch: dict, seed: int = 0) -> Any:
        """Run ``fn(params, state, batch, rng)`` without parameter gradients (eval, prediction).

        Parameters
        ----------
        fn : callable
            ``fn(params, state, batch, rng)`` on torch tensors; ``rng`` is ``seed``.
        batch : dict
            ``{name: host array}``.
        seed : int
            Seed of ``fn``'s random draws.

        Returns
        -------
        object
            ``fn``'s output with every tensor copied to numpy (a dict or tuple of them, or one);
            other values unchanged.
        """
        with torch.no_grad():  # a vector field still takes its own gradient inside
            out = fn(self.params.tree(), self.state.tree(), self.batch(batch), int(seed))
        return _to_host(out)

    # --- host copies ---------------------------------------------------------------------------
    def params_host(self) -> dict:
        """Host copies of the parameters.

        Returns
        -------
        dict
            ``{flat name: numpy.ndarray}``.
        """
        return _to_host(flatten(self.params.tree()))

    def state_host(self) -> dict:
        """Host copies of the state (batch norm statistics, radii).

        Returns
        -------
        dict
            ``{flat name: numpy.ndarray}``; empty when the model has no state.
        """
        return _to_host(flatten(self.state.tree())) if self.state._keys else {}

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
        for name, p in self.named.items():
            st = self.opt.state.get(p, {})
            zeros = np.zeros(tuple(p.shape), dtype=_np_dtype(p))
            out[f"opt.mu.{name}"] = st["exp_avg"].detach().cpu().numpy().copy() if st else zeros
            out[f"opt.nu.{name}"] = st["exp_avg_sq"].detach().cpu().numpy().copy() if st else zeros
        return out

    def load_opt_state(self, flat: dict) -> None:
        """Continue from an optimizer state in the portable flat format (:meth:`opt_state_host`).

        Parameters
        ----------
        flat : dict
            ``{"opt.count", "opt.mu.<name>", "opt.nu.<name>"}`` host arrays, as
            :meth:`opt_state_host` of either trainer writes them.
        """
        self.count = int(np.asarray(flat["opt.count"]).reshape(-1)[0])
        if self.count == 0 or self.optimizer == "sgd":
            return
        for name, p in self.named.items():
            self.opt.state[p] = {
                "step": torch.tensor(float(self.count), dtype=torch.float32),
                "exp_avg": self.tensor(flat[f"opt.mu.{name}"]).to(p.dtype),
                "exp_avg_sq": self.tensor(flat[f"opt.nu.{name}"]).to(p.dtype),
            }


def _to_host(out: Any) -> Any:
    if isinstance(out, dict):
        return {k: _to_host(v) for k, v in out.items()}
    if isinstance(out, tuple | list):
        return type(out)(_to_host(v) for v in out)
    if isinstance(out, torch.Tensor):
        return out.detach().cpu().numpy().copy()
    return out


def _np_dtype(p: torch.Tensor) -> Any:
    return np.float64 if p.dtype == torch.float64 else np.float32
