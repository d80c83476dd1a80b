"""The executor the offload variant sends CPU work to: a process or thread pool, counted."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Callable
from concurrent.futures import (
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from typing import Any, Literal, ParamSpec, TypeVar

from .burn import burn

P = ParamSpec("P")
T = TypeVar("T")


class CountingExecutor(Executor):
    """Wraps a pool to count submitted-but-unfinished jobs (the queue depth /metrics shows) and to
    replace a process pool that broke because a worker died (its jobs in flight answer 503)."""

    def __init__(self, factory: Callable[[], Executor], kind: str, workers: int) -> None:
        self.factory, self.kind, self.workers = factory, kind, workers
        self.inner = factory()
        self._pending = 0
        self._lock = threading.Lock()  # done-callbacks run on the pool's threads

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        try:
            future = self.inner.submit(fn, *args, **kwargs)
        except BrokenExecutor:
            broken, self.inner = self.inner, self.factory()
            broken.shutdown(wait=False, cancel_futures=True)
            future = self.inner.submit(fn, *args, **kwargs)
        with self._lock:
            self._pending += 1
        future.add_done_callback(self._done)
        return future

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)

    def stats(self) -> dict[str, object]:
        pending = self._pending
        return {
            "kind": self.kind,
            "workers": self.workers,
            "pending": pending,
            "queued": max(0, pending - self.workers),
        }


def _ignore_signals() -> None:
    # Ctrl-C / SIGTERM reach the whole process group: let the API finish its in-flight requests
    # and shut the pool down itself, instead of workers dying under them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _process_pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: forking a process that runs an event loop and threads is unsafe.
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_ignore_signals)
    # Start every worker now, so the first requests do not pay the interpreter start-up.
    for f in [pool.submit(burn, 1, "python") for _ in range(workers)]:
        f.result()
    return pool


def make_executor(kind: Literal["process", "thread"], workers: int) -> CountingExecutor:
    if kind == "thread":
        return CountingExecutor(
            lambda: ThreadPoolExecutor(workers, thread_name_prefix="cpu"), kind, workers
        )
    return CountingExecutor(lambda: _process_pool(workers), kind, workers)
