"""Sweep canvas sizes: number of scenes and each prover's wall time, in a Markdown table.

Not part of the verifier (nothing here is trusted; it only times ``verifier.prove.prove``).

The task family is fixed (no randomness): binary levels {0, 1}, background 0, δ = 0, two
classes with two distinct fully specified 3x3 features each (``TEMPLATES``), default scene rules
(one copy of each required feature, no distractors, gap 0, every anchor), on an N x N canvas for
each N of the sweep. For every size the script counts the scenes (``count_scenes``, capped) and,
for every method in ``METHODS`` and both theorems, runs one measurement:

    prove(task, build_network(task), Question(q), method=m, timeout=T)

Each measurement runs in a fresh subprocess (nothing cached between runs), one at a time, killed
after ``T + GRACE`` seconds. The reported time is the wall time of the ``prove`` call inside the
subprocess (interpreter start, imports and building the task and network are not counted); the
peak RSS is the subprocess's ``ru_maxrss`` (from ``os.wait4``, so it is known for a killed
subprocess too). A measurement that hits the timeout prints ``timeout (>T s)``; the sweep then
stops running that method on that theorem for larger sizes (as it does after any UNKNOWN, e.g.
the exhaustive prover's scene cap).

Usage (from the repository root)::

    python bench/sweep.py [--sizes 6,8,10,12,14,16] [--timeout 120] [--out bench/results/sweep.md]
                          [--methods compositional,smt,exhaustive] [--resume]
    python bench/sweep.py --print-task 8 > /tmp/sweep8.toml   # then: cnnproof check-task /tmp/sweep8.toml

A second table gives, per size and theorem, the ratio of the times of two methods (``RATIOS``,
e.g. smt/compositional) wherever both finished with a verdict (PROVED or REFUTED); a ratio above
1 means the denominator method is faster.

``--resume`` reuses the measurements stored in ``--out`` (a JSON block in an HTML comment at the
end of the file) when the task family and the timeout are the same, and measures only the rest.
The table is rewritten (atomically) after every size, so an interrupted run keeps what it did.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_facts  # bench/machine.py (this folder is on sys.path)

# The provers to compare, in table order. Each name is a ``method`` of verifier.prove.prove; a
# new prover is one more entry here.
METHODS = ["compositional", "smt", "exhaustive"]
# The speed ratios of the second table: (numerator, denominator) = time of one method / time of
# the other, wherever both finish (PROVED or REFUTED) on the same size and theorem.
RATIOS = [("smt", "compositional"), ("exhaustive", "compositional"), ("smt", "exhaustive")]
# The two theorems of MODEL.md section 4, in table order: (Question theorem, column title).
QUESTIONS = [("zero_error", "zero error"), ("wellposed", "well-posed")]

DEFAULT_SIZES = [6, 8, 10, 12, 14, 16]
DEFAULT_TIMEOUT = 120.0
DEFAULT_OUT = "bench/results/sweep.md"
COUNT_LIMIT = 2_000_000  # the exhaustive prover's own scene cap (exhaustive.DEFAULT_MAX_SCENES)
GRACE = 30.0  # seconds past the timeout before the subprocess is killed
SEED = 0  # passed to prove(); only the "auto" method's falsifier draws random numbers

# Fixed templates ('#' = 1, '.' = 0), rows separated by '/'. Class "rings": ring + cross,
# class "bars": plus + tee. Distinct, fully specified, and no two placed features of one class
# make both features of the other class appear by accident: the sweep's well-posedness
# measurement proves this at every size (and `cnnproof check-task` on --print-task).
TEMPLATES = {
    "ring": "###/#.#/###",
    "cross": "#.#/.#./#.#",
    "plus": ".#./###/.#.",
    "tee": "###/.#./.#.",
}
CLASSES = {"rings": ["ring", "cross"], "bars": ["plus", "tee"]}

DATA_BEGIN = "<!-- sweep-data"
DATA_END = "-->"


# ---------------------------------------------------------------------------------------------
# The task family
# ---------------------------------------------------------------------------------------------


def task_toml(n: int) -> str:
    """The sweep's task on an n x n canvas, as a task file (docs/task-format.md)."""
    lines = [
        f'name = "sweep{n}"',
        f'description = "bench/sweep.py: two classes of two 3x3 binary features each on a {n}x{n} canvas"',
        "",
        "[canvas]",
        f"height = {n}",
        f"width = {n}",
        "",
        "[pixels]",
        "levels = [0, 1]",
        "background = 0",
        'symbols = { "." = 0, "#" = 1 }',
    ]
    for name, rows in TEMPLATES.items():
        lines += ["", f"[features.{name}]", 'template = """', *rows.split("/"), '"""']
    for name, req in CLASSES.items():
        lines += ["", f"[classes.{name}]", "required = [" + ", ".join(f'"{r}"' for r in req) + "]"]
    return "\n".join(lines) + "\n"


