"""Issue 13: the paper network's proof and its certificate check against the number of classes.

Not part of the verifier. For each K of ``--classes`` it generates the bench/gen_tasks.py task
(K classes, 3(K-1)+3 features 5x5, ``--size``, seed 0), then runs, each in a fresh process,
one at a time:

* ``cnnproof prove TASK --certificate C.json`` (the paper's network, built by the command);
* ``cnnproof check C.json --task TASK``;

and prints per K the verdicts, the wall time of each, the
certificate's obligation count, the ratio check/prove, and the growth exponent of the prove
time between consecutive K (log t2/t1 / log K2/K1). Runs past ``--timeout`` are killed and shown
as such.

    python bench/classes.py [--classes 10,30,100,300] [--size 28] [--timeout 900]
                            [--out bench/results/classes.txt]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(argv: list[str], timeout: float) -> tuple[int | None, float, float, str]:
    """(exit code or None on timeout, wall seconds, unused, last stdout line)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        return None, time.perf_counter() - t0, float("nan"), "timeout"
    wall = time.perf_counter() - t0
    return p.returncode, wall, float("nan"), out.strip().splitlines()[-1] if out.strip() else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", default="10,30,100,300")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "classes.txt")
    a = ap.parse_args()
    Ks = [int(k) for k in a.classes.split(",")]
    cli = [sys.executable, "-m", "cnnproof"]
    head = (f"{'classes':>7} {'features':>8} {'prove':>8} {'s':>8} {'check':>8} {'s':>8} {'check/prove':>11} "
            f"{'obligations':>11} {'exp':>5}")
    lines = [f"bench/classes.py  {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             "command: bench/classes.py " + " ".join(sys.argv[1:]),
             f"gen_tasks.py tasks on {a.size}x{a.size}, seed 0; wall seconds of each command in a fresh process", "",
             head]
    print("\n".join(lines), flush=True)
    prev = None
    with tempfile.TemporaryDirectory() as d:
        for K in Ks:
            task = Path(d) / f"t{K}.toml"
            cert = Path(d) / f"c{K}.json"
            subprocess.run([sys.executable, str(HERE / "gen_tasks.py"), "--classes", str(K), "--size", str(a.size),
                            "--seed", "0", "-o", str(task)], check=True)
            nf = sum(1 for line in task.read_text().splitlines() if line.startswith("[features."))
            pc, pt, _, _ = timed(cli + ["prove", str(task), "--certificate", str(cert)], a.timeout)
            pv = {0: "PROVED", 1: "REFUTED", 3: "UNKNOWN", None: "timeout"}.get(pc, f"exit {pc}")
            if cert.exists():
                n_ob = len(json.loads(cert.read_text()).get("obligations", []))
                cc, ct, _, _ = timed(cli + ["check", str(cert), "--task", str(task)], a.timeout)
                cv = {0: "valid", 1: "rejected", 3: "UNKNOWN", None: "timeout"}.get(cc, f"exit {cc}")
            else:
                n_ob, cv, ct = 0, "-", float("nan")
            exp = "" if prev is None else f"{math.log(pt / prev[1]) / math.log(K / prev[0]):.2f}"
            row = (f"{K:7d} {nf:8d} {pv:>8} {pt:8.2f} {cv:>8} {ct:8.2f} {ct / pt:11.2f} {n_ob:11d} {exp:>5}")
            print(row, flush=True)
            lines.append(row)
            prev = (K, pt)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
