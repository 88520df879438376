"""Training step for :mod:`lieconv_core.dynamics` models on torch: ``torch.optim.Adam`` with a
per-step cosine learning-rate schedule (the same schedule as ``optax.cosine_decay_schedule``, so
torch and jax runs follow the same numbers).

The driver (:func:`lieconv_core.train.fit`) talks to :class:`TorchTrainer` through host (numpy)
arrays only; optimizer state converts to and from the portable flat format
``{"opt.mu.<name>", "opt.nu.<name>", "opt.count"}`` shared with the jax trainer.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from lieconv_core.nn.module import flatten, unflatten

from .nn import DynamicsModule, torch_dtype


def resolve_device(device: str) -> torch.device:
    """"cpu", "cuda", "cuda:1", ... -> torch.device; RuntimeError if it does not exist here."""
    dev = torch.device(device)  # RuntimeError on a malformed string
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device on this machine")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise RuntimeError(f"torch sees {torch.cuda.device_count()} CUDA device(s)")
    return dev


def cosine_lr(lr: float, step: int, total_steps: int) -> float:
    t = min(step, total_steps) / max(total_steps, 1)
    return lr * 0.5 * (1 + math.cos(math.pi * t))


class TorchTrainer:
    backend = "torch"

    def __init__(self, model: Any, params: dict, lr: float, total_steps: int,
                 dtype: str = "float32", device: Any = "cpu", opt_state: dict | None = None,
                 compile: bool = False):
        """``compile``: run :meth:`step`'s loss and parameter gradients as one
        ``torch.compile``-d ``torch.func.grad_and_value`` (see
        :func:`lieconv_torch.adapter.functional_mode`), compiled at the first step of each time
        grid (and again for a new batch size); inductor fuses the elementwise work of the double
        backprop. The first step then takes minutes at the paper's size (less with a warm
        inductor cache), the later ones less than eager's; the same numbers up to float
        rounding."""
        self.model, self.lr, self.total_steps = model, float(lr), int(total_steps)
        self.compile = bool(compile)
        self._compiled: dict[tuple, Any] = {}
        self.dtype, self.device = torch_dtype(dtype), torch.device(device)
        self.module = DynamicsModule(model, params, dtype, self.device)
        self.named = self.module.named_flat()
        self.opt = torch.optim.Adam(list(self.named.values()), lr=self.lr)
        self.count = 0
        if opt_state is not None:
            self.load_opt_state(opt_state)

    def _t(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(x), dtype=self.dtype, device=self.device)  # writable copy

    def step(self, z: np.ndarray, sys: np.ndarray, ts: Any) -> float:
        for group in self.opt.param_groups:
            group["lr"] = cosine_lr(self.lr, self.count, self.total_steps)
        self.opt.zero_grad(set_to_none=True)
        if self.compile:
            loss = self._compiled_grads(self._t(z), self._t(sys), ts)
        else:
            loss = self.model.loss(self.module.tree(), self._t(z), self._t(sys), ts)
            loss.backward()
        self.opt.step()
        self.count += 1
        return float(loss.detach())

    def _compiled_grads(self, z: torch.Tensor, sys: torch.Tensor, ts: Any) -> torch.Tensor:
        """The loss, with the parameters' gradients set, from the compiled function of the time
        grid ``ts`` (compiled on its first use)."""
        from .adapter import functional_mode

        key = tuple(float(t) for t in ts)
        fn = self._compiled.get(key)
        if fn is None:
            model = self.model

            def loss_fn(params: dict, zz: torch.Tensor, ss: torch.Tensor) -> torch.Tensor:
                return model.loss(params, zz, ss, list(key))

            fn = self._compiled[key] = torch.compile(torch.func.grad_and_value(loss_fn))
            with torch.no_grad():  # fills the model's and the backend's caches outside the graph
                self.model.loss(self.module.tree(), z, sys, list(key))
        params = {k: v.detach() for k, v in self.named.items()}
        with functional_mode(), warnings.catch_warnings():
            # dynamo traces through array_api_compat's lru_cache-d helpers, correctly (cached
            # facts about types), and warns about each once per process
            warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools")
            grads, loss = fn(unflatten(params), z, sys)
        flat = flatten(grads)
        for name, p in self.named.items():
            p.grad = flat[name]
        return loss

    def eval_loss(self, z: np.ndarray, sys: np.ndarray, ts: Any) -> float:
        with torch.no_grad():  # the vector field still gets its own grad (enable_grad inside)
            return float(self.model.loss(self.module.tree(), self._t(z), self._t(sys), ts).detach())

    def rollout(self, z0: np.ndarray, sys: np.ndarray, ts: Any, method: str = "rk4") -> np.ndarray:
        with torch.no_grad():  # no graph across steps: memory stays O(one step)
            zs = self.model.rollout(self.module.tree(), self._t(z0), self._t(sys), ts, method)
        return zs.detach().cpu().numpy()

    def params_host(self) -> dict:
        return {k: v.detach().cpu().numpy().copy() for k, v in flatten(self.module.tree()).items()}

    def opt_state_host(self) -> dict:
        out = {"opt.count": np.asarray(self.count, dtype=np.int64)}
        for name, p in self.named.items():
            st = self.opt.state.get(p, {})
            out[f"opt.mu.{name}"] = (st["exp_avg"].detach().cpu().numpy().copy() if st
                                     else np.zeros(tuple(p.shape), dtype=_np_dtype(p)))
            out[f"opt.nu.{name}"] = (st["exp_avg_sq"].detach().cpu().numpy().copy() if st
                                     else np.zeros(tuple(p.shape), dtype=_np_dtype(p)))
        return out

    def load_opt_state(self, flat: dict) -> None:
        self.count = int(np.asarray(flat["opt.count"]).reshape(-1)[0])
        if self.count == 0:
            return
        for name, p in self.named.items():
            self.opt.state[p] = {
                "step": torch.tensor(float(self.count), dtype=torch.float32),
                "exp_avg": self._t(flat[f"opt.mu.{name}"]).to(p.dtype),
                "exp_avg_sq": self._t(flat[f"opt.nu.{name}"]).to(p.dtype),
            }


def _np_dtype(p: torch.Tensor) -> Any:
    return np.float64 if p.dtype == torch.float64 else np.float32
