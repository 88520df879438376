"""The paper workloads: QM9-like T(3) / SE(3) and RotMNIST T(2) / SE(2), exact
configs, float32. Forward = eval-mode forward of one batch; training step = forward in training
mode + loss (L1 / cross-entropy) + backward + Adam (torch.optim.Adam; jax.grad + optax.adam,
jitted). Compilation and the first (FPS-caching) calls happen in setup.

The ``original`` column is the original implementation's model of the same workload on the same
batch (torch, CPU, eager; :mod:`._original`), where ``LIECONV_ORIGINAL_SRC`` is set.
"""

from ._common import BACKENDS, WORKLOADS, Bench, Runner, count_gflop, run_synced, workload
from ._original import ORIGINAL, OriginalRunner


def _runner(spec: str, name: str) -> tuple[Bench, Runner | OriginalRunner]:
    """The backend (torch:cpu for the original) and the runner of one workload."""
    model, inputs, targets, loss = workload(name)
    if spec == ORIGINAL:
        return Bench.get("torch:cpu"), OriginalRunner(name, inputs, targets, loss)
    b = Bench.get(spec)
    return b, Runner(b, model, inputs, targets, loss)


class _Workload:
    """asv settings shared by the workload benchmarks (seconds-long bodies)."""

    params = ([*BACKENDS, ORIGINAL], WORKLOADS)
    param_names = ["backend", "workload"]
    timeout = 1800
    number = 1
    repeat = (1, 3, 60.0)
    warmup_time = 0


class Forward(_Workload):
    def setup(self, spec, name):
        self.b, self.r = _runner(spec, name)
        for _ in range(2):  # compile (jax) and cache the FPS indices (image models)
            self.b.sync(self.r.forward())

    def time_forward(self, spec, name):
        run_synced(self.r.forward, self.b)


class TrainStep(_Workload):
    def setup(self, spec, name):
        self.b, self.r = _runner(spec, name)
        self.b.require_grad()
        for _ in range(2):  # compile (jax; again once the state holds cached FPS indices)
            self.b.sync(self.r.step())

    def time_train_step(self, spec, name):
        run_synced(self.r.step, self.b)


class WorkloadFlops:
    """The matrix-multiply work of each workload (GFLOP, counted by torch's FlopCounterMode; torch
    specs only, the others are skipped): divided by the measured GEMM rate
    (``layer.Layer.track_gemm_gflops``) it is the least time a forward or training step can take
    on this machine — the yardstick for how far a timing is from what the machine allows."""

    params = (BACKENDS, WORKLOADS)
    param_names = ["backend", "workload"]
    timeout = 1800

    def setup(self, spec, name):
        self.b = Bench.get(spec)
        if self.b.name != "torch":
            raise NotImplementedError("FLOPs are counted with torch's FlopCounterMode")
        self.name = name

    def _runner(self):
        model, inputs, targets, loss = workload(self.name)
        return Runner(self.b, model, inputs, targets, loss)

    def track_forward_gflop(self, spec, name):
        r = self._runner()
        r.forward()  # cache the FPS indices first, as the timed forward does
        return count_gflop(r.forward)

    track_forward_gflop.unit = "GFLOP"

    def track_train_step_gflop(self, spec, name):
        r = self._runner()
        r.step()
        return count_gflop(r.step)

    track_train_step_gflop.unit = "GFLOP"


class CompiledForward:
    """The optional torch.compile path: the eval-mode forward of the QM9-like workloads through
    ``torch.compile`` (inductor; compiled in setup, which takes tens of seconds), next to
    ``Forward``'s eager time. QM9-like T(3) takes the dense path and compiles into one graph;
    SE(3) has graph breaks at its random lift and neighbour draws (host draws). Fixed draws
    (rng=0) on every call, so that the compiled code is reused (a new seed is a new constant)."""

    params = (["torch:cpu"], ["qm9_T3", "qm9_SE3"])
    param_names = ["backend", "workload"]
    timeout = 1800
    number = 1
    repeat = (1, 5, 60.0)
    warmup_time = 0

    def setup(self, spec, name):
        self.b = Bench.get(spec)
        if self.b.name != "torch":  # direct.py --backends may hand it any spec
            raise NotImplementedError("torch.compile is torch's")
        import torch

        model, inputs, targets, loss = workload(name)
        r = Runner(self.b, model, inputs, targets, loss)
        fn = torch.compile(lambda p, s, x: model.apply(p, s, x, train=False, rng=0)[0])
        self.call = lambda: fn(r.params, r.state, r.inputs)
        with torch.no_grad():
            for _ in range(2):
                self.call()

    def time_forward(self, spec, name):
        import torch

        with torch.no_grad():
            run_synced(self.call, self.b)
