"""Data-parallel training on ``torch.distributed``: one process per device, launched by
``torchrun``, gradients all-reduced by ``DistributedDataParallel``.

Every process receives the same global host batch from the engine and trains on its equal share
of the rows (:func:`lieconv_core.parallel.take_share`). What is synchronised:

- gradients: DDP averages them over the processes; each process's loss is the mean over its
  share, so the average is the gradient of the global batch's mean loss;
- batch statistics: the masked batch norm's sums (values, squares, valid count) and the radius
  controller's counts are all-reduced inside the forward
  (a differentiable all-reduce), so the statistics, the
  running statistics and the radii are those of the global batch on every process;
- random draws of the model: made for the global batch from the step's seed and sliced
  (:class:`lieconv_core.parallel.ShareDraws`);
- the reported loss: the mean of the processes' losses (one scalar all-reduce per step).

Parameters and optimizer states stay equal on all processes because they start equal (DDP
broadcasts rank 0's parameters; a resumed run loads rank 0's checkpoint everywhere) and take the
same averaged gradients.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from lieconv_core.app.training.schedule import lr_at
from lieconv_core.parallel import ShareDraws, launcher_env, share, summing_over, take_share
from lieconv_core.random import as_draws

from .nn import _copy_into
from .train import TorchTrainer

#: seconds a collective waits for the other processes before the job fails
DEFAULT_TIMEOUT = 600.0


class _AllReduceSum(torch.autograd.Function):
    """y = Σ over processes of x; the gradient of x is the sum over processes of y's gradients
    (each process's loss depends on y), itself differentiable (double backward)."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, gy):
        return _AllReduceSum.apply(gy)


def _all_reduce_sum(x: Any) -> Any:
    """A differentiable sum over the process group (torch tensors; anything else unchanged)."""
    if not isinstance(x, torch.Tensor):
        return x
    return _AllReduceSum.apply(x)


class TorchComm:
    """The process group of a ``torchrun`` launch, as the training engine sees it.

    Parameters
    ----------
    rank, world, local_rank : int
        From the launcher's environment.
    device : torch.device
        This process's device (``cuda:LOCAL_RANK`` on GPUs, else the CPU).
    timeout : float
        Seconds a collective waits for the other processes (the process group's timeout).
    """

    backend = "torch"

    def __init__(self, rank: int, world: int, local_rank: int, device: torch.device,
                 timeout: float = DEFAULT_TIMEOUT):
        self.rank, self.world, self.local_rank, self.device = rank, world, local_rank, device
        self.timeout = float(timeout)

    @contextlib.contextmanager
    def collectives(self) -> Iterator[None]:
        """Context manager that turns a collective's timeout into an error naming the rank,
        the timeout and its option.

        Yields
        ------
        None

        Raises
        ------
        RuntimeError
            When a collective inside gave up waiting for the other processes.
        """
        try:
            yield
        except RuntimeError as exc:  # gloo and nccl errors are RuntimeErrors
            if "timed out" not in str(exc).lower():
                raise
            raise RuntimeError(
                f"rank {self.rank}: another process did not join a collective within "
                f"--dist-timeout {self.timeout:g} s (stopped or hung); the job stops: {exc}"
            ) from exc

    @property
    def processes(self) -> int:
        """Processes of the job (each one trains one share of the batch)."""
        return self.world

    @property
    def shares(self) -> int:
        """Equal shares the global batch is split into."""
        return self.world

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (any picklable object) on every rank."""
        box = [obj if self.rank == 0 else None]
        with self.collectives():
            dist.broadcast_object_list(box, src=0, device=self._comm_device())
        return box[0]

    def _comm_device(self) -> torch.device:
        return self.device if dist.get_backend() == "nccl" else torch.device("cpu")

    def describe(self) -> str:
        return f"torch.distributed ({dist.get_backend()}), {self.world} processes"


def init_from_env(device: str | None = None, timeout: float | None = None) -> TorchComm | None:
    """Joins the process group of a ``torchrun`` launch (gloo on CPU, nccl on CUDA), or None
    without a launcher (one process: the ordinary trainer).

    Parameters
    ----------
    device : str, optional
        "cpu" or "cuda" (the process's ``cuda:LOCAL_RANK``); default: CUDA when available.
    timeout : float, optional
        Seconds any collective waits for the others before raising (default
        :data:`DEFAULT_TIMEOUT`): a crashed or stuck process fails the job instead of hanging.
    """
    env = launcher_env()
    if env is None:
        return None
    rank, world, local = env
    if device is None:
        dev = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
        if dev.type == "cuda":
            dev = torch.device(f"cuda:{local}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    seconds = float(timeout or DEFAULT_TIMEOUT)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world,
            timeout=datetime.timedelta(seconds=seconds))
    return TorchComm(rank, world, local, dev, seconds)


class _LossModule(nn.Module):
    """The trainer's parameters as one module whose forward is the loss, for DDP."""

    def __init__(self, trainer: TorchTrainer):
        super().__init__()
        self.params = trainer.params
        self._trainer = [trainer]  # a list: not registered as a submodule

    def forward(self, batch: dict, draws: Any) -> tuple[torch.Tensor, dict]:
        tr = self._trainer[0]
        return tr.loss_fn(self.params.tree(), tr.state.tree(), batch, draws)


class DistributedTorchTrainer(TorchTrainer):
    """:class:`~lieconv_torch.train.TorchTrainer` for one process of a data-parallel job: the
    same contract (global host batches in, the global batch's loss out), its share of every
    batch computed here, gradients averaged by ``DistributedDataParallel``.

    Parameters
    ----------
    loss_fn, params, state, lr, total_steps, warmup_steps, dtype, opt_state
        As :class:`~lieconv_torch.train.TorchTrainer`.
    comm : TorchComm
        The process group (:func:`init_from_env`); its device is the trainer's.
    """

    def __init__(self, loss_fn: Any, params: dict, state: dict | None = None, *,
                 comm: TorchComm, **kw: Any):
        if kw.pop("compile", False):
            raise ValueError("--compile is not available with data-parallel training")
        kw.pop("device", None)
        super().__init__(loss_fn, params, state, device=comm.device, **kw)
        self.comm = comm
        ids = [comm.device.index] if comm.device.type == "cuda" else None
        # find_unused_parameters: a loss may not reach every parameter (a Hamiltonian's
        # additive constant drops out of its gradient, the springs loss); DDP would wait for
        # their gradients forever, where one process leaves them None and Adam skips them
        self.ddp = nn.parallel.DistributedDataParallel(
            _LossModule(self), device_ids=ids, find_unused_parameters=True)

    def _share(self, batch: dict, seed: int) -> tuple[dict, Any]:
        size = len(next(iter(batch.values())))
        rows = share(size, self.comm.rank, self.comm.world)
        draws = ShareDraws(as_draws(int(seed)), rows, size)
        return self.batch(take_share(batch, self.comm.rank, self.comm.world)), draws

    def step(self, batch: dict, seed: int = 0) -> float:
        """One optimizer step on this process's share of a global host batch; returns the
        global batch's loss (the same number on every process)."""
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.lr, self.count, self.total_steps, self.warmup_steps)
        self.opt.zero_grad(set_to_none=True)
        b, draws = self._share(batch, seed)
        with self.comm.collectives(), summing_over(_all_reduce_sum):
            loss, new_state = self.ddp(b, draws)
            loss.backward()
        self.opt.step()
        _copy_into(self.state, new_state)
        self.count += 1
        total = loss.detach().clone()
        with self.comm.collectives():
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return float(total) / self.comm.world

    def update_state(self, batch: dict, seed: int = 0) -> None:
        """The training-mode forward of this process's share, no update: the state (batch-norm
        statistics, radii) moves by the global batch's statistics."""
        b, draws = self._share(batch, seed)
        with torch.no_grad(), self.comm.collectives(), summing_over(_all_reduce_sum):
            _, new_state = self.loss_fn(self.params.tree(), self.state.tree(), b, draws)
        _copy_into(self.state, new_state)

