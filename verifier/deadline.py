"""Deadlines (``--timeout``): one clock for every route, and z3 queries that can be killed.

Stage: infrastructure. Trusted: no (a deadline only ever turns work into UNKNOWN; it never
makes anything PROVED or REFUTED).

A deadline is an absolute ``time.perf_counter()`` value, or None for "no deadline". Three
mechanisms make every route honour it:

* :func:`alarm` arms a timer (SIGALRM, main thread, POSIX) that raises :class:`DeadlineExceeded`
  in the middle of pure-Python work (scene enumeration, SMT encoding, the falsifier, scene
  searches); provers catch it at their entry point and answer UNKNOWN. Where no timer is
  available, the provers' own checks (:func:`check`, between batches, classes and lemmas) still
  apply.
* :func:`solve` runs a z3 query with z3's ``timeout`` set from the time left and, with a
  deadline, in a forked child process that is killed when the deadline passes: z3's own
  timeout is not always honoured (a long preprocessing step can ignore it).
* ``executor.Processes`` kills its workers when the deadline passes.

:class:`DeadlineExceeded` derives from ``BaseException`` (like ``KeyboardInterrupt``), so that no
``except Exception`` on the way swallows it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import select
import signal
import threading
import time
from typing import Callable, Iterator

GRACE = 0.25  # seconds a killable z3 child may run past the deadline before it is killed


class DeadlineExceeded(BaseException):
    """The deadline passed (``--timeout``): the work is abandoned, the answer is UNKNOWN."""


def after(seconds: float | None) -> float | None:
    """The deadline ``seconds`` from now (None: no deadline)."""
    return None if seconds is None else time.perf_counter() + seconds


def remaining(deadline: float | None) -> float | None:
    """Seconds left (may be <= 0), or None without a deadline."""
    return None if deadline is None else deadline - time.perf_counter()


def check(deadline: float | None) -> None:
    """Raise :class:`DeadlineExceeded` when ``deadline`` has passed."""
    if deadline is not None and time.perf_counter() >= deadline:
        raise DeadlineExceeded()


# -- the timer ----------------------------------------------------------------------------------

_armed: list[float] = []  # the deadlines of the active ``alarm`` blocks (innermost last)
_saved_handler = None


RETRY = 0.02  # seconds between raises once the deadline has passed (until one is caught)
INNER_GRACE = 0.05  # seconds an outer block waits, once an inner one has ended, for its answer


_Z3_DIR = os.sep + "z3" + os.sep


def _must_wait(frame) -> bool:
    """Is ``frame`` somewhere an exception must not be raised? Inside a ``__del__`` (it would be
    printed and dropped; so in a ``gc`` callback), inside z3's Python wrapper (ctypes turns it into an ArgumentError, and
    z3's state may be left half-updated), or inside this module's own bookkeeping (an ``alarm``
    block being left: its clean-up must run whole, or a stale deadline stays armed)."""
    if frame is not None and frame.f_code.co_filename in (__file__, contextlib.__file__):
        return True
    in_gc = {getattr(cb, "__code__", None) for cb in gc.callbacks}  # like __del__: a raise is dropped
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or code in in_gc or _Z3_DIR in code.co_filename:
            return True
        frame = frame.f_back
    return False


def _on_alarm(signum, frame):
    if _armed and time.perf_counter() >= min(_armed) - 1e-3:
        if _must_wait(frame):
            signal.setitimer(signal.ITIMER_REAL, 0.002, RETRY)  # raise just after leaving that code
            return
        raise DeadlineExceeded()  # the timer repeats: a raise that something swallows is raised again
    _rearm()  # woke early (timer granularity): sleep again


def _rearm(least: float = 1e-4) -> None:
    if _armed:
        signal.setitimer(signal.ITIMER_REAL, max(min(_armed) - time.perf_counter(), least), RETRY)
    else:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _timer_available() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def alarm(deadline: float | None) -> Iterator[None]:
    """Within the block, raise :class:`DeadlineExceeded` when ``deadline`` passes (nested blocks:
    the earliest deadline wins). A no-op without a deadline, off the main thread, or without
    ``setitimer``."""
    global _saved_handler
    if deadline is None or not _timer_available():
        yield
        return
    if not _armed:
        _saved_handler = signal.signal(signal.SIGALRM, _on_alarm)
    _armed.append(deadline)
    try:
        _rearm()
        yield
    finally:
        _armed.remove(deadline)
        if _armed:  # an outer block: let the inner block's answer (say UNKNOWN, timeout) reach it first
            _rearm(least=INNER_GRACE)
        else:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, _saved_handler if _saved_handler is not None else signal.SIG_DFL)


# -- killable z3 queries ------------------------------------------------------------------------


def z3_timeout_ms(deadline: float | None) -> int | None:
    """z3's ``timeout`` parameter for the time left (at least 1 ms), or None."""
    left = remaining(deadline)
    if left is None:
        return None
    if left <= 0:
        raise DeadlineExceeded()
    return max(1, int(left * 1000))