def make_task(n: int):
    from cnnproof.constructions.task import task_from_toml

    return task_from_toml(task_toml(n), source=f"<bench/sweep.py {n}x{n}>", default_name=f"sweep{n}")


def family_fingerprint(timeout: float) -> str:
    text = json.dumps({"templates": TEMPLATES, "classes": CLASSES, "timeout": timeout, "seed": SEED}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# One measurement, in a subprocess
# ---------------------------------------------------------------------------------------------


def worker(n: int, method: str, theorem: str, timeout: float) -> int:
    """Run one proof and print one JSON line; the parent reads it."""
    out: dict = {}
    try:
        from cnnproof.constructions.task_to_network import build_network
        from cnnproof.verifier.exact import format_rational
        from cnnproof.verifier.outcome import Question
        from cnnproof.verifier.prove import prove

        task = make_task(n)
        net = build_network(task) if theorem == "zero_error" else None
        t0 = time.perf_counter()
        v = prove(task, net, Question(theorem), method=method, timeout=timeout, seed=SEED)
        out["seconds"] = time.perf_counter() - t0
        out["verdict"] = v.verdict
        margin = getattr(v, "margin", None)
        out["margin"] = None if margin is None else format_rational(margin)
        if v.verdict == "UNKNOWN":
            out["reason"] = v.reason
        if v.verdict == "REFUTED":
            out["reason"] = f"counterexample in class {v.counterexample.cls} (other class {v.counterexample.other})"
    except Exception as e:  # reported as an error cell, never as a verdict
        out["verdict"] = "ERROR"
        out["reason"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out), flush=True)
    return 0


