"""The training engine (:mod:`.engine`), run folders (:mod:`.rundir`), minibatches
(:mod:`.loader`), the learning-rate schedule (:mod:`.schedule`), plots (:mod:`.plots`) and
runs side by side (:mod:`.comparison`)."""

from .comparison import compare_runs, runs_table, summarise_run
from .engine import evaluate, fit, load_run, make_trainer, run_outputs, runner_for
from .rundir import RunDir, RunDirError

__all__ = ["fit", "evaluate", "load_run", "make_trainer", "run_outputs", "runner_for",
           "RunDir", "RunDirError", "compare_runs", "summarise_run", "runs_table"]
