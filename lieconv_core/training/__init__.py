"""The training engine (:mod:`.engine`), run folders (:mod:`.rundir`), minibatches
(:mod:`.loader`), the learning-rate schedule (:mod:`.schedule`) and plots (:mod:`.plots`)."""

from .engine import evaluate, fit, load_run, make_trainer, run_outputs, runner_for
from .rundir import RunDir, RunDirError

__all__ = ["fit", "evaluate", "load_run", "make_trainer", "run_outputs", "runner_for",
           "RunDir", "RunDirError"]