def measure(n: int, method: str, theorem: str, timeout: float) -> dict:
    """Run ``worker`` in a fresh subprocess with a hard timeout; return a result record."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(n), method, theorem, "--timeout", repr(timeout)]
    rec = {"size": n, "method": method, "theorem": theorem}
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fout, stderr=ferr, stdin=subprocess.DEVNULL, start_new_session=True)
        killed = False
        try:
            while True:
                pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - t0 > timeout + GRACE:
                    os.killpg(p.pid, signal.SIGKILL)  # the process group of the child we started
                    killed = True
                    pid, status, ru = os.wait4(p.pid, 0)
                    break
                time.sleep(0.02)
        except BaseException:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            raise
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4, not by Popen
        rec["wall"] = time.perf_counter() - t0
        rec["rss_mb"] = ru.ru_maxrss / 1024  # Linux: kilobytes
        fout.seek(0)
        ferr.seek(0)
        stdout, stderr = fout.read(), ferr.read()
    if killed:
        rec.update(status="timeout", reason=f"killed after {timeout + GRACE:g} s")
        return rec
    try:
        res = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = (stderr.strip().splitlines() or [f"exit code {p.returncode}, no output"])[-1]
        rec.update(status="error", reason=tail)
        return rec
    rec.update(res)
    if res["verdict"] == "ERROR":
        rec["status"] = "error"
    elif res["verdict"] == "UNKNOWN":
        reason = res.get("reason", "")
        timed_out = "timeout" in reason or "canceled" in reason or res["seconds"] >= timeout
        rec["status"] = "timeout" if timed_out else "unknown"
    else:
        rec["status"] = "ok"
    return rec


def count_all_scenes(n: int, limit: int) -> int | None:
    """Scenes of every class of the size-n task; None when there are more than ``limit``."""
    from cnnproof.constructions.scenes import SearchBudgetExceeded, count_scenes

    task = make_task(n)
    total = 0
    try:
        for cls in task.classes:
            total += count_scenes(task, cls, limit=limit - total)
    except SearchBudgetExceeded:
        return None
    return total


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


def cell(rec: dict | None, timeout: float) -> tuple[str, str]:
    """(result, peak RSS) text for one measurement."""
    if rec is None:
        return "not run", ""
    st = rec["status"]
    rss = f"{rec['rss_mb']:.0f} MB" if "rss_mb" in rec else ""
    if st == "skipped":
        return f"skipped ({rec['reason']})", ""
    if st == "timeout":
        return f"timeout (>{timeout:g} s)", rss
    if st == "error":
        return f"error: {rec['reason']}", rss
    text = f"{rec['verdict']} {fmt_seconds(rec['seconds'])}"
    if rec.get("margin") is not None:
        text += f", margin {rec['margin']}"
    if st == "unknown" or rec["verdict"] == "REFUTED":
        text += f" ({rec.get('reason', '')})"
    return text, rss


def fmt_seconds(s: float) -> str:
    if s < 10:
        return f"{s:.2f} s"
    if s < 100:
        return f"{s:.1f} s"
    return f"{s:.0f} s"


def fmt_count(c: int | None, limit: int) -> str:
    return f">{limit:,}" if c is None else f"{c:,}"


def header() -> list[str]:
    h = ["N", "scenes", "method"]
    for _, title in QUESTIONS:
        h += [title, "peak RSS"]
    return h


def rows(sizes, methods, counts, recs, timeout, limit) -> list[list[str]]:
    out = []
    for n in sizes:
        for m in methods:
            row = [f"{n}x{n}", fmt_count(counts.get(n), limit) if n in counts else "", m]
            for q, _ in QUESTIONS:
                row += list(cell(recs.get((n, m, q)), timeout))
            out.append(row)
    return out


def finished(rec: dict | None) -> bool:
    return rec is not None and rec.get("status") == "ok" and rec.get("verdict") in ("PROVED", "REFUTED")


def ratio_pairs(methods) -> list[tuple[str, str]]:
    return [(a, b) for a, b in RATIOS if a in methods and b in methods]


SHORT = {"compositional": "comp", "exhaustive": "exh"}  # column titles of the ratio table


def ratio_header(methods) -> list[str]:
    h = ["N"]
    for _, title in QUESTIONS:
        h += [f"{title} {SHORT.get(a, a)}/{SHORT.get(b, b)}" for a, b in ratio_pairs(methods)]
    return h


def fmt_ratio(r: float) -> str:
    return f"{r:.2f}x" if r < 1 else f"{r:.1f}x" if r < 100 else f"{r:,.0f}x"


def ratio_rows(sizes, methods, recs) -> list[list[str]]:
    """Time ratios a/b per size and theorem; '-' where either method did not finish."""
    out = []
    for n in sizes:
        row = [f"{n}x{n}"]
        for q, _ in QUESTIONS:
            for a, b in ratio_pairs(methods):
                ra, rb = recs.get((n, a, q)), recs.get((n, b, q))
                if finished(ra) and finished(rb) and rb["seconds"] > 0:
                    row.append(fmt_ratio(ra["seconds"] / rb["seconds"]))
                else:
                    row.append("-")
        out.append(row)
    return out


def markdown(args, facts, counts, recs, started: str, run_seconds: float, reused: int, done: bool) -> str:
    sizes, methods = args.sizes, args.methods
    lines = [
        "# Prover sweep: canvas size against wall time",
        "",
        f"Written by `bench/sweep.py` ({'complete' if done else 'in progress'}), started {started}. Command:",
        "",
        "    python bench/sweep.py " + " ".join(args.argv),
        "",
        f"- machine: {facts.get('platform')}, {facts.get('cpu', 'unknown CPU')}, {facts.get('cores')} cores "
        f"({facts.get('usable_cores', '?')} usable), {facts.get('memory_gb', '?')} GB RAM",
        f"- software: python {facts['python']}, z3 {facts['z3']}, numpy {facts['numpy']}, "
        f"cnnproof {facts['cnnproof']}" + (f" at commit {facts['commit']} (plus any uncommitted changes)" if "commit" in facts else ""),
        f"- run time: {run_seconds / 60:.1f} min" + (f" ({reused} measurements reused from an earlier run with --resume)" if reused else ""),
        f"- timeout per measurement: {args.timeout:g} s; each measurement in a fresh subprocess, one at a time",
        "",
        "Task family: binary levels {0, 1}, background 0, noise δ = 0, two classes of two fully specified",
        "3x3 features each, one copy of each, no distractors, gap 0, every anchor; canvas N x N.",
        "",
    ]
    for cname, req in CLASSES.items():
        pics = ["  ".join(TEMPLATES[f].split("/")[r] for f in req) for r in range(3)]
        lines += [f"    class {cname}: {' + '.join(req)}", *("        " + p for p in pics)]
    lines += [
        "",
        "Each cell is the verdict and the wall time of `prove(task, net, Question(q), method=m, timeout=T)`",
        "inside the subprocess (interpreter start, imports and building the task and network not counted),",
        "with the exact worst-case margin when the method reports it; `zero error` is for the paper's network",
        "(`build_network`). Peak RSS is the subprocess's `ru_maxrss` (it includes the interpreter, numpy and",
        "z3: about 40 MB for the exhaustive prover, about 70 MB once z3 is loaded). `scenes` is the sum over both classes (`count_scenes`, capped at "
        f"{args.count_limit:,}). After a timeout or an UNKNOWN, that method is skipped on that theorem for larger sizes.",
        "",
    ]
    head = header()
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---:" if h in ("N", "scenes") else "---" for h in head) + "|")
    for r in rows(sizes, methods, counts, recs, args.timeout, args.count_limit):
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    if ratio_pairs(methods):
        lines += [
            "",
            "## Time ratios",
            "",
            "Time of one method divided by the time of another (the `prove` times of the table above), for each",
            "size and theorem where both finished with a verdict; `-` where either timed out, gave UNKNOWN or was",
            "skipped (comp = compositional, exh = exhaustive).",
            "Above 1 the second method of the pair is the faster. Times under about 0.05 s are dominated",
            "by fixed costs, so small-size ratios are rough.",
            "",
        ]
        rhead = ratio_header(methods)
        lines.append("| " + " | ".join(rhead) + " |")
        lines.append("|" + "|".join("---:" for _ in rhead) + "|")
        for r in ratio_rows(sizes, methods, recs):
            lines.append("| " + " | ".join(r) + " |")
    lines += ["", DATA_BEGIN + " (raw measurements, read by --resume)", raw_data(args, counts, recs), DATA_END, ""]
    return "\n".join(lines)


def raw_data(args, counts, recs) -> str:
    """The measurements as JSON, one record a line."""
    head = {
        "fingerprint": family_fingerprint(args.timeout),
        "count_limit": args.count_limit,
        "counts": {str(n): c for n, c in sorted(counts.items())},
    }
    body = ",\n".join(json.dumps(recs[k], sort_keys=True) for k in sorted(recs))
    return json.dumps(head)[:-1] + ',\n"records": [\n' + body + "\n]}"


def write_atomic(path: Path, text: str) -> None:
    """The project's atomic write, creating the results folder first."""
    from cnnproof.verifier.network import write_atomic as _write

    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, text)


