"""Reading the original implementation's torch checkpoints (``.pt`` pickles of tensors)."""

from __future__ import annotations

import os
from typing import Any

import torch


def load_pt(path: str | os.PathLike) -> Any:
    """The object saved in a torch ``.pt`` file, on the CPU, without running pickled code.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    object
        What was saved (a state_dict, or a checkpoint dict holding one).
    """
    return torch.load(os.fspath(path), map_location="cpu", weights_only=True)
