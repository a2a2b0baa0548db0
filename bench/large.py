"""Scaling acceptance of issue 3: proof and command times of `cnnproof prove` on large generated tasks.

Not part of the verifier (nothing here is trusted; it only runs the CLI and reads its JSON).

Cases (tasks from ``bench/gen_tasks.py``, written to a temporary directory):

    (a) 10 classes, 30 features 5x5 on a 28x28 canvas, seed 0
    (b) the same seed and classes on a 256x256 canvas
    (c) 100 classes, 300 features on a 64x64 canvas, seed 0, with ``--jobs 2`` when
        ``cnnproof prove --help`` offers --jobs (otherwise without, and the report says so)

For each case ``cnnproof prove TASK --json`` runs ``--runs`` times (default 5), each in a fresh
process, one at a time; the report gives the median of the proof time the CLI reports (the JSON's
``seconds``: the ``prove`` call only) and the median wall time of the whole command (interpreter
start, imports, parsing the task and building the network included), with min-max. On case (a)
it also times ``cnnproof prove TASK --certificate C.json`` and ``cnnproof check C.json`` once each
(wall time of the command); a failing command is reported with its exit code and last error line
instead of a time.

Acceptance targets (issue 3), printed beside the figures:

    (a) proof < 1 s and command < 3 s
    (b) proof within 1.2x of (a)'s proof
    (c) < 60 s with --jobs 2 (judged on the command's wall time, the stricter of the two)
    certificate and check on (a): each command < 60 s

Usage (from the repository root)::

    python bench/large.py [--runs 5] [--cases a,b,c] [--out bench/results/large.md]

The Markdown file (machine facts, tables, raw measurements as JSON in an HTML comment) is written
atomically at the end.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_facts  # bench/machine.py (this folder is on sys.path)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GEN = HERE / "gen_tasks.py"
DEFAULT_OUT = "bench/results/large.md"
DEFAULT_RUNS = 5
COMMAND_TIMEOUT = 600.0  # seconds before one command is killed

CASES = {
    "a": {"classes": 10, "size": 28, "seed": 0, "jobs": None, "label": "(a) 10 classes, 30 features, 28x28"},
    "b": {"classes": 10, "size": 256, "seed": 0, "jobs": None, "label": "(b) same seed, 256x256"},
    "c": {"classes": 100, "size": 64, "seed": 0, "jobs": 2, "label": "(c) 100 classes, 300 features, 64x64"},
}
TARGETS = {
    "a": "proof < 1 s and command < 3 s",
    "b": "proof within 1.2x of (a)",
    "c": "< 60 s with --jobs 2",
    "certificate": "< 60 s",
    "check": "< 60 s",
}


def cli_path() -> str:
    cand = Path(sys.executable).parent / "cnnproof"
    if cand.exists():
        return str(cand)
    found = shutil.which("cnnproof")
    if not found:
        raise SystemExit("cnnproof CLI not found (install the project: pip install -e .)")
    return found


def has_jobs_option(cli: str) -> bool:
    r = subprocess.run([cli, "prove", "--help"], capture_output=True, text=True)
    return "--jobs" in r.stdout


def run(cmd: list[str], timeout: float) -> dict:
    """Run one command in a fresh process; wall time, exit code, stdout, last stderr line."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"wall": time.perf_counter() - t0, "rc": None, "error": f"killed after {timeout:g} s"}
    rec = {"wall": time.perf_counter() - t0, "rc": p.returncode, "stdout": p.stdout}
    if p.returncode != 0:
        lines = p.stderr.strip().splitlines() or p.stdout.strip().splitlines() or [""]
        rec["error"] = lines[-1][:300]
    return rec


def prove_runs(cli: str, task: Path, jobs: int | None, runs: int, log) -> list[dict]:
    cmd = [cli, "prove", str(task), "--json"] + (["--jobs", str(jobs)] if jobs else [])
    out = []
    for i in range(runs):
        r = run(cmd, COMMAND_TIMEOUT)
        rec = {"wall": r["wall"], "rc": r["rc"]}
        try:
            js = json.loads(r.get("stdout", ""))
            rec.update(seconds=js.get("seconds"), verdict=js.get("verdict"), method=js.get("method"),
                       margin=js.get("worst_case_margin"))
        except ValueError:
            rec["error"] = r.get("error", "no JSON on stdout")
        out.append(rec)
        log(f"    run {i + 1}/{runs}: {rec.get('verdict', 'ERROR')} proof {rec.get('seconds')} s, command {rec['wall']:.2f} s"
            + (f" ({rec['error']})" if "error" in rec else ""))
    return out


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fs(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.3f} s" if s < 10 else f"{s:.1f} s"