def load_previous(path: Path, timeout: float, count_limit: int) -> tuple[dict, dict]:
    """Counts and records stored in an earlier output, when they are for this family and timeout."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}, {}
    m = re.search(re.escape(DATA_BEGIN) + r"[^\n]*\n(.*?)\n" + re.escape(DATA_END), text, re.S)
    if not m:
        return {}, {}
    data = json.loads(m.group(1))
    if data.get("fingerprint") != family_fingerprint(timeout):
        print(f"--resume: {path} is for another task family or timeout: measuring everything", file=sys.stderr)
        return {}, {}
    counts = {int(n): c for n, c in data["counts"].items()} if data.get("count_limit") == count_limit else {}
    recs = {
        (r["size"], r["method"], r["theorem"]): r
        for r in data["records"]
        if r["status"] not in ("skipped", "error")
    }
    return counts, recs


def print_table(args, counts, recs) -> None:
    head = header()
    body = rows(args.sizes, args.methods, counts, recs, args.timeout, args.count_limit)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        for r in [head, *body]:
            print("  ".join(x.ljust(w) for x, w in zip(r, widths)))
        if ratio_pairs(args.methods):
            rhead, rbody = ratio_header(args.methods), ratio_rows(args.sizes, args.methods, recs)
            widths = [max(len(x) for x in col) for col in zip(rhead, *rbody)]
            print()
            for r in [rhead, *rbody]:
                print("  ".join(x.rjust(w) for x, w in zip(r, widths)))
        return
    t = Table(title=f"prover sweep (timeout {args.timeout:g} s)")
    for h in head:
        t.add_column(h, justify="right" if h in ("N", "scenes") else "left", no_wrap=True)
    for r in body:
        t.add_row(*r)
    console = Console()
    if not console.is_terminal:  # a log file: do not wrap at 80 columns
        console = Console(width=200)
    console.print(t)
    if ratio_pairs(args.methods):
        rt = Table(title="time ratios (where both methods finished)")
        for h in ratio_header(args.methods):
            rt.add_column(h, justify="right", no_wrap=True)
        for r in ratio_rows(args.sizes, args.methods, recs):
            rt.add_row(*r)
        console.print(rt)


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/sweep.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="canvas sizes N (N x N), comma-separated")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per measurement (default 120)")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"Markdown output (default {DEFAULT_OUT})")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--count-limit", type=int, default=COUNT_LIMIT, help="stop counting scenes past this many")
    ap.add_argument("--resume", action="store_true", help="reuse the measurements stored in --out")
    ap.add_argument("--print-task", type=int, metavar="N", help="print the N x N task file and exit")
    ap.add_argument("--worker", nargs=3, metavar=("N", "METHOD", "THEOREM"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = argv
    if args.worker:
        return args
    try:
        args.sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        ap.error(f"--sizes: not a comma-separated list of integers: {args.sizes!r}")
    if not args.sizes or min(args.sizes) < 3:
        ap.error("--sizes: every size must be at least 3 (the features are 3x3)")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not args.methods or any(m not in METHODS for m in args.methods):
        ap.error(f"--methods: choose from {', '.join(METHODS)}")
    if args.timeout <= 0:
        ap.error("--timeout must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.worker:
        n, method, theorem = args.worker
        return worker(int(n), method, theorem, args.timeout)
    if args.print_task is not None:
        sys.stdout.write(task_toml(args.print_task))
        return 0

    out = Path(args.out)
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    facts = machine_facts()
    counts, recs = load_previous(out, args.timeout, args.count_limit) if args.resume else ({}, {})
    # keep only what this run reports
    counts = {n: c for n, c in counts.items() if n in args.sizes}
    recs = {k: r for k, r in recs.items() if k[0] in args.sizes and k[1] in args.methods}
    reused = len(recs)
    t_run = time.perf_counter()
    stopped: dict[tuple[str, str], int] = {}  # (method, theorem) -> size where it stopped

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_run:7.1f} s] {msg}", file=sys.stderr, flush=True)

    for n in args.sizes:
        if n not in counts:
            counts[n] = count_all_scenes(n, args.count_limit)
        log(f"{n}x{n}: {fmt_count(counts[n], args.count_limit)} scenes")
        for m in args.methods:
            for q, title in QUESTIONS:
                key = (n, m, q)
                if (m, q) in stopped:
                    recs[key] = {"size": n, "method": m, "theorem": q, "status": "skipped",
                                 "reason": f"stopped at {stopped[(m, q)]}x{stopped[(m, q)]}"}
                    continue
                if key in recs:
                    rec = recs[key]
                    log(f"  {m:<12} {title:<11} {cell(rec, args.timeout)[0]} (reused)")
                else:
                    rec = recs[key] = measure(n, m, q, args.timeout)
                    log(f"  {m:<12} {title:<11} {cell(rec, args.timeout)[0]}  [{cell(rec, args.timeout)[1]}]")
                if rec["status"] in ("timeout", "unknown"):
                    stopped[(m, q)] = n
        write_atomic(out, markdown(args, facts, counts, recs, started, time.perf_counter() - t_run, reused, done=False))
    run_seconds = time.perf_counter() - t_run
    write_atomic(out, markdown(args, facts, counts, recs, started, run_seconds, reused, done=True))
    print_table(args, counts, recs)
    print(f"wrote {out} ({run_seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
