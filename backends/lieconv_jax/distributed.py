"""Data-parallel training on jax: one jitted step over a ``Mesh`` of all devices (all hosts'
after ``jax.distributed.initialize``), the global batch sharded along its leading axis
(``NamedSharding(mesh, P("data"))``), parameters, state and optimizer state replicated.

The step is the single-device step with sharded inputs: the compiler partitions it and inserts
the collectives, so the batch-norm statistics, the radius controller, the random draws and the
gradients are those of the global batch, as in one process.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from lieconv_core.parallel import share

from .train import JaxTrainer

AXIS = "data"


class MeshComm:
    """The devices of a data-parallel jax run, as the training engine sees it.

    Parameters
    ----------
    devices : list of jax.Device
        Every device of the run (all processes'); the mesh's one axis, ``"data"``.
    """

    backend = "jax"

    def __init__(self, devices: list):
        self.mesh = Mesh(np.asarray(devices), (AXIS,))
        self.rank, self.processes = jax.process_index(), jax.process_count()

    @property
    def shares(self) -> int:
        """Equal shares the global batch is split into: one per device."""
        return self.mesh.size

    def broadcast(self, obj: Any) -> Any:
        """Process 0's ``obj`` (picklable) on every process."""
        if self.processes == 1:
            return obj
        from jax.experimental import multihost_utils

        data = np.frombuffer(pickle.dumps(obj), dtype=np.uint8)
        n = int(multihost_utils.broadcast_one_to_all(np.asarray(len(data), dtype=np.int64)))
        buf = np.zeros(n, dtype=np.uint8)
        if self.rank == 0:
            buf[:] = data
        got = np.asarray(multihost_utils.broadcast_one_to_all(buf))
        return pickle.loads(got.tobytes())

    def describe(self) -> str:
        return f"jax mesh of {self.mesh.size} devices over {self.processes} process(es)"


def init_mesh(device: str | None = None, timeout: float | None = None) -> MeshComm | None:
    """A mesh over all of jax's devices, or None for one device or an explicit ``device`` (the
    ordinary single-device trainer). With ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` set, first joins the multi-host job (``jax.distributed.initialize``;
    ``timeout``: seconds to wait for the other processes)."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS") and not _initialized():
        kw: dict[str, Any] = {"coordinator_address": os.environ["JAX_COORDINATOR_ADDRESS"]}
        for key, env in (("num_processes", "JAX_NUM_PROCESSES"),
                         ("process_id", "JAX_PROCESS_ID")):
            if os.environ.get(env):
                kw[key] = int(os.environ[env])
        if timeout:
            kw["initialization_timeout"] = int(timeout)
        jax.distributed.initialize(**kw)
    if device is not None:
        if jax.process_count() > 1:
            raise ValueError("--device picks one device; a multi-host jax run uses all of them")
        return None
    devices = jax.devices()
    if len(devices) <= 1:
        return None
    return MeshComm(devices)


def _initialized() -> bool:
    from jax._src import distributed

    return distributed.global_state.client is not None


class ShardedJaxTrainer(JaxTrainer):
    """:class:`~lieconv_jax.train.JaxTrainer` whose step runs on a mesh: the same contract
    (global host batches in, the global batch's loss out), every batch sharded over the mesh's
    devices along its leading axis, parameters and optimizer state replicated.

    Parameters
    ----------
    loss_fn, params, state, lr, total_steps, warmup_steps, dtype, opt_state
        As :class:`~lieconv_jax.train.JaxTrainer`.
    comm : MeshComm
        The mesh (:func:`init_mesh`).
    """

    def __init__(self, loss_fn: Any, params: dict, state: dict | None = None, *,
                 comm: MeshComm, **kw: Any):
        if kw.pop("compile", False):
            raise ValueError("--compile is for the torch backend (jax always jits its step)")
        kw.pop("device", None)
        self.comm = comm
        self.replicated = NamedSharding(comm.mesh, P())
        self.sharded = NamedSharding(comm.mesh, P(AXIS))
        super().__init__(loss_fn, params, state, device=comm.mesh.devices.flat[0], **kw)

    def _put(self, tree: Any) -> Any:
        return jax.device_put(tree, self.replicated)

    def array(self, x: Any) -> Any:
        """A global host array on the mesh: sharded along its leading axis when the devices
        divide it, else replicated; floats in the trainer's dtype."""
        a = np.asarray(x)
        a = a.astype(self.dtype) if a.dtype.kind == "f" else a
        if a.ndim == 0 or a.shape[0] % self.comm.shares:
            return jax.make_array_from_callback(a.shape, self.replicated, lambda idx: a[idx])
        return jax.make_array_from_callback(a.shape, self.sharded, lambda idx: a[idx])

    def step(self, batch: dict, seed: int = 0) -> float:
        """One optimizer step on a global host batch (its size a multiple of the devices)."""
        size = len(next(iter(batch.values())))
        share(size, 0, self.comm.shares)  # the not-divisible error
        return super().step(batch, seed)

