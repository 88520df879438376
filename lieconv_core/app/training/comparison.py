"""Several finished (or running) training runs side by side: the validation metric against
training minutes in one plot, and a table of what each run reached.

``lieconv compare RUN [RUN ...] --out DIR`` writes ``compare.png`` and ``compare.json``; the
typical use is the same model trained on two backends, or two groups, or two widths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...tasks import get_task
from .plots import pyplot
from .rundir import CONFIG, RunDir, read_json


def summarise_run(path: str | Path) -> dict[str, Any]:
    """What one run folder reached, from its ``config.json`` and ``history.json``.

    Parameters
    ----------
    path : str or Path
        A run folder written by ``lieconv train`` (it may still be training).

    Returns
    -------
    dict
        ``run`` (the folder), ``task``, ``backend``, ``group``, ``metric`` (the task's primary
        validation metric), ``maximize``, ``best`` (its best value), ``best_minutes`` (training
        minutes when it was reached), ``minutes`` (training minutes so far), ``steps``,
        ``samples_per_second`` and ``curve``: a list of (training minutes, metric) pairs.

    Raises
    ------
    ValueError
        If the folder holds no run, or its history has no evaluation yet.
    """
    folder = Path(path)
    if not (folder / CONFIG).is_file():
        raise ValueError(f"{folder}: no {CONFIG} (not a run folder written by lieconv train)")
    config = read_json(folder / CONFIG, "run config")
    history = read_json(folder / "history.json", "run history")
    task = get_task(config["task"])
    metric, maximize = task.primary_for(config["model"])
    curve = [(e["train_seconds"] / 60, float(e["val"][metric])) for e in history["evals"]]
    if not curve:
        raise ValueError(f"{folder}: the run has no validation result yet")
    pick = max if maximize else min
    best_minutes, best = pick(curve, key=lambda p: p[1])
    seconds = float(history["train_seconds"])
    samples = len(history["step_loss"]) * int(config["train"]["batch_size"])
    return {"run": str(folder), "task": config["task"], "backend": config.get("backend"),
            "group": config["model"].get("group"), "metric": metric, "maximize": maximize,
            "best": best, "best_minutes": best_minutes, "minutes": seconds / 60,
            "steps": len(history["step_loss"]),
            "samples_per_second": samples / seconds if seconds > 0 else None,
            "curve": curve}


def label(row: dict[str, Any]) -> str:
    """A short legend entry: folder name, backend and group."""
    return f"{Path(row['run']).name} ({row['backend']}, {row['group']})"


def compare_runs(runs: list[str | Path], out: str | Path, overwrite: bool = False
            ) -> list[dict[str, Any]]:
    """Summarise ``runs`` (:func:`summarise_run`) into ``out``: ``compare.json`` (the rows) and,
    with matplotlib, ``compare.png`` (validation metric against training minutes).

    Parameters
    ----------
    runs : list of str or Path
        Run folders of one task (their primary metrics must agree).
    out : str or Path
        Output folder (the run-folder rules apply: new, empty, or ``overwrite``).
    overwrite : bool
        Replace an earlier ``compare.json`` / ``compare.png`` in ``out``.

    Returns
    -------
    list of dict
        One row per run, in the order given.
    """
    rows = [summarise_run(r) for r in runs]
    metrics = {r["metric"] for r in rows}
    if len(metrics) > 1:
        raise ValueError(f"the runs report different metrics ({', '.join(sorted(metrics))}); "
                         f"compare runs of one task")
    with RunDir.open(out, "output", overwrite=overwrite) as run:
        run.write_json("compare.json", {"runs": rows})
        plt = pyplot()
        if plt is not None:
            fig, ax = plt.subplots(figsize=(6, 4))
            for r in rows:
                minutes, values = zip(*r["curve"], strict=True)
                ax.plot(minutes, values, "o-", ms=3, label=label(r))
            ax.set_xlabel("training minutes")
            ax.set_ylabel(f"validation {rows[0]['metric']}")
            ax.legend()
            fig.tight_layout()
            run.save_figure("compare.png", fig)
            plt.close(fig)
    return rows


def runs_table(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`compare_runs` as a text table.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`summarise_run`.

    Returns
    -------
    str
        A header and one line per run: best value, the minute it was reached, training
        minutes, samples per second.
    """
    head = f"{'run':<40}{'metric':>10}{'best':>10}{'at min':>9}{'minutes':>9}{'samples/s':>11}"
    lines = [head]
    for r in rows:
        sps = "-" if r["samples_per_second"] is None else f"{r['samples_per_second']:.1f}"
        lines.append(f"{label(r):<40}{r['metric']:>10}{r['best']:>10.4g}"
                     f"{r['best_minutes']:>9.1f}{r['minutes']:>9.1f}{sps:>11}")
    return "\n".join(lines)
