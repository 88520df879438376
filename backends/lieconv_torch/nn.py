"""torch-idiomatic wrappers: a functional lieconv_core model as an ``nn.Module``.

The functional params (nested dict of arrays) become ``nn.Parameter`` s in a tree of sub-modules
with the same names (so ``state_dict`` keys equal the portable flat names, e.g.
``blocks.0.lin0.w``); the functional state (BN statistics, radius r) becomes buffers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return _DTYPES[dtype]


class _Tree(nn.Module):
    """A nested dict of tensors as parameters (or buffers) of nested modules."""

    def __init__(self, tree: dict, dtype: torch.dtype | None, device: Any,
                 buffers: bool = False):
        """Floating leaves are cast to ``dtype`` (None: each keeps its own)."""
        super().__init__()
        self._keys = list(tree)
        for key, val in tree.items():
            if isinstance(val, dict):
                self.add_module(key, _Tree(val, dtype, device, buffers))
                continue
            arr = np.array(val) if not isinstance(val, torch.Tensor) else val  # own, writable copy
            t = torch.as_tensor(arr, device=device)
            if t.is_floating_point() and dtype is not None:
                t = t.to(dtype)
            if buffers or not t.is_floating_point():
                self.register_buffer(key, t.clone())
            else:
                self.register_parameter(key, nn.Parameter(t.clone()))

    def tree(self) -> dict:
        out: dict[str, Any] = {}
        for key in self._keys:
            val = getattr(self, key)
            out[key] = val.tree() if isinstance(val, _Tree) else val
        return out


class FunctionalModule(nn.Module):
    """``nn.Module`` around a functional model with ``apply(params, state, inputs, ...)``
    (e.g. :class:`lieconv_core.LieResNet`): ``forward(*inputs)`` runs it with the registered
    parameters and updates the buffers in training mode.

    Parameters
    ----------
    model : Model
        The functional model, e.g. a :class:`lieconv_core.LieResNet`.
    params, state : dict
        Nested dicts of arrays from ``model.init``; they become ``nn.Parameter`` s and buffers
        (``state_dict`` keys are the portable flat names, e.g. ``params.lin_in.w``).
    dtype : {"float32", "float64"}, torch.dtype or None
        Floating dtype of the parameters and buffers; None (default): params and state keep
        their dtypes.
    device : str or torch.device
        Where they live.

    Examples
    --------
    >>> import torch, lieconv_core as lc
    >>> from lieconv_torch import FunctionalModule
    >>> net = lc.LieResNet(chin=1, num_outputs=1, k=16, num_layers=1, group=lc.groups.T(3))
    >>> module = FunctionalModule(net, *net.init(seed=0, backend="torch"))
    >>> x = (torch.randn(2, 8, 3), torch.ones(2, 8, 1), torch.ones(2, 8, dtype=torch.bool))
    >>> module(*x, rng=0).shape            # rng: seed of the portable random draws
    torch.Size([2, 1])
    """

    def __init__(self, model: Any, params: dict, state: dict | None = None,
                 dtype: Any = None, device: Any = "cpu"):
        super().__init__()
        dt = None if dtype is None else torch_dtype(dtype)
        self.model = model
        self.params = _Tree(params, dt, device)
        self.state = _Tree(state or {}, dt, device, buffers=True)

    def forward(self, *inputs: Any, rng: Any = None) -> Any:
        """Run the model with the registered parameters; in training mode, update the buffers.

        Parameters
        ----------
        *inputs : torch.Tensor
            The model's inputs, e.g. ``coords, values, mask`` for a LieResNet.
        rng : int, PortableDraws or None
            Random draws (a seed or a draws object).

        Returns
        -------
        torch.Tensor
            The model's outputs, e.g. (bs, num_outputs).
        """
        out, new_state = self.model.apply(self.params.tree(), self.state.tree(), inputs,
                                          train=self.training, rng=rng)
        if self.training:
            _copy_into(self.state, new_state)
        return out


def _copy_into(mod: _Tree, tree: dict) -> None:
    with torch.no_grad():
        for key, val in tree.items():
            cur = getattr(mod, key, None)
            if isinstance(cur, _Tree):
                _copy_into(cur, val)
            elif isinstance(cur, torch.Tensor) and isinstance(val, torch.Tensor):
                cur.copy_(val.detach())


class DynamicsModule(nn.Module):
    """``nn.Module`` around a :mod:`lieconv_core.dynamics` model: ``forward(z, sys)`` is the vector
    field ż; ``rollout``, ``loss``, ``energy`` and ``potential`` use the registered parameters.

    Parameters
    ----------
    model : Model
        A :mod:`lieconv_core.dynamics` model.
    params : dict
        Nested dict of arrays from ``model.init``; they become ``nn.Parameter`` s.
    dtype : {"float32", "float64"}, torch.dtype or None
        Floating dtype of the parameters; None (default): they keep their dtypes.
    device : str or torch.device
        Where they live.
    """

    def __init__(self, model: Any, params: dict, dtype: Any = None, device: Any = "cpu"):
        super().__init__()
        self.model = model
        self.params = _Tree(params, None if dtype is None else torch_dtype(dtype), device)

    def tree(self) -> dict:
        """The registered parameters as the nested dict the functional model takes.

        Returns
        -------
        dict
            Nested dicts of the ``nn.Parameter`` s.
        """
        return self.params.tree()

    def forward(self, z: torch.Tensor, sys: torch.Tensor) -> torch.Tensor:
        """The vector field ż.

        Parameters
        ----------
        z : torch.Tensor, shape (bs, 2, n, d)
            Positions and momenta.
        sys : torch.Tensor, shape (bs, n, 2)
            Masses and spring constants.

        Returns
        -------
        torch.Tensor, shape (bs, 2, n, d)
            (q̇, ṗ).
        """
        return self.model.vector_field(self.tree(), z, sys)

    def rollout(self, z0, sys, ts, method: str = "rk4"):
        """Integrate the model's dynamics from ``z0``.

        Parameters
        ----------
        z0 : torch.Tensor, shape (bs, 2, n, d)
            Initial states.
        sys : torch.Tensor, shape (bs, n, 2)
            Masses and spring constants.
        ts : sequence of float
            The time grid (T times).
        method : str, default "rk4"
            The integrator.

        Returns
        -------
        torch.Tensor, shape (bs, T, 2, n, d)
            The states at the grid times.
        """
        return self.model.rollout(self.tree(), z0, sys, ts, method)

    def loss(self, z, sys, ts):
        """MSE of the rollout from ``z[:, 0]`` against the chunk ``z``.

        Parameters
        ----------
        z : torch.Tensor, shape (bs, T, 2, n, d)
            Chunks of trajectories.
        sys : torch.Tensor, shape (bs, n, 2)
            Masses and spring constants.
        ts : sequence of float
            The chunk times (T).

        Returns
        -------
        torch.Tensor, shape ()
            The loss.
        """
        return self.model.loss(self.tree(), z, sys, ts)

    def energy(self, z, sys):
        """The model's energy H (Hamiltonian models only).

        Parameters
        ----------
        z : torch.Tensor, shape (bs, 2, n, d)
            Positions and momenta.
        sys : torch.Tensor, shape (bs, n, 2)
            Masses and spring constants.

        Returns
        -------
        torch.Tensor, shape (bs,)
            H = Σ ‖p‖²/2m + V.
        """
        return self.model.energy(self.tree(), z, sys)

    def potential(self, q, sys):
        """The model's potential V (Hamiltonian models only).

        Parameters
        ----------
        q : torch.Tensor, shape (bs, n, d)
            Positions.
        sys : torch.Tensor, shape (bs, n, 2)
            Masses and spring constants.

        Returns
        -------
        torch.Tensor, shape (bs,)
            V(q − mean q, sys).
        """
        return self.model.potential(self.tree(), q, sys)

    def named_flat(self) -> dict[str, nn.Parameter]:
        """The parameters by their portable flat names (as in the checkpoints).

        Returns
        -------
        dict of str to torch.nn.Parameter
            ``{"a.b.c": parameter}``.
        """
        return dict(self.params.named_parameters())
