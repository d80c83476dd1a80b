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
    replace a process pool that broke because a worker died (its jobs in flight answer 503).

    `submit` runs on the event loop thread (run_in_executor calls it there), so it never builds a
    pool itself: spawning and warming worker processes takes from 0.1 s to seconds, and every
    request would wait for it. A thread builds the replacement; jobs submitted meanwhile wait for
    it (in a future of their own), and the loop goes on serving everything else."""

    def __init__(self, factory: Callable[[], Executor], kind: str, workers: int) -> None:
        self.factory, self.kind, self.workers = factory, kind, workers
        self.inner = factory()
        self._pending = 0
        self._lock = threading.Lock()  # done-callbacks run on the pool's threads
        self._replacement: Future[Executor] | None = None  # set while a thread builds one
        self._builder: threading.Thread | None = None
        self._closed = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        replacement = self._replacement
        future: Future[T]
        if replacement is None:
            try:
                future = self.inner.submit(fn, *args, **kwargs)
            except BrokenExecutor:
                replacement = self._replace()
        if replacement is not None:
            future = Future()
            replacement.add_done_callback(lambda ready: _submit_to(ready, future, fn, args, kwargs))
        with self._lock:
            self._pending += 1
        future.add_done_callback(self._done)
        return future

    def _replace(self) -> Future[Executor]:
        """The replacement being built, starting a thread to build it unless one already is."""
        with self._lock:
            if self._replacement is None:
                self._replacement = Future()
                broken = self.inner
                self._builder = threading.Thread(
                    target=self._build, args=(broken, self._replacement), name="cpu-pool-replace"
                )
                self._builder.start()
            return self._replacement

    def _build(self, broken: Executor, replacement: Future[Executor]) -> None:
        broken.shutdown(wait=False, cancel_futures=True)
        try:
            pool = self.factory()
        except BaseException as exc:  # jobs waiting get a 503; the next submit tries again
            with self._lock:
                self._replacement = None
            replacement.set_exception(BrokenExecutor(f"replacing the CPU pool failed: {exc!r}"))
            return
        with self._lock:
            closed = self._closed
            if not closed:
                self.inner, self._replacement = pool, None
        if closed:  # shut down while this thread was building: leave no worker behind
            pool.shutdown(wait=True, cancel_futures=True)
            replacement.set_exception(BrokenExecutor("the CPU pool is shut down"))
        else:
            replacement.set_result(pool)

    def _done(self, _: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            builder = self._builder
        if builder is not None and wait:
            builder.join()
        self.inner.shutdown(wait=wait, cancel_futures=cancel_futures)

    def stats(self) -> dict[str, object]:
        pending = self._pending
        return {
            "kind": self.kind,
            "workers": self.workers,
            "pending": pending,
            "queued": max(0, pending - self.workers),
            "replacing": self._replacement is not None,
        }


def _submit_to(
    ready: Future[Executor],
    outer: Future[T],
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    """Run a job that waited for the replacement pool; its result or error goes to `outer`."""
    if not outer.set_running_or_notify_cancel():
        return  # the request went away while waiting (its asyncio future was cancelled)
    try:
        inner = ready.result().submit(fn, *args, **kwargs)
    except BaseException as exc:  # the replacement failed, or broke again already: a 503
        outer.set_exception(exc)
        return
    inner.add_done_callback(lambda done: _copy(done, outer))


def _copy(done: Future[T], outer: Future[T]) -> None:
    exc = done.exception() if not done.cancelled() else BrokenExecutor("job cancelled")
    if exc is not None:
        outer.set_exception(exc)
    else:
        outer.set_result(done.result())


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
