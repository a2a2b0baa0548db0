"""The Marabou runner's limits count solving, not start-up, and a hung query is killed and retried.

Stage: test support of the cross-check (``verifier.vnnlib.MarabouRunner``). Trusted: no.
The runner's protocol is tested with a stand-in worker (``FAKE``: the same stdin/stdout
protocol as ``vnnlib._worker``, no maraboupy), whose behaviour each query's file name picks:

* ``unsat.vnnlib``: answers at once;
* ``spin.vnnlib``: loops forever on the CPU (as Marabou 2.0.0 can, ignoring its own timeout);
* ``sleep.vnnlib``: answers after ``SLEEP`` seconds of sleeping (wall time, no CPU: what a
  query looks like on a loaded machine);
* ``deeppoly-only-spins.vnnlib``: spins with the ``deeppoly`` strategy, answers with the others;

and a network file whose name contains ``slowload`` takes ``SLOW`` CPU seconds to read, as does the
worker's start-up when ``CNNPROOF_FAKE_SLOW_START`` is set (Marabou's imports take 2.5-4.4 s on a
loaded machine). The last test runs the real worker on one exported query, when maraboupy is
installed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cnnproof.verifier.vnnlib import MarabouRunner

SLEEP = 1.0  # seconds a "sleep" query sleeps (4 x the CPU limit below)
SLOW = 1.0  # CPU seconds of a slow start-up or network read (4 x the CPU limit below)
LIMIT = 0.25  # CPU seconds per query in these tests
REAL_LIMIT = 0.5  # ... and with the real worker (its imports take 2.5-4.4 s)

FAKE = r"""
import json, os, sys, time
out = sys.stdout
def say(rec):
    out.write(json.dumps(rec) + "\n")
    out.flush()
if os.environ.get("CNNPROOF_FAKE_SLOW_START"):
    t = time.process_time()
    while time.process_time() - t < %(slow)r:  # imports: CPU-bound, like Marabou's
        pass
say({"ready": True})
for line in sys.stdin:
    req = json.loads(line)
    if "slowload" in req["onnx"]:
        t = time.process_time()
        while time.process_time() - t < %(slow)r:
            pass
    say({"loaded": True})
    name = os.path.basename(req["vnnlib"])
    if name == "spin.vnnlib" or (name == "deeppoly-only-spins.vnnlib" and req["strategy"] == "deeppoly"):
        while True:
            pass
    if name == "sleep.vnnlib":
        time.sleep(%(sleep)r)
    say({"result": "unsat", "seconds": 0.0, "x": [], "y": []})
""" % {"slow": SLOW, "sleep": SLEEP}


class Fake(MarabouRunner):
    worker = ("-c", FAKE)


def _pid(r: MarabouRunner) -> int:
    assert r.proc is not None
    return r.proc.pid


def test_one_warm_worker_serves_every_query():
    with Fake(limit=LIMIT) as r:
        answers = [r.solve(f"net{k % 2}.onnx", "unsat.vnnlib") for k in range(6)]
        assert [a.result for a in answers] == ["unsat"] * 6
        assert r.starts == 1 and not any(a.hung for a in answers)


def test_start_up_and_network_reading_are_not_counted(monkeypatch):
    """The worker's start-up and its reading of a network take SLOW = 4 x LIMIT CPU seconds
    each; the query is still answered (the old runner counted both against the query's
    limit)."""
    monkeypatch.setenv("CNNPROOF_FAKE_SLOW_START", "1")
    with Fake(limit=LIMIT) as r:
        a = r.solve("slowload.onnx", "unsat.vnnlib")
        assert (a.result, a.hung, r.starts) == ("unsat", (), 1)


def test_the_limit_counts_cpu_time_not_wall_time():
    """A query that waits SLEEP = 4 x LIMIT seconds without using the CPU (a query on a loaded
    machine) is answered; the wall-clock backstop is far away."""
    if not Path(f"/proc/{os.getpid()}/stat").exists():
        pytest.skip("no /proc: the runner's limit is wall-clock here")
    with Fake(limit=LIMIT) as r:
        a = r.solve("net.onnx", "sleep.vnnlib")
        assert (a.result, a.hung, r.starts) == ("unsat", (), 1)


def test_the_wall_clock_backstop_kills_a_sleeping_query():
    with Fake(limit=LIMIT, wall_limit=0.3, strategies=("deeppoly",)) as r:
        a = r.solve("net.onnx", "sleep.vnnlib")
        assert (a.result, a.hung) == ("HANG", ("deeppoly",))


def test_a_hung_query_is_killed_and_retried_with_the_next_strategy():
    with Fake(limit=LIMIT) as r:
        t0 = time.monotonic()
        a = r.solve("net.onnx", "deeppoly-only-spins.vnnlib")
        assert (a.result, a.strategy, a.hung) == ("unsat", "none", ("deeppoly",))
        assert r.starts == 2  # killed once, restarted once
        assert time.monotonic() - t0 < 60
        # the strategy that hung goes last for this network; the new worker is reused
        b = r.solve("net.onnx", "deeppoly-only-spins.vnnlib")
        assert (b.result, b.strategy, b.hung, r.starts) == ("unsat", "none", (), 2)
        pid = _pid(r)
        c = r.solve("net.onnx", "unsat.vnnlib")
        assert (c.result, r.starts, _pid(r)) == ("unsat", 2, pid)


def test_a_query_that_hangs_with_every_strategy_is_HANG():
    with Fake(limit=LIMIT) as r:
        a = r.solve("net.onnx", "spin.vnnlib")
        assert (a.result, a.strategy) == ("HANG", "")
        assert set(a.hung) == {"deeppoly", "none", "sbt"}
        # and the runner goes on with a fresh worker
        b = r.solve("net.onnx", "unsat.vnnlib")
        assert b.result == "unsat" and r.starts == 4


def test_a_worker_that_cannot_start_is_an_error():
    class Dead(MarabouRunner):
        worker = ("-c", "raise SystemExit(7)")

    class NoMarabou(MarabouRunner):
        worker = ("-c", "print('{\"ready\": false, \"error\": \"ImportError: no maraboupy\"}')")

    with Dead() as r, pytest.raises(RuntimeError, match="exited with code 7"):
        r.solve("net.onnx", "unsat.vnnlib")
    with NoMarabou() as r, pytest.raises(ImportError, match="no maraboupy"):
        r.solve("net.onnx", "unsat.vnnlib")
    assert r.proc is None


def test_the_real_worker_answers_a_query_with_a_small_limit(tmp_path):
    """maraboupy's imports (seconds) and the network's reading are outside the limit: a fresh
    worker answers exported queries with a limit of REAL_LIMIT CPU seconds each."""
    pytest.importorskip("maraboupy")
    from cnnproof.constructions.task import load_task
    from cnnproof.constructions.task_to_network import build_network
    from cnnproof.verifier.vnnlib import export, marabou_check

    task = load_task(Path(__file__).resolve().parent.parent / "proofs" / "tasks" / "stride_region.toml")
    ex = export(task, build_network(task), tmp_path / "x")
    with MarabouRunner(limit=REAL_LIMIT) as r:
        answers = marabou_check(tmp_path / "x", [sq.file for sq in ex.queries[:3]], runner=r)
        assert [a.result for a in answers] == ["unsat"] * 3, answers
        assert r.starts == 1
