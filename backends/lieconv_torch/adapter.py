"""The torch adapter: native top-k/sort, autograd, CUDA synchronisation, and (optionally) the Triton
kernels of :mod:`lieconv_torch.kernels`."""

from __future__ import annotations

from typing import Any, Callable

import torch

from lieconv_core.adapter import ReferenceAdapter


class TorchAdapter(ReferenceAdapter):
    name = "torch"

    def gather(self, xp: Any, x: Any, idx: Any) -> Any:
        bs = x.shape[0]
        flat = idx.reshape(bs, -1)
        rest = x.shape[2:]
        index = flat.reshape(bs, -1, *([1] * len(rest))).expand(bs, flat.shape[1], *rest)
        return torch.gather(x, 1, index).reshape(*idx.shape, *rest)

    def take_along_last(self, xp: Any, x: Any, idx: Any) -> Any:
        return torch.gather(x, -1, idx)

    def topk_smallest(self, xp: Any, scores: Any, k: int) -> Any:
        # torch.topk does not promise an order among ties; a stable sort does (lower index first)
        return torch.sort(scores, dim=-1, stable=True).indices[..., :k]

    def grad(self, f: Callable) -> Callable:
        """grad of a scalar function of one tensor, differentiable again (create_graph=True)."""

        def g(x: torch.Tensor, *args: Any) -> torch.Tensor:
            with torch.enable_grad():
                x = x if x.requires_grad else x.detach().requires_grad_(True)
                (out,) = torch.autograd.grad(f(x, *args), x, create_graph=True)
            return out

        return g

    def synchronize(self, x: Any = None) -> None:
        if torch.cuda.is_available() and (x is None or getattr(x, "is_cuda", False)):
            torch.cuda.synchronize()

    def to_numpy(self, x: Any):
        return x.detach().cpu().numpy()


ADAPTER = TorchAdapter()
