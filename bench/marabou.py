"""cnnproof against Marabou on small tasks: the same question, both tools' wall times, one table.

Not part of the verifier (nothing here is trusted; it times ``verifier.prove.prove`` and
Marabou on the files ``cnnproof export-vnnlib`` writes, and counts where they agree). Marabou
solves in floating point: its answers are evidence, not proof.

Cases, in this order, one at a time, all in this one process:

- every task of ``proofs/tasks/`` with at most ``--max-scenes`` scenes (default 2000), the
  paper's network (``build_network``), the strict claim (or ``--margin Q``);
- two mutants of the paper's network on the small binary task of ``tests/test_mutation.py``
  (written out below as ``MUTATION_TASK``): the first single-parameter change of +3 (in
  parameter order) that the exhaustive prover refutes with a negative worst-case gap, and the
  first change of +1 it still proves.

For each case:

- **cnnproof exhaustive**: ``prove(task, net, q, method="exhaustive")`` (δ = 0 only);
- **cnnproof auto**: ``prove(task, net, q, method="auto")`` (compositional where the network has
  its form: the whole task in one proof, independent of the number of scenes);
- **export**: ``verifier.vnnlib.export``: the ONNX file and one VNN-LIB query per scene;
- **Marabou**: every query, through ``verifier.vnnlib.MarabouRunner`` (one warm child process; a
  query that uses more than ``--limit`` CPU seconds of solving, or ten times that plus 10 s of
  wall time, is killed and retried with another bound-tightening strategy; the child's start-up
  and its reading of the network are not counted against the limit). *total* is the wall time of
  all queries (including the child's start, its reading of the network and the pipe);
  *per query* the median and maximum of Marabou's own time (reading the query and solving);
- **agreement**: with δ = 0, each scene's exact gap (``index.json``) decides sat/unsat; scenes
  within 10^-3 of the threshold are not judged. With δ > 0 only a PROVED verdict with worst-case
  margin at least 10^-3 above the threshold is judged (then every scene must be unsat).

Usage (from the repository root, with ``pip install -e '.[crosscheck]'``)::

    python bench/marabou.py [--max-scenes 2000] [--margin Q] [--limit 60] [--out bench/results/marabou.md]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import glob
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from machine import machine_facts  # bench/machine.py (this folder is on sys.path)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = "bench/results/marabou.md"
DEFAULT_MAX_SCENES = 2000
DEFAULT_LIMIT = 60.0
TOL = Fraction(1, 1000)

# tests/test_mutation.py's BINARY task: two 2x2 binary features on a 5x5 canvas
MUTATION_TASK = """name = "mutation_binary"
[canvas]
height = 5
width = 5
[pixels]
levels = [0, 1]
[features.a]
template = "11\\n10"
[features.b]
template = "01\\n11"
[classes.x]
required = ["a"]
[classes.y]
required = ["b"]
"""


# ---------------------------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------------------------


def cases(max_scenes: int):
    """(label, task, network) for every case, in table order."""
    from cnnproof.constructions.scenes import SearchBudgetExceeded, count_scenes
    from cnnproof.constructions.task import load_task, task_from_toml
    from cnnproof.constructions.task_to_network import build_network

    out = []
    for path in sorted(glob.glob(str(REPO / "proofs" / "tasks" / "*.toml"))):
        task = load_task(path)
        try:
            total = 0
            for cls in task.classes:
                total += count_scenes(task, cls, limit=max_scenes - total)
        except SearchBudgetExceeded:
            print(f"skipping {task.name}: more than {max_scenes} scenes", file=sys.stderr)
            continue
        out.append((task.name, task, build_network(task)))
    task = task_from_toml(MUTATION_TASK, source="<bench/marabou.py>")
    net = build_network(task)
    out.append(("mutation_binary (paper's net)", task, net))
    refuted, proved = _mutants(task, net)
    if refuted:
        out.append((f"mutation_binary, {refuted[0]}", task, refuted[1]))
    if proved:
        out.append((f"mutation_binary, {proved[0]}", task, proved[1]))
    return out


def _mutants(task, net):
    from cnnproof.verifier.exact import format_rational
    from cnnproof.verifier.network import with_parameter
    from cnnproof.verifier.outcome import Proved, Question, Refuted
    from cnnproof.verifier.prove import prove

    q = Question("zero_error")
    refuted = proved = None
    for path, arr in net.parameters():
        for i in range(arr.size):
            old = arr.ravel()[i]
            if refuted is None:
                m = with_parameter(net, path, i, old + 3)
                v = prove(task, m, q, method="exhaustive")
                if isinstance(v, Refuted) and v.details.get("worst_margin", 0) < 0:
                    refuted = (f"{path}[{i}] {format_rational(old)} -> {format_rational(old + 3)}", m)
            if proved is None:
                m = with_parameter(net, path, i, old + 1)
                if isinstance(prove(task, m, q, method="exhaustive"), Proved):
                    proved = (f"{path}[{i}] {format_rational(old)} -> {format_rational(old + 1)}", m)
            if refuted and proved:
                return refuted, proved
    return refuted, proved


# ---------------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------------


def measure(label, task, net, margin, runner, workdir: Path) -> dict:
    from cnnproof.verifier.exact import format_rational
    from cnnproof.verifier.outcome import Proved, Question
    from cnnproof.verifier.prove import prove
    from cnnproof.verifier.vnnlib import export, marabou_check

    q = Question("zero_error", margin)
    thr = Fraction(0) if margin is None else margin
    rec: dict = {"case": label, "task": task.name, "noise": format_rational(task.noise),
                 "margin": None if margin is None else format_rational(margin)}
    for method in ("exhaustive", "auto"):
        if method == "exhaustive" and task.noise != 0:
            rec[method] = {"verdict": "n/a", "reason": "noise > 0"}
            continue
        t0 = time.perf_counter()
        v = prove(task, net, q, method=method)
        rec[method] = {"verdict": v.verdict, "seconds": time.perf_counter() - t0, "method": v.method,
                       "margin": None if getattr(v, "margin", None) is None else format_rational(v.margin)}
        if method == "auto":
            verdict, vmargin = v, getattr(v, "margin", None)
    folder = workdir / f"case{len(os.listdir(workdir))}"
    t0 = time.perf_counter()
    ex = export(task, net, folder, margin=margin)
    rec["export_seconds"] = time.perf_counter() - t0
    rec["scenes"] = len(ex.queries)
    t0 = time.perf_counter()
    answers = marabou_check(folder, [sq.file for sq in ex.queries], runner=runner)
    rec["marabou_seconds"] = time.perf_counter() - t0
    secs = [a.seconds for a in answers if a.result in ("sat", "unsat")]
    rec["marabou_median"] = statistics.median(secs) if secs else None
    rec["marabou_max"] = max(secs) if secs else None
    counts: dict[str, int] = {}
    for a in answers:
        counts[a.result] = counts.get(a.result, 0) + 1
    rec["marabou_results"] = counts
    rec["marabou_retried"] = sum(1 for a in answers if a.hung)
    # agreement with cnnproof's exact arithmetic
    agree = disagree = skipped = 0
    near: dict[str, int] = {}  # Marabou's answers on the scenes too close to the threshold to judge
    for sq, a in zip(ex.queries, answers):
        if task.noise == 0:
            if abs(sq.worst_gap - thr) < TOL:
                skipped += 1
                near[a.result] = near.get(a.result, 0) + 1
                continue
            want = "unsat" if q.holds_for(sq.worst_gap) else "sat"
        elif isinstance(verdict, Proved) and vmargin is not None and vmargin - thr >= TOL:
            want = "unsat"
        else:
            skipped += 1
            continue
        if a.result == want:
            agree += 1
        else:
            disagree += 1
            rec.setdefault("disagreements", []).append({"file": sq.file, "marabou": a.result, "expected": want})
    rec.update(agree=agree, disagree=disagree, skipped=skipped, near_threshold=near)
    return rec


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------

HEAD = ["case", "scenes", "δ", "cnnproof exhaustive", "cnnproof auto", "export", "Marabou: all queries",
        "per query (median / max)", "Marabou says", "agreement"]


def fs(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 0.01:
        return f"{s * 1000:.1f} ms"
    if s < 10:
        return f"{s:.2f} s"
    return f"{s:.1f} s"


def _prover_cell(r: dict) -> str:
    if r["verdict"] == "n/a":
        return f"n/a ({r['reason']})"
    text = f"{r['verdict']} {fs(r['seconds'])}"
    if r["method"] not in ("exhaustive", "auto"):
        text += f" ({r['method'].removeprefix('auto/')})"
    return text


def row(rec: dict) -> list[str]:
    res = rec["marabou_results"]
    if set(res) <= {"unsat"}:
        says = "no violation"
    elif set(res) <= {"sat", "unsat"}:
        says = f"violation in {res.get('sat', 0)} scenes"
    else:
        says = ", ".join(f"{k} {v}" for k, v in sorted(res.items()))
    if rec["marabou_retried"]:
        says += f" ({rec['marabou_retried']} retried after a hang)"
    agreement = f"{rec['agree']} agree" + (f", {rec['disagree']} DISAGREE" if rec["disagree"] else "")
    near = rec.get("near_threshold") or {}
    if near:
        agreement += (f"; {sum(near.values())} at the threshold, not judged (Marabou: "
                      + ", ".join(f"{v} {k}" for k, v in sorted(near.items())) + ")")
    elif rec["skipped"]:
        agreement += f"; {rec['skipped']} not judged (noise)"
    ratio = ""
    auto = rec["auto"]
    if auto.get("seconds"):
        ratio = f" ({rec['marabou_seconds'] / auto['seconds']:,.0f}x auto)"
    return [rec["case"], f"{rec['scenes']:,}", rec["noise"], _prover_cell(rec["exhaustive"]), _prover_cell(auto),
            fs(rec["export_seconds"]), fs(rec["marabou_seconds"]) + ratio,
            f"{fs(rec['marabou_median'])} / {fs(rec['marabou_max'])}", says, agreement]


def markdown(args, facts, started, run_seconds, recs) -> str:
    claim = "strict (N_c > N_c')" if args.margin is None else f"margin {args.margin} (N_c - N_c' >= {args.margin})"
    lines = [
        "# cnnproof against Marabou on small tasks",
        "",
        f"Written by `bench/marabou.py`, started {started}. Command:",
        "",
        "    python bench/marabou.py " + " ".join(args.argv),
        "",
        f"- machine: {facts.get('platform')}, {facts.get('cpu', 'unknown CPU')}, {facts.get('cores')} cores "
        f"({facts.get('usable_cores', '?')} usable)",
        f"- software: python {facts['python']}, maraboupy {facts['maraboupy']}, onnx {facts['onnx']}, "
        f"onnxruntime {facts['onnxruntime']}, z3 {facts['z3-solver']}, cnnproof {facts['cnnproof']} at commit "
        f"{facts.get('commit', '?')}" + (" (plus uncommitted changes)" if facts.get("dirty") else ""),
        f"- run time {run_seconds / 60:.1f} min, one case at a time in one process; Marabou in one child "
        f"process, a query killed after {args.limit:g} s and retried with another strategy",
        f"- question: zero error, {claim}, for every class and scene; the paper's network unless the case names a mutant",
        "",
        "*cnnproof exhaustive* and *cnnproof auto* prove the whole task (`prove(task, net, q, method=...)`;",
        "auto is the compositional prover wherever the network has its form). *export* writes the ONNX file and",
        "one VNN-LIB query per scene. *Marabou: all queries* is the wall time of answering every scene's query",
        "(with its ratio to cnnproof auto); *per query* is Marabou's own time per query (reading the VNN-LIB",
        "file and solving). *agreement*: with δ = 0 each scene's exact gap decides sat/unsat and scenes within",
        "10^-3 of the threshold are not judged (a tie at exactly the threshold is a violation for cnnproof's",
        "strict claim and for VNN-LIB's `<=` alike, but too close to call in floating point); with δ > 0 only",
        "a proof with a margin 10^-3 clear of the threshold is judged (every scene then unsat). Marabou",
        "computes in floating point: its answers are evidence, not proof.",
        "",
        "| " + " | ".join(HEAD) + " |",
        "|" + "|".join("---" for _ in HEAD) + "|",
    ]
    for rec in recs:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row(rec)) + " |")
    lines += ["", "<!-- marabou-data (raw measurements)", json.dumps(recs, indent=1, sort_keys=True), "-->", ""]
    return "\n".join(lines)


def print_table(recs) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        body = [HEAD] + [row(r) for r in recs]
        widths = [max(len(x) for x in col) for col in zip(*body)]
        for r in body:
            print("  ".join(x.ljust(w) for x, w in zip(r, widths)))
        return
    t = Table(title="cnnproof against Marabou (the same question, every scene)")
    for h in HEAD:
        t.add_column(h, justify="right" if h in ("scenes",) else "left")
    for r in recs:
        t.add_row(*row(r))
    console = Console()
    if not console.is_terminal:  # a log file: do not wrap at 80 columns
        console = Console(width=240)
    console.print(t)


def write_atomic(path: Path, text: str) -> None:
    """The project's atomic write, creating the results folder first."""
    from cnnproof.verifier.network import write_atomic as _write

    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, text)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="bench/marabou.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-scenes", type=int, default=DEFAULT_MAX_SCENES, help="skip tasks with more scenes (default 2000)")
    ap.add_argument("--margin", default=None, metavar="Q", help="ask N_c - N_c' >= Q (default: the strict claim)")
    ap.add_argument("--limit", type=float, default=DEFAULT_LIMIT, help="CPU seconds of solving per Marabou query before it is killed and retried (default 60)")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"Markdown output (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    args.argv = argv
    from cnnproof.verifier.exact import parse_rational
    from cnnproof.verifier.vnnlib import MarabouRunner

    margin = None if args.margin is None else parse_rational(args.margin)
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    facts = machine_facts(("maraboupy", "onnx", "onnxruntime", "z3-solver"))
    t_run = time.perf_counter()
    recs = []
    workdir = Path(tempfile.mkdtemp(prefix="cnnproof-marabou-"))
    try:
        with MarabouRunner(limit=args.limit) as runner:
            for label, task, net in cases(args.max_scenes):
                rec = measure(label, task, net, margin, runner, workdir)
                recs.append(rec)
                print(f"[{time.perf_counter() - t_run:7.1f} s] " + " | ".join(row(rec)), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    run_seconds = time.perf_counter() - t_run
    out = Path(args.out)
    write_atomic(out, markdown(args, facts, started, run_seconds, recs))
    print_table(recs)
    print(f"wrote {out} ({run_seconds / 60:.1f} min)")
    return 1 if any(r["disagree"] for r in recs) else 0


if __name__ == "__main__":
    sys.exit(main())
