"""asv benchmark of the springs training step of the paper: HLieResNet T(2), k=384,
4 layers, batch 200, float32; one step = 5-point RK4 rollout (each vector field a gradient of the
learned H) + backward (double backprop) + Adam, on torch (eager) and jax (jitted step).

:class:`SpringsOriginal` times the original implementation's step on the same machine.
``setup`` builds the data, model and optimizer and runs one warm-up step (jax compiles there).
"""

from __future__ import annotations

import numpy as np

from lieconv_core.data import springs as S
from lieconv_core.dynamics import make_model

from ._original import original_modules

BATCH = 200
#: torch:cuda / jax:gpu are skipped where absent
SPECS = ["torch:cpu", "jax:cpu", "torch:cuda", "jax:gpu"]


class _Steps:
    """The springs trainer of the training engine (:func:`lieconv_core.app.springs.trainer`)
    behind the (z, sys, ts) calls these benchmarks make."""

    def __init__(self, backend: str, model, trainer):
        self.backend, self.model, self.trainer = backend, model, trainer

    def step(self, z, sys, ts):
        return self.trainer.step({"z": z, "sys": sys})

    def rollout(self, z0, sys, ts):
        from lieconv_core.tasks import springs as SP

        return SP.rollout(self.trainer, self.backend, self.model, z0, sys, ts)


def _trainer(spec: str, k: int = 384, num_layers: int = 4, compile: bool = False):
    backend, _, device = spec.partition(":")
    if backend not in ("torch", "jax"):
        raise NotImplementedError(spec)
    try:
        __import__(backend)
    except ImportError as exc:
        raise NotImplementedError(f"{spec}: {exc}") from exc
    from lieconv_core.app import springs as springs_app
    from lieconv_core.app.training.engine import resolve_device

    try:
        resolve_device(backend, device or "cpu")
    except (RuntimeError, ValueError) as exc:
        raise NotImplementedError(f"{spec}: {exc}") from exc
    model = make_model("hlieconv", group="T2", k=k, num_layers=num_layers)
    host = model.init_host(np.random.default_rng(0))
    kw = {"compile": True} if compile else {}
    tr = springs_app.trainer(backend, model, host, lr=1e-3, total_steps=10_000, dtype="float32",
                    device=device or "cpu", **kw)
    return _Steps(backend, model, tr)


def _batch():
    tr = S.make_splits(n_train=BATCH, n_val=1, n_test=1, seed=0)["train"]
    return tr.z.astype(np.float32), tr.sys.astype(np.float32), tr.ts


class SpringsTrainStep:
    """One training step of HLieConv-T(2) at the paper's size."""

    params = (SPECS,)
    param_names = ("backend",)
    number = 1
    repeat = 3
    warmup_time = 0.0
    timeout = 1800

    def setup(self, spec):
        self.z, self.sys, self.ts = _batch()
        self.trainer = _trainer(spec)
        self.trainer.step(self.z, self.sys, self.ts)  # warm-up (jax: compile)

    def time_train_step(self, spec):
        self.trainer.step(self.z, self.sys, self.ts)  # returns a float: synchronised

    def track_flop_bound_fraction(self, spec):
        """The step's FLOP bound as a percentage of its time: the matrix-multiply GFLOP of one
        step (counted on torch:cpu, :class:`SpringsFlops`; the same model, so the same count
        for jax, whose rematerialisation adds work the bound does not count) over this
        backend's 2048³ GEMM rate, with the step and the GEMM timed in turns in one run
        (:func:`interleaved_medians`), so that a slow phase of a shared machine slows both.
        100% would mean every FLOP of the step at the GEMM rate."""
        from ._common import Bench, gemm_fn, interleaved_medians

        gflop = _step_gflop()
        b = Bench.get(spec)
        step = lambda: self.trainer.step(self.z, self.sys, self.ts)  # noqa: E731
        t_step, t_gemm = interleaved_medians([step, gemm_fn(b)], b, rounds=4)
        return 100 * (gflop * 1e9 / (2 * 2048**3 / t_gemm)) / t_step

    track_flop_bound_fraction.unit = "%"


class SpringsCompiledTrainStep:
    """:class:`SpringsTrainStep` on torch:cpu with ``TorchTrainer(compile=True)``: the loss and
    its parameter gradients as one ``torch.compile``-d ``torch.func`` function. ``setup``
    compiles (about 5 minutes with a cold inductor cache, half a minute warm)."""

    number = 1
    repeat = 3
    warmup_time = 0.0
    timeout = 3600

    def setup(self):
        self.z, self.sys, self.ts = _batch()
        self.trainer = _trainer("torch:cpu", compile=True)
        self.trainer.step(self.z, self.sys, self.ts)  # compiles

    def time_train_step(self):
        self.trainer.step(self.z, self.sys, self.ts)


