"""How scoring executes: in this process by default, or split over worker processes (`--workers N`) for
models whose inference runs on one core (scikit-learn), each worker holding its own copy of the model.

Only the runner and the table stream use this; the scoring core (`core.py`) stays data in, data out.
Torch models need no workers: they already use every usable core in one process.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

import pandas as pd

_WORKER_MODEL = None


def _init_worker(model) -> None:
    global _WORKER_MODEL
    _WORKER_MODEL = model


def _call(method: str, texts):
    return getattr(_WORKER_MODEL, method)(texts)


def scoring_workers(workers: int | None) -> int:
    """Processes to score with: `workers` if given, else one. Torch models use every core in-process, and
    the TF-IDF path is vectorised Arrow/numpy work that scored as fast in one process as in two workers on
    2 cores, at a third of the memory (each worker holds its own model and interpreter). More processes
    (`--workers`) can pay for a scikit-learn model on a machine with many idle cores."""
    return workers or 1


class WorkerPool:
    """`workers` spawned processes, each with its own copy of `model`, started on first use."""

    def __init__(self, model, workers: int):
        self.model = model
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, method: str, texts) -> Future:
        """`model.<method>(texts)` in a worker."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.model,))
        return self._pool.submit(_call, method, texts)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


class ParallelScorer:
    """`score_frame` split over the workers of a WorkerPool."""

    MIN_PARALLEL = 256  # smaller batches are scored in-process: starting workers costs seconds

    def __init__(self, model, workers: int):
        self.model = model
        self.schema = model.schema
        self.pool = WorkerPool(model, workers)

    def score_frame(self, texts: list[str]) -> pd.DataFrame:
        if len(texts) < self.MIN_PARALLEL:
            return self.model.score_frame(texts)
        size = -(-len(texts) // self.pool.workers)
        futures = [self.pool.submit("score_frame", texts[i:i + size]) for i in range(0, len(texts), size)]
        return pd.concat([f.result() for f in futures], ignore_index=True)

    def close(self) -> None:
        self.pool.close()


def make_scorer(model, workers: int | None):
    """The model itself, or a ParallelScorer over `scoring_workers` processes."""
    workers = scoring_workers(workers)
    return ParallelScorer(model, workers) if workers > 1 else model
