"""Where obligations are solved: one small interface, a serial and a process-pool executor.

Stage: infrastructure. Trusted: no (it only moves self-contained, picklable units of work and
their results). A distributed engine (Dask, Ray) can implement the same ``map`` without
touching the provers.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Protocol, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """Apply ``fn`` (a module-level function) to each item; results in order."""


class Serial:
    def map(self, fn, items):
        return [fn(x) for x in items]


class Processes:
    """A process pool of ``jobs`` workers (fork-free 'spawn' is not needed: units are pure)."""

    def __init__(self, jobs: int):
        self.jobs = jobs

    def map(self, fn, items):
        items = list(items)
        if len(items) <= 1:
            return [fn(x) for x in items]
        with ProcessPoolExecutor(max_workers=self.jobs) as pool:
            return list(pool.map(fn, items, chunksize=max(1, len(items) // (4 * self.jobs))))


def make_executor(jobs: int | None) -> Executor:
    return Processes(jobs) if jobs and jobs > 1 else Serial()