def _step_gflop() -> float:
    """Matrix-multiply GFLOP of one training step at the paper's size (torch FlopCounterMode);
    NotImplementedError without torch."""
    from ._common import count_gflop

    z, sys, ts = _batch()
    trainer = _trainer("torch:cpu")
    trainer.step(z, sys, ts)
    return count_gflop(lambda: trainer.step(z, sys, ts))


class SpringsFlops:
    """Matrix-multiply GFLOP of one training step on torch:cpu (FlopCounterMode): over the
    measured GEMM rate, the least time a step can take here (its "FLOP bound")."""

    timeout = 1800

    def track_train_step_gflop(self):
        return _step_gflop()

    track_train_step_gflop.unit = "GFLOP"


class SpringsVectorField:
    """One evaluation of the learned vector field (forward + the inner gradient), batch 200."""

    params = (SPECS,)
    param_names = ("backend",)
    number = 1
    repeat = 5
    warmup_time = 0.0
    timeout = 1200

    def setup(self, spec):
        z, sys, ts = _batch()
        self.trainer = _trainer(spec)
        self.z0, self.sys, self.ts2 = z[:, 0], sys, ts[:2]
        self.trainer.rollout(self.z0, self.sys, self.ts2)

    def time_vector_field_rk4_step(self, spec):
        """One RK4 step = 4 vector-field evaluations (eval mode, no parameter gradient)."""
        self.trainer.rollout(self.z0, self.sys, self.ts2)


def _original_step(z: np.ndarray, sysp: np.ndarray, ts: np.ndarray):
    """A closure of one training step of the original implementation on the batch (z, sysp, ts)
    of :func:`_batch`: its ``HLieResNet`` (T(2), k = 384, 4 layers, as the original README's
    springs command builds it) and ``IntegratedDynamicsTrainer`` (torchdiffeq RK4 over ts, each
    vector field an ``autograd.grad`` with ``create_graph``, MSE), Adam lr 1e-3, float32, torch
    CPU. The original's layout: z0 (bs, 2·n·d) = [q flattened, p flattened], ts (bs, T), targets
    (bs, T, 2·n·d). NotImplementedError where :data:`ORIGINAL_ENV` is unset or the package does
    not import from there."""
    import torch

    trainer_mod, groups = original_modules("dynamicsTrainer", "lieGroups")
    HLieResNet, IntegratedDynamicsTrainer = (trainer_mod.HLieResNet,
                                             trainer_mod.IntegratedDynamicsTrainer)
    T = groups.T
    torch.manual_seed(0)
    model = HLieResNet(sys_dim=2, d=2, group=T(2), k=384, num_layers=4)
    trainer = IntegratedDynamicsTrainer(model, {}, lambda p: torch.optim.Adam(p, lr=1e-3),
                                        lambda e: 1)
    zt = torch.as_tensor(z)
    bs, steps = zt.shape[:2]
    target = torch.cat([zt[:, :, 0].reshape(bs, steps, -1), zt[:, :, 1].reshape(bs, steps, -1)],
                       dim=-1)
    z0 = target[:, 0]  # [q, p] flattened at the first time point
    times = torch.as_tensor(np.asarray(ts, dtype=np.float32)).expand(bs, -1)
    batch = ((z0, torch.as_tensor(sysp), times), target)
    return lambda: float(torch.as_tensor(trainer.step(batch)).detach())


class SpringsOriginal:
    """The original implementation's springs training step on this machine, and this library's
    torch step as a multiple of its speed, both timed in turns on the same machine, so the ratio
    does not depend on the machine's speed the way a reference time does. Runs only where
    ``LIECONV_ORIGINAL_SRC`` names a directory the original imports from (:data:`ORIGINAL_ENV`);
    skipped otherwise."""

    number = 1
    repeat = 3
    warmup_time = 0.0
    timeout = 1800

    def setup(self):
        self.z, self.sys, self.ts = _batch()
        self.original = _original_step(self.z, self.sys, self.ts)
        self.original()  # warm-up

    def time_original_train_step(self):
        self.original()

    def track_speedup_torch(self):
        """Original step time / this library's torch:cpu step time, timed in turns in one
        process (:func:`interleaved_medians`), so that a slow phase of the machine slows both."""
        return self._speedup(_trainer("torch:cpu"))

    track_speedup_torch.unit = "x"

    def track_speedup_torch_compiled(self):
        """As :meth:`track_speedup_torch`, for ``TorchTrainer(compile=True)`` (compiled first,
        untimed)."""
        trainer = _trainer("torch:cpu", compile=True)
        trainer.step(self.z, self.sys, self.ts)
        return self._speedup(trainer)

    track_speedup_torch_compiled.unit = "x"

    def _speedup(self, trainer) -> float:
        from ._common import Bench, interleaved_medians

        ours = lambda: trainer.step(self.z, self.sys, self.ts)  # noqa: E731
        t_orig, t_ours = interleaved_medians([self.original, ours], Bench.get("torch:cpu"),
                                             rounds=3)
        return t_orig / t_ours
