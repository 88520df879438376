"""Plots a run folder holds: training curves for every task (task-specific ones live with
their tasks). matplotlib is optional: without it no plot is written."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot with the non-interactive Agg backend, or None if not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(run: Any, history: dict, primary: str) -> str | None:
    """``curves.png``: the training loss per step and the validation metric against training
    minutes."""
    plt = pyplot()
    if plt is None or not history["step_loss"]:
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(range(1, len(history["step_loss"]) + 1), history["step_loss"], lw=0.8)
    a.set_xlabel("optimizer step")
    a.set_ylabel("training loss")
    a.set_yscale("log")
    evals = history["evals"]
    b.plot([e["train_seconds"] / 60 for e in evals], [e["val"][primary] for e in evals], "o-")
    b.set_xlabel("training minutes")
    b.set_ylabel(f"validation {primary}")
    fig.tight_layout()
    path = run.save_figure("curves.png", fig)
    plt.close(fig)
    return str(path)
