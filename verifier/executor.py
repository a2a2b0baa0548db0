"""Where obligations are solved: one small interface, a serial and a process-pool executor.

Stage: infrastructure. Trusted: no (it only moves self-contained, picklable units of work and
their results). A distributed engine (Dask, Ray) can implement the same ``map`` without
touching the provers.

A unit that fails never becomes a verdict: an exception raised in a worker (other than
cnnproof's own input errors) or a worker that dies is re-raised here as :class:`WorkerFailed`,
which the command reports as an internal error (exit 4). With a deadline the pool is cancelled
and its workers killed when it passes (``deadline.DeadlineExceeded``, hence UNKNOWN).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Protocol, TypeVar

from cnnproof.verifier.deadline import DeadlineExceeded, check
from cnnproof.verifier.errors import CnnproofError

T = TypeVar("T")
R = TypeVar("R")


class WorkerFailed(RuntimeError):
    """A unit of work failed in a worker process (a bug or a crash, never a verdict)."""


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Iterable[T], deadline: float | None = None) -> list[R]:
        """Apply ``fn`` (a module-level function) to each item; results in order."""


class Serial:
    def map(self, fn, items, deadline=None):
        out = []
        for x in items:
            check(deadline)
            out.append(fn(x))
        return out


class Processes:
    """A process pool of ``jobs`` workers (fork-free 'spawn' is not needed: units are pure)."""

    def __init__(self, jobs: int):
        self.jobs = jobs

    def map(self, fn, items, deadline=None):
        items = list(items)
        if len(items) <= 1:
            return Serial().map(fn, items, deadline)
        pool = ProcessPoolExecutor(max_workers=self.jobs)
        finished = False
        try:
            futures = [pool.submit(fn, x) for x in items]
            left = None if deadline is None else max(0.0, deadline - time.perf_counter())
            done, pending = cf.wait(futures, timeout=left, return_when=cf.FIRST_EXCEPTION)
            for f in futures:
                if f in done and f.exception() is not None:
                    _raise_from_worker(f.exception())
            if pending:
                raise DeadlineExceeded()
            finished = True
            return [f.result() for f in futures]
        finally:
            if finished:
                pool.shutdown(wait=True)
            else:  # a deadline, an error or an interrupt: cancel the rest and kill the workers
                _kill(pool)


def _raise_from_worker(e: BaseException):
    if isinstance(e, (CnnproofError, DeadlineExceeded)):
        raise e
    if isinstance(e, cf.process.BrokenProcessPool):
        raise WorkerFailed(f"a worker process died ({e})") from None
    raise WorkerFailed(f"a worker process raised {type(e).__name__}: {e}") from e


def _kill(pool: ProcessPoolExecutor) -> None:
    procs = list(getattr(pool, "_processes", {}).values()) if getattr(pool, "_processes", None) else []
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=1)


def make_executor(jobs: int | None) -> Executor:
    return Processes(jobs) if jobs and jobs > 1 else Serial()
