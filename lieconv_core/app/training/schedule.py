"""The learning-rate schedule every trainer follows: a linear warm-up from 0 over
``warmup_steps`` optimizer steps, then a cosine decay to 0 at ``total_steps``.

:func:`lr_at` is the host formula (the torch trainer sets it before each step); the jax trainer
uses ``optax.warmup_cosine_decay_schedule`` / ``optax.cosine_decay_schedule``, which compute the
same numbers (tests/test_tasks.py compares them).
"""

from __future__ import annotations

import math


def lr_at(lr: float, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """The learning rate of optimizer step ``step`` (0-based)."""
    total_steps, warmup_steps = max(int(total_steps), 1), max(int(warmup_steps), 0)
    if warmup_steps and step < warmup_steps:
        return lr * step / warmup_steps
    decay = max(total_steps - warmup_steps, 1)
    t = min(step - warmup_steps, decay) / decay
    return lr * 0.5 * (1 + math.cos(math.pi * t))
