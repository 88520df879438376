"""Shared pieces of the asv benchmarks: the ``backend:device`` parameter, synchronisation, host
inputs, compiled forward / training-step closures, and the paper workloads.

Every benchmark class is parametrised over :data:`BACKENDS`; a spec whose framework or device is
missing raises ``NotImplementedError`` in ``setup`` and asv records it as skipped (n/a). Timed
functions end with :meth:`Bench.sync` so GPU work is finished inside the timing (jax:
``block_until_ready``; torch / cupy: device synchronise).

jax runs jitted (with native ``JaxDraws`` so no host draws are baked in as constants); numpy,
array_api_strict and torch run eagerly with portable host draws. float64 benchmarks switch jax's
x64 flag on (asv runs each benchmark in its own process).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from typing import Any

import numpy as np

from lieconv_core.groups import SE2, SE3, T
from lieconv_core.nn.presets import (
    image_grid,
    image_lieresnet,
    molecule_features,
    molecule_lieresnet,
)
from lieconv_core.tools.consistency import SPECS, Backend, resolve

#: asv parameter: backend:device specs (unavailable ones are skipped). ``LIECONV_BENCH_BACKENDS``
#: (comma-separated specs) narrows the list, e.g. for a quick CPU run.
BACKENDS = [s for s in os.environ.get("LIECONV_BENCH_BACKENDS", ",".join(SPECS)).split(",") if s]


class Bench(Backend):
    """A resolved spec with compile helpers."""

    @classmethod
    def get(cls, spec: str, x64: bool = False) -> Bench:
        b = resolve(spec, x64=x64)
        return cls(b.spec, b.name, b.xp, b.device, b.adapter)

    @property
    def has_grad(self) -> bool:
        return self.name in ("torch", "jax")

    def require_grad(self) -> None:
        if not self.has_grad:
            raise NotImplementedError(f"{self.spec} has no autodiff")

    def jit(self, fn: Any, **kw: Any) -> Any:
        """jax.jit on jax (``kw``: static_argnums etc.); identity elsewhere."""
        if self.name == "jax":
            import jax

            return jax.jit(fn, **kw)
        return fn

    def no_grad(self) -> Any:
        if self.name == "torch":
            import torch

            return torch.no_grad()
        import contextlib

        return contextlib.nullcontext()


# --- timing helpers ------------------------------------------------------------------------------

def median_time(fn: Any, b: Bench, repeats: int = 3) -> float:
    """Median wall time of fn() (synchronised) after one warm-up call, in seconds."""
    b.sync(fn())
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        b.sync(fn())
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def minor_faults(fn: Any, b: Bench, calls: int = 7) -> float:
    """Median number of minor page faults of one synchronised fn() call, after one warm call:
    pages the allocator maps fresh for the call's temporaries (each a kernel entry and a 4 KiB
    page zeroed: microseconds apiece). getrusage counts the whole process, so this is for
    host (CPU) work. Platforms without ``resource`` (Windows): NotImplementedError."""
    try:
        import resource
    except ImportError as exc:  # pragma: no cover - not on Linux/macOS
        raise NotImplementedError("page-fault counts need the resource module") from exc
    b.sync(fn())
    counts = []
    for _ in range(calls):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        b.sync(fn())
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return float(statistics.median(counts))


def interleaved_medians(fns: list, b: Bench, rounds: int = 7) -> list[float]:
    """Median wall time (s, synchronised) of every fn, timed in turns — fn0, fn1, …, fn0, fn1, …
    — so that a slow phase of a shared machine that outlasts one round slows them all alike and
    their ratios stay put. Each timed call follows an untimed call of the same fn, so that none is
    timed with caches full of another's data (a 2048³ GEMM evicts a layer's weights, which
    would make the layer after it look slower)."""
    ts: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, acc in zip(fns, ts):
            b.sync(fn())
            t0 = time.perf_counter()
            b.sync(fn())
            acc.append(time.perf_counter() - t0)
    return [statistics.median(acc) for acc in ts]


def gemm_fn(b: Bench, n: int = 2048, dtype: str = "float32") -> Any:
    """A closure of one dense (n×n) @ (n×n) product on this backend and device (2·n³ FLOPs)."""
    gen = np.random.default_rng(0)
    x = b.asarray(gen.standard_normal((n, n)), dtype)
    y = b.asarray(gen.standard_normal((n, n)), dtype)
    mm = b.jit(lambda u, v: u @ v)
    return lambda: mm(x, y)


def gemm_gflops(b: Bench, n: int = 2048, dtype: str = "float32") -> float:
    """Measured dense GEMM rate (n×n @ n×n) in GFLOP/s on this backend and device."""
    t = median_time(gemm_fn(b, n, dtype), b, repeats=5)
    return 2 * n**3 / t / 1e9


def count_gflop(fn: Any) -> float:
    """GFLOP of the matrix multiplies (mm, bmm, addmm, ...) of one call of fn on torch, as counted
    by ``torch.utils.flop_counter.FlopCounterMode`` (elementwise work is not counted).

    The model's own work: torch's fused training-mode batch norm takes its per-channel sums as
    (c × N) @ (N × c) products and keeps their diagonals (fewer passes over memory, c× the
    FLOPs of the sums), so while counting, batch norm runs as the reference composition."""
    from lieconv_torch.adapter import TorchAdapter
    from torch.utils.flop_counter import FlopCounterMode

    from lieconv_core.adapter import ReferenceAdapter

    counter = FlopCounterMode(display=False)
    fused = TorchAdapter.bn_swish
    TorchAdapter.bn_swish = ReferenceAdapter.bn_swish
    try:
        with counter:
            fn()
    finally:
        TorchAdapter.bn_swish = fused
    return counter.get_total_flops() / 1e9


def layer_flops(n: int, k: int, c: int, d: int, cin: int | None = None,
                cout: int | None = None) -> float:
    """FLOPs of one LieConv layer: weight net 2·N·k·(32d + 32·32 + 32·16),
    contraction 2·N·k·C·16, output linear 2·N·16·C_in·C_out."""
    cin = c if cin is None else cin
    cout = c if cout is None else cout
    return 2 * n * k * (32 * d + 32 * 32 + 32 * 16) + 2 * n * k * cin * 16 + 2 * n * 16 * cin * cout


# --- host inputs ---------------------------------------------------------------------------------

def image_batch(bs: int = 25, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic RotMNIST batch: coords (bs, 648, 2), values (bs, 648, 1), mask, labels (bs,)."""
    gen = np.random.default_rng(seed)
    xy = image_grid()
    assert xy.shape[0] == 648, xy.shape
    coords = np.broadcast_to(xy, (bs, *xy.shape)).copy()
    values = gen.uniform(0, 1, size=(bs, xy.shape[0], 1)) * (gen.uniform(size=(bs, xy.shape[0], 1))
                                                             < 0.2)
    return coords, values, np.ones((bs, xy.shape[0]), bool), gen.integers(0, 10, size=bs)