def summarize(key: str, recs: list[dict]) -> dict:
    ok = [r for r in recs if r.get("seconds") is not None]
    proofs = [r["seconds"] for r in ok]
    walls = [r["wall"] for r in ok]
    return {
        "runs": len(recs),
        "ok": len(ok),
        "verdicts": sorted({str(r.get("verdict")) for r in recs}),
        "methods": sorted({str(r.get("method")) for r in ok}),
        "proof_median": med(proofs),
        "proof_min": min(proofs) if proofs else None,
        "proof_max": max(proofs) if proofs else None,
        "wall_median": med(walls),
        "wall_min": min(walls) if walls else None,
        "wall_max": max(walls) if walls else None,
        "errors": sorted({r["error"] for r in recs if "error" in r}),
    }


def judge(key: str, s: dict, summ: dict) -> tuple[str, str]:
    """(status, detail) of the acceptance target of one case."""
    if not s["ok"] or s["ok"] < s["runs"] or s["verdicts"] != ["PROVED"]:
        return "FAIL", "not every run PROVED"
    p, w = s["proof_median"], s["wall_median"]
    if key == "a":
        good = p < 1 and w < 3
        return ("met" if good else "MISSED"), f"proof {fs(p)} vs 1 s, command {fs(w)} vs 3 s"
    if key == "b":
        a = summ.get("a")
        if not a or a["proof_median"] is None:
            return "n/a", "(a) not measured"
        ratio = p / a["proof_median"]
        return ("met" if ratio <= 1.2 else "MISSED"), f"{ratio:.2f}x of (a) vs 1.2x"
    if key == "c":
        return ("met" if w < 60 else "MISSED"), f"command {fs(w)} (proof {fs(p)}) vs 60 s"
    return "", ""


def table_rows(summ: dict, judged: dict, extra: dict, jobs_note: dict) -> list[list[str]]:
    rows = []
    for key, s in summ.items():
        case = CASES[key]
        label = case["label"] + (f", {jobs_note[key]}" if key in jobs_note else "")
        status, detail = judged[key]
        rows.append([
            label,
            f"{s['ok']}/{s['runs']} " + ",".join(s["verdicts"]),
            fs(s["proof_median"]) + f" ({fs(s['proof_min'])}-{fs(s['proof_max'])})",
            fs(s["wall_median"]) + f" ({fs(s['wall_min'])}-{fs(s['wall_max'])})",
            TARGETS[key],
            f"{status}: {detail}",
        ])
    for name in ("certificate", "check"):
        if name not in extra:
            continue
        r = extra[name]
        cmd = "prove --certificate C.json" if name == "certificate" else "check C.json"
        if r.get("rc") == 0:
            status = "met" if r["wall"] < 60 else "MISSED"
            rows.append([f"(a) {cmd}", "1 run, exit 0", "-", fs(r["wall"]), TARGETS[name], f"{status}: command {fs(r['wall'])} vs 60 s"])
        else:
            rows.append([f"(a) {cmd}", f"1 run, exit {r.get('rc')}", "-", "-", TARGETS[name],
                         f"FAIL: {r.get('error', '')}"])
    return rows


HEAD = ["case", "runs", "proof (median, min-max)", "command (median, min-max)", "target", "status"]


def print_table(rows) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for r in [HEAD, *rows]:
            print(" | ".join(r))
        return
    t = Table(title="issue 3 scaling acceptance")
    for h in HEAD:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*r)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    console.print(t)


