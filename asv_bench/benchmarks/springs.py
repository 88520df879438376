"""asv benchmark of the springs training step of the paper (DESIGN §8): HLieResNet T(2), k=384,
4 layers, batch 200, float32; one step = 5-point RK4 rollout (each vector field a gradient of the
learned H) + backward (double backprop) + Adam, on torch (eager) and jax (jitted step).

The original implementation took 8.7 s per step on a 2-core CPU (torch 2.13 CPU, 2 threads).
``setup`` builds the data, model and optimizer and runs one warm-up step (jax compiles there).
"""

from __future__ import annotations

import numpy as np

from lieconv_core.data import springs as S
from lieconv_core.dynamics import make_model

BATCH = 200
#: torch:cuda / jax:gpu are skipped where absent
SPECS = ["torch:cpu", "jax:cpu", "torch:cuda", "jax:gpu"]


def _trainer(spec: str, k: int = 384, num_layers: int = 4):
    backend, _, device = spec.partition(":")
    try:
        if backend == "torch":
            from lieconv_torch.train import TorchTrainer as cls
        elif backend == "jax":
            from lieconv_jax.train import JaxTrainer as cls
        else:
            raise NotImplementedError(spec)
    except ImportError as exc:
        raise NotImplementedError(f"{spec}: {exc}") from exc
    from lieconv_core.train import resolve_device

    try:
        dev = resolve_device(backend, device or "cpu")
    except (RuntimeError, ValueError) as exc:
        raise NotImplementedError(f"{spec}: {exc}") from exc
    model = make_model("hlieconv", group="T2", k=k, num_layers=num_layers)
    host = model.init_host(np.random.default_rng(0))
    return cls(model, host, 1e-3, 10_000, dtype="float32", device=dev)


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
        The issue's goal, ≤ 2.9 s where the bound is ~2 s, is ≥ ~69% here."""
        from ._common import Bench, gemm_fn, interleaved_medians

        gflop = _step_gflop()
        b = Bench.get(spec)
        step = lambda: self.trainer.step(self.z, self.sys, self.ts)  # noqa: E731
        t_step, t_gemm = interleaved_medians([step, gemm_fn(b)], b, rounds=4)
        return 100 * (gflop * 1e9 / (2 * 2048**3 / t_gemm)) / t_step

    track_flop_bound_fraction.unit = "%"


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
    measured GEMM rate, the least time a step can take here (the issue's "FLOP bound")."""

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