def molecule_batch(bs: int = 32, n: int = 29, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """QM9-like batch: bs molecules padded to n atoms (9..n atoms each), positions ~ N(0, 1.5²) Å,
    15 features one_hot(H, C, N, O, F) ⊗ [1, z/9, (z/9)²], mask = charge > 0, targets (bs, 1)."""
    gen = np.random.default_rng(seed)
    charges = np.array([1, 6, 7, 8, 9])
    coords = gen.normal(scale=1.5, size=(bs, n, 3))
    natoms = gen.integers(9, n + 1, size=bs)
    z = charges[gen.integers(0, 5, size=(bs, n))] * (np.arange(n)[None, :] < natoms[:, None])
    return coords, molecule_features(z), z > 0, gen.normal(size=(bs, 1))


def point_cloud(n: int, d: int = 3, bs: int = 1, seed: int = 0) -> np.ndarray:
    """Uniform points in the unit cube, (bs, n, d)."""
    return np.random.default_rng(seed).uniform(size=(bs, n, d))


# --- the paper workloads ----------------------------------------------------------------------

def image_model(group_name: str) -> Any:
    """The RotMNIST LieResNet (paper config; FPS indices cached): T(2) or SE(2) (α = 0.05)."""
    group = {"T2": T(2), "SE2": SE2(0.05)}[group_name]
    return image_lieresnet(group, cache=True)


def molecule_model(group_name: str) -> Any:
    """The QM9-like LieResNet: T(3) k=256, 6 layers, nbhd 100, fill 1; SE(3): α = 0.2,
    liftsamples 4, nbhd 25, fill 0.5."""
    return molecule_lieresnet({"T3": T(3), "SE3": SE3(0.2)}[group_name], k=256)


WORKLOADS = ["qm9_T3", "qm9_SE3", "rotmnist_T2", "rotmnist_SE2"]


def workload(name: str) -> tuple[Any, tuple[np.ndarray, ...], np.ndarray, str]:
    """model, host inputs (coords, values, mask), host targets, loss ('l1' | 'xent')."""
    kind, group = name.split("_")
    if kind == "qm9":
        c, v, m, y = molecule_batch()
        return molecule_model(group), (c, v, m), y, "l1"
    c, v, m, y = image_batch()
    return image_model(group), (c, v, m), y, "xent"


class Runner:
    """Forward and training-step closures for a model on one backend (float32 unless given).

    forward(): eval-mode forward (torch under no_grad; jax jitted). step(): one training step of
    the training engine's trainer — loss, gradient and an Adam update (torch.optim.Adam; jax
    value_and_grad + optax.adam, jitted), lr 3e-3, from the host batch.

    Every step after the first starts from the state the first step left (its BN running
    statistics, LieConv radii and the cached FPS indices of the image models); the new state of
    each step is kept in ``last_state`` only. Carrying every step's state over would grow the
    radii by the controller's update on every call (RotMNIST's last layer by ~0.3 per step), so
    each repeat would time a different workload, more pairs in the balls each time. Parameters do
    move (Adam), which does not change the work.
    """

    def __init__(self, b: Bench, model: Any, inputs: tuple, targets: np.ndarray, loss: str,
                 dtype: str = "float32", seed: int = 0):
        self.b, self.model, self.loss, self.seed, self.dtype = b, model, loss, seed, dtype
        self.host = tuple(np.asarray(a) for a in inputs)
        self.host_targets = np.asarray(targets)
        self.params, self.state = model.init(seed, dtype, xp=b.xp, device=b.device)
        c, v, m = inputs
        self.inputs = (b.asarray(c, dtype), b.asarray(v, dtype), b.asarray(m))
        self.targets = b.asarray(targets, dtype if loss == "l1" else None)
        self._fwd = None
        self._step = None
        self.calls = 0
        self.last_state: Any = None
        self._step_state: Any = None  # the state every step after the first starts from

    # forward
    def forward(self) -> Any:
        """Eval-mode forward. The new state is kept: in eval mode it differs from the old one only
        by the cached FPS indices (image models, cache=True), as the original module kept them."""
        b = self.b
        self.calls += 1
        if b.name == "jax":
            import jax

            if self._fwd is None:
                from lieconv_jax import JaxDraws

                model = self.model
                self._fwd = jax.jit(lambda p, s, x, key: model.apply(p, s, x, train=False,
                                                                     rng=JaxDraws(key)))
            out, self.state = self._fwd(self.params, self.state, self.inputs,
                                        jax.random.key(self.calls))
            return out
        with b.no_grad():
            out, self.state = self.model.apply(self.params, self.state, self.inputs, train=False,
                                               rng=self.calls)
        return out

    # training step
    def _loss_xp(self, xp: Any, out: Any, targets: Any = None) -> Any:
        targets = self.targets if targets is None else targets
        if self.loss == "l1":
            return xp.mean(xp.abs(out - targets))
        # cross-entropy with integer labels, written in the array API
        mx = xp.max(out, axis=-1, keepdims=True)
        lse = xp.log(xp.sum(xp.exp(out - mx), axis=-1)) + mx[..., 0]
        classes = xp.arange(out.shape[-1], dtype=targets.dtype, device=self.b.device)
        onehot = xp.astype(targets[:, None] == classes[None, :], out.dtype)
        return xp.mean(lse - xp.sum(out * onehot, axis=-1))

    def step(self) -> Any:
        """One step of the training engine's trainer (:func:`lieconv_core.app.training.
        make_trainer`: the task's loss, its gradient and an Adam update) on the host batch."""
        self.b.require_grad()
        self.calls += 1
        tr = self._trainer()
        if self._step_state is not None:
            self._restore(tr, self._step_state)
        loss = tr.step(self._batch, self.calls)
        self.last_state = tr.state.tree() if self.b.name == "torch" else tr.state
        if self._step_state is None:
            self._step_state = _detach(self.last_state) if self.b.name == "torch" else tr.state
        return loss

    def _trainer(self) -> Any:
        if self._step is None:
            from lieconv_core.app.training import make_trainer
            from lieconv_core.tasks.clouds import CloudTask

            cfg = {"kind": "regress" if self.loss == "l1" else "classify"}
            fn = CloudTask().loss_fn(self.model, cfg, self.b.name)
            params, state = self.model.init_host(np.random.default_rng(self.seed))
            device = self.b.spec.partition(":")[2] or None
            self._step = make_trainer(self.b.name, fn, params, state, lr=3e-3,
                                      total_steps=10**9, dtype=self.dtype, device=device)
            key = "targets" if self.loss == "l1" else "labels"
            self._batch = {"coords": self.host[0], "values": self.host[1],
                           "mask": self.host[2], key: self.host_targets}
        return self._step

    def _restore(self, tr: Any, state: Any) -> None:
        if self.b.name == "torch":
            from lieconv_torch.nn import _copy_into

            _copy_into(tr.state, state)
        else:
            tr.state = state


def _detach(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _detach(v) for k, v in tree.items()}
    return tree.detach().clone()


def run_synced(fn: Any, b: Bench) -> Any:
    """Call fn and synchronise on its result (for asv time_ bodies)."""
    out = fn()
    b.sync(out)
    return out


def finite_or_nan(x: float) -> float:
    return x if math.isfinite(x) else float("nan")
