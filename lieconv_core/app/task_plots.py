"""Plots of evaluations: RotMNIST digits at several rotations with their predicted labels,
predicted against true values (regression), and the confusion matrix (classification)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .training.plots import pyplot


def rotmnist_grid(run: Any, task: Any, cfg: dict, model: Any, runner: Any, data: Any,
                  backend: str, n_digits: int = 6, n_angles: int = 6) -> list[str]:
    """``rotations.png``: ``n_digits`` test digits, each rotated by ``n_angles`` angles, with
    the predicted label over each (red where wrong)."""
    from ..nn.presets import image_grid
    from .training.engine import run_outputs

    plt = pyplot()
    if plt is None:
        return []
    sub = data.subset(slice(0, n_digits))
    angles = np.linspace(0, 2 * np.pi, n_angles, endpoint=False)
    batch = task.inputs(sub.take(slice(None)), cfg)
    grid = image_grid()
    rows = []
    for a in angles:
        c, s = np.cos(a), np.sin(a)
        rot = np.array([[c, -s], [s, c]])
        rows.append({**batch, "coords": np.einsum("ij,bnj->bni", rot, batch["coords"])})
    from ..tasks.base import Dataset

    moved = Dataset({k: np.concatenate([r[k] for r in rows]) for k in ("coords", "values",
                                                                         "mask")})
    logits = run_outputs(runner, task.predict_fn(model, cfg, backend), moved, len(sub))
    pred = np.argmax(logits, -1).reshape(n_angles, n_digits)
    fig, axes = plt.subplots(n_digits, n_angles, figsize=(1.4 * n_angles, 1.5 * n_digits))
    for j in range(n_angles):
        for i in range(n_digits):
            ax = axes[i, j]
            pts = rows[j]["coords"][i]
            ax.scatter(pts[:, 1], -pts[:, 0], c=batch["values"][i, :, 0], s=4, cmap="gray_r",
                       marker="s")
            ok = pred[j, i] == sub["labels"][i]
            ax.set_title(f"{pred[j, i]}", color="black" if ok else "red", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
    del grid
    fig.suptitle("predicted label per rotation (red: wrong)", fontsize=10)
    fig.tight_layout()
    path = run.save_figure("rotations.png", fig)
    plt.close(fig)
    return [str(path)]


def parity(run: Any, pred: np.ndarray, true: np.ndarray, cfg: dict) -> list[str]:
    """``parity.png``: predicted against true target values."""
    plt = pyplot()
    if plt is None:
        return []
    name = (cfg.get("target_names") or ["target"])[0]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(true, pred, s=3, alpha=0.4)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    unit = cfg.get("unit", "")
    ax.set_xlabel(f"true {name} {unit}".strip())
    ax.set_ylabel(f"predicted {name} {unit}".strip())
    ax.set_title(f"MAE {np.mean(np.abs(pred - true)):.4g} {unit}".strip())
    fig.tight_layout()
    path = run.save_figure("parity.png", fig)
    plt.close(fig)
    return [str(path)]


def confusion(run: Any, logits: np.ndarray, labels: np.ndarray) -> list[str]:
    """``confusion.png``: counts of (true, predicted) classes."""
    plt = pyplot()
    if plt is None:
        return []
    c = logits.shape[-1]
    m = np.zeros((c, c), int)
    np.add.at(m, (labels, np.argmax(logits, -1)), 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(m, cmap="Blues")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im)
    fig.tight_layout()
    path = run.save_figure("confusion.png", fig)
    plt.close(fig)
    return [str(path)]
