"""Minibatches on the host: a seeded shuffle per epoch, augmentation, and a background thread
that prepares the next batches while the trainer runs the current step."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ...tasks.base import Dataset


def epoch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch: a permutation drawn from (seed, epoch), cut into full batches
    (the remainder, at most batch_size − 1 samples, waits for a later epoch's shuffle)."""
    perm = np.random.default_rng([seed, 2, epoch]).permutation(n)
    full = (n // batch_size) * batch_size
    return [perm[i:i + batch_size] for i in range(0, full, batch_size)]


def step_seed(seed: int, step: int) -> int:
    """The seed of the random draws (lifts, FPS starts, neighbourhood subsets) of a step."""
    return int(np.random.default_rng([seed, 3, step]).integers(2**31 - 1))


class Batches:
    """Iterates the augmented batches of one epoch from batch ``start`` on, prepared by a
    background thread (``prefetch`` batches ahead; 0: in the caller's thread).

    ``augment(batch, gen)`` gets a generator seeded by (seed, epoch, batch index), so a resumed
    epoch sees the same batches. :attr:`wait_seconds` adds up the time the caller waited."""

    def __init__(self, data: Dataset, order: list[np.ndarray], seed: int, epoch: int,
                 augment: Callable[[dict, np.random.Generator], dict] | None = None,
                 start: int = 0, prefetch: int = 2):
        self.data, self.order, self.seed, self.epoch = data, order, seed, epoch
        self.augment, self.start, self.prefetch = augment, start, prefetch
        self.wait_seconds = 0.0

    def make(self, i: int) -> dict:
        batch = self.data.take(self.order[i])
        if self.augment is not None:
            batch = self.augment(batch, np.random.default_rng([self.seed, 4, self.epoch, i]))
        return batch

    def __len__(self) -> int:
        return max(len(self.order) - self.start, 0)

    def __iter__(self) -> Iterator[dict]:
        import time

        if self.prefetch <= 0:
            for i in range(self.start, len(self.order)):
                yield self.make(i)
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def work() -> None:
            try:
                for i in range(self.start, len(self.order)):
                    if stop.is_set():
                        return
                    q.put(("ok", self.make(i)))
                q.put(("end", None))
            except BaseException as exc:  # handed to the caller's thread
                q.put(("error", exc))

        thread = threading.Thread(target=work, daemon=True, name="lieconv-batches")
        thread.start()
        try:
            while True:
                t0 = time.perf_counter()
                kind, item = q.get()
                self.wait_seconds += time.perf_counter() - t0
                if kind == "end":
                    return
                if kind == "error":
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(0.05)


def chunks(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def progress_bar(progress: bool, total: int, desc: str, unit: str = "sample",
                 initial: int = 0) -> Any:
    """A tqdm bar (rate and ETA in ``unit``), or None when ``progress`` is off."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=min(initial, total), unit=unit, desc=desc,
                dynamic_ncols=True)
