"""Tasks: what the training engine (:mod:`lieconv_core.app.training`) trains.

``springs`` (Hamiltonian dynamics), ``rotmnist`` (rotated digits), ``qm9`` (molecules) and
``pointcloud`` (your own clouds, classification or regression). :func:`get_task` returns one by
name; each module documents its data and model configs.
"""

from __future__ import annotations

import importlib

from .base import DataError, Dataset, Task

#: task name -> "module:class"
TASKS = {"springs": "springs:SpringsTask", "rotmnist": "rotmnist:RotMNISTTask",
         "qm9": "qm9:QM9Task", "pointcloud": "pointcloud:PointCloudTask"}


def get_task(name: str) -> Task:
    """The task called ``name``.

    Parameters
    ----------
    name : str
        One of ``TASKS``: ``"springs"``, ``"rotmnist"``, ``"qm9"``, ``"pointcloud"``.

    Returns
    -------
    Task
        A new instance of the task.

    Raises
    ------
    ValueError
        For an unknown name, listing the tasks.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    mod, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), cls)()


__all__ = ["TASKS", "get_task", "Task", "Dataset", "DataError"]