def solve(solver, deadline: float | None, extract: Callable | None = None, assumptions=()):
    """``solver.check(*assumptions)`` under ``deadline``: ``(result, payload, reason)``.

    ``result`` is ``"sat"``, ``"unsat"`` or ``"unknown"``; ``payload`` is ``extract(model)`` on
    ``sat`` (a picklable value; None otherwise); ``reason`` is z3's reason for ``unknown``. With a
    deadline the query runs in a forked child killed ``GRACE`` seconds after the deadline
    (raising :class:`DeadlineExceeded`); without one, or where ``fork`` is unavailable, in this
    process with z3's own timeout.
    """
    ms = z3_timeout_ms(deadline)
    if ms is not None:
        solver.set("timeout", ms)

    def run():
        r = solver.check(*assumptions)
        rs = str(r)
        payload = extract(solver.model()) if rs == "sat" and extract is not None else None
        return rs, payload, solver.reason_unknown() if rs == "unknown" else ""

    if deadline is None or not hasattr(os, "fork"):
        out = run()
        if out[0] == "unknown" and deadline is not None and time.perf_counter() >= deadline:
            raise DeadlineExceeded()
        return out
    return _in_child(run, deadline)


def _in_child(run: Callable, deadline: float):
    rfd, wfd = os.pipe()
    blocked = hasattr(signal, "pthread_sigmask")
    if blocked:  # no DeadlineExceeded between the fork and the try below: the child must be killed
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    pid = os.fork()
    if pid == 0:  # the child: solve, send the answer, leave without running any cleanup
        code = 0
        try:
            signal.signal(signal.SIGALRM, signal.SIG_IGN)
            if blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
            os.close(rfd)
            try:
                data = pickle.dumps(("ok", run()))
            except BaseException as e:  # noqa: BLE001 - reported to the parent, never lost
                data = pickle.dumps(("error", f"{type(e).__name__}: {e}"))
            view = memoryview(data)
            while view:
                n = os.write(wfd, view)
                view = view[n:]
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    chunks: list[bytes] = []
    done = False
    try:
        os.close(wfd)
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        while True:
            left = deadline + GRACE - time.perf_counter()
            if left <= 0:
                break
            ready, _, _ = select.select([rfd], [], [], left)
            if not ready:
                continue
            b = os.read(rfd, 1 << 20)
            if not b:
                done = True
                break
            chunks.append(b)
    finally:
        os.close(rfd)
        if not done:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    if not done:
        raise DeadlineExceeded()
    if not chunks:
        raise RuntimeError("the z3 child process died without an answer")
    status, value = pickle.loads(b"".join(chunks))
    if status != "ok":
        raise RuntimeError(f"the z3 child process failed: {value}")
    rs, payload, reason = value
    if rs == "unknown" and time.perf_counter() >= deadline:
        raise DeadlineExceeded()
    return rs, payload, reason