def markdown(args, facts, started, run_seconds, rows, raw, jobs_note) -> str:
    lines = [
        "# Scaling acceptance (issue 3): large generated tasks",
        "",
        f"Written by `bench/large.py`, started {started}. Command:",
        "",
        "    python bench/large.py " + " ".join(args.argv),
        "",
        f"- machine: {facts.get('platform')}, {facts.get('cpu', 'unknown CPU')}, {facts.get('cores')} cores "
        f"({facts.get('usable_cores', '?')} usable)",
        f"- software: python {facts['python']}, z3 {facts['z3']}, cnnproof {facts['cnnproof']} at commit "
        f"{facts['commit']}" + (" (plus uncommitted changes)" if facts.get("dirty") else ""),
        f"- date: {started}; run time {run_seconds / 60:.1f} min",
        f"- each `cnnproof prove TASK --json` run {args.runs} times, each in a fresh process, one at a time",
        "",
        "Tasks: `python bench/gen_tasks.py --classes K --size N --seed 0` (5x5 binary features, 3K in all,",
        "one class with two features that can each appear by accident in another class's images). The",
        "network is the paper's, built from the task by the CLI. *proof* is the JSON's `seconds` (the",
        "`prove` call only); *command* is the wall time of the whole command (interpreter start, imports,",
        "reading the task, building the network, proof, output).",
        "",
    ]
    for k, note in jobs_note.items():
        lines += [f"Note on {CASES[k]['label'][:3]}: {note}.", ""]
    lines.append("| " + " | ".join(HEAD) + " |")
    lines.append("|" + "|".join("---" for _ in HEAD) + "|")
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    lines += ["", "<!-- large-data (raw measurements)", json.dumps(raw, indent=1, sort_keys=True), "-->", ""]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    """The project's atomic write, creating the results folder first."""
    from cnnproof.verifier.network import write_atomic as _write

    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, text)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="bench/large.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="prove runs per case (default 5)")
    ap.add_argument("--cases", default="a,b,c", help="comma-separated subset of a,b,c")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"Markdown output (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    args.argv = argv
    keys = [k.strip() for k in args.cases.split(",") if k.strip()]
    if not keys or any(k not in CASES for k in keys) or args.runs < 1:
        ap.error("--cases: choose from a,b,c; --runs >= 1")

    cli = cli_path()
    jobs_ok = has_jobs_option(cli)
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    facts = machine_facts()
    t_run = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_run:7.1f} s] {msg}", file=sys.stderr, flush=True)

    summ, raw, extra, jobs_note = {}, {"facts": facts, "cases": {}}, {}, {}
    with tempfile.TemporaryDirectory(prefix="cnnproof-large-") as tmp:
        for key in keys:
            case = CASES[key]
            task = Path(tmp) / f"{key}.toml"
            subprocess.run([sys.executable, str(GEN), "--classes", str(case["classes"]), "--size", str(case["size"]),
                            "--seed", str(case["seed"]), "-o", str(task)], check=True)
            jobs = case["jobs"]
            if jobs and not jobs_ok:
                jobs_note[key] = f"run without --jobs: `cnnproof prove --help` has no --jobs option"
                jobs = None
            elif jobs:
                jobs_note[key] = f"--jobs {jobs}"
            log(f"{case['label']}" + (f" --jobs {jobs}" if jobs else ""))
            recs = prove_runs(cli, task, jobs, args.runs, log)
            summ[key] = summarize(key, recs)
            raw["cases"][key] = {"case": {k: v for k, v in case.items()}, "jobs_used": jobs, "runs": recs}
            if key == "a":
                cert = Path(tmp) / "C.json"
                r = run([cli, "prove", str(task), "--certificate", str(cert)], COMMAND_TIMEOUT)
                r.pop("stdout", None)
                extra["certificate"] = r
                log(f"  prove --certificate: exit {r['rc']}, {r['wall']:.2f} s" + (f" ({r['error']})" if "error" in r else ""))
                if r["rc"] == 0:
                    r = run([cli, "check", str(cert)], COMMAND_TIMEOUT)
                    r.pop("stdout", None)
                else:
                    r = {"rc": None, "wall": 0.0, "error": "no certificate to check"}
                extra["check"] = r
                log(f"  check: exit {r['rc']}, {r['wall']:.2f} s" + (f" ({r['error']})" if "error" in r else ""))
                raw["cases"]["a"].update(certificate=extra["certificate"], check=extra["check"])
    judged = {k: judge(k, s, summ) for k, s in summ.items()}
    raw["summary"] = summ
    rows = table_rows(summ, judged, extra, jobs_note)
    run_seconds = time.perf_counter() - t_run
    out = Path(args.out)
    if not out.is_absolute():
        out = REPO / out
    write_atomic(out, markdown(args, facts, started, run_seconds, rows, raw, jobs_note))
    print_table(rows)
    print(f"wrote {out} ({run_seconds / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
