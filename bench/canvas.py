"""Issue 14 item 2: the bundled task (faces) on growing canvases, with the compositional method.

Not part of the verifier (nothing here is trusted; it runs the CLI's own entry point and reads
its JSON). For each size N of ``--sizes`` (default 8, 64, 128, 256, 512), faces.toml with its
canvas set to N x N is written to a temporary directory and, in a fresh Python process (one at a
time, killed after ``--timeout`` seconds), three commands run through ``cnnproof.cli.main``:

    cnnproof check-task FACES_N.toml --json --certificate W.json    (well-posedness)
    cnnproof prove FACES_N.toml --json --certificate Z.json         (zero error, paper's network)
    cnnproof check W.json; cnnproof check Z.json                    (the fenced checker)

For each: the verdict, the route (the JSON's ``method``: ``compositional``, or
``compositional->smt`` after a fallback) and the wall time of the call (imports and interpreter
start-up excluded: they are paid once per process). The scene-search work of check-task and of
prove is read from ``cnnproof.constructions.scene_search.WORK`` (searches and search nodes of
``appear_together``), and for ``check`` the largest canvas a co-occurrence query of the checker
is posed on (``verifier.checker.scenes.bounded_canvas``); the check columns add up both
certificates.

Usage (from the repository root)::

    python bench/canvas.py [--sizes 8,64,128,256,512] [--timeout 600] [--out bench/results/canvas.md]

A Markdown table with the machine facts is written to ``--out``; the table is also printed.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FACES = REPO / "constructions" / "catalogue" / "faces.toml"


def one(n: int, folder: Path) -> dict:
    """Measure size n in this process (called in a fresh child by the parent)."""
    import contextlib
    import io

    from cnnproof import cli
    from cnnproof.constructions.scene_search import WORK
    from cnnproof.verifier.checker import scenes as checker_scenes
    from cnnproof.verifier.checker.check import check_certificate

    text = FACES.read_text().replace("height = 8", f"height = {n}").replace("width = 8", f"width = {n}")
    task = folder / f"faces{n}.toml"
    task.write_text(text)
    out: dict = {"size": n}
    for cmd in ("check-task", "prove"):
        cert = folder / f"{cmd}{n}.json"
        before = dict(WORK)
        buf = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(buf):
            rc = cli.main([cmd, str(task), "--json", "--certificate", str(cert)])
        secs = time.perf_counter() - t0
        res = json.loads(buf.getvalue())
        out[cmd] = {"rc": rc, "verdict": res.get("verdict"), "route": res.get("method"), "seconds": secs,
                    "searches": WORK["searches"] - before.get("searches", 0),
                    "nodes": WORK["nodes"] - before.get("nodes", 0)}
        if True:  # check both certificates with the fenced checker
            canv = []
            real = checker_scenes.can_cooccur

            def spy(task_, cls, goals):
                canv.append(checker_scenes.bounded_canvas(task_, cls, goals))
                return real(task_, cls, goals)

            checker_scenes.can_cooccur = spy
            t0 = time.perf_counter()
            res = check_certificate(cert)
            secs = time.perf_counter() - t0
            checker_scenes.can_cooccur = real
            out["check " + cmd] = {"valid": res.ok, "reason": res.reason, "seconds": secs, "queries": len(canv),
                            "canvas": max(canv, default=None, key=lambda v: v[2] * v[3])}
    return out


def table(rows: list[dict]) -> str:
    head = ("| N | check-task: verdict, route | s | scene work (searches / nodes) "
            "| prove: verdict, route | s | scene work (searches / nodes) "
            "| check (both certificates): result | s | checker co-occurrence queries, largest canvas |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['error']} |" + " |" * 8)
            continue
        ct, pr = r["check-task"], r["prove"]
        cks = [r["check check-task"], r["check prove"]]
        ck = {"valid": all(c["valid"] for c in cks), "reason": "; ".join(c["reason"] for c in cks if not c["valid"]),
              "seconds": sum(c["seconds"] for c in cks), "queries": sum(c["queries"] for c in cks),
              "canvas": max((c["canvas"] for c in cks if c["canvas"]), default=None, key=lambda v: v[2] * v[3])}
        canvas = "-" if ck["canvas"] is None else f"{ck['canvas'][2]}x{ck['canvas'][3]}"
        lines.append(
            f"| {r['size']}x{r['size']} | {ct['verdict']}, {ct['route']} | {ct['seconds']:.2f} | {ct['searches']} / {ct['nodes']} "
            f"| {pr['verdict']}, {pr['route']} | {pr['seconds']:.2f} | {pr['searches']} / {pr['nodes']} "
            f"| {'VALID' if ck['valid'] else 'REJECTED: ' + ck['reason']} | {ck['seconds']:.2f} | {ck['queries']}, {canvas} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="8,64,128,256,512")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--out", default="bench/results/canvas.md")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one is not None:
        print(json.dumps(one(a.one, Path(a.dir))))
        return 0
    sizes = [int(s) for s in a.sizes.split(",")]
    rows = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            try:
                p = subprocess.run([sys.executable, __file__, "--one", str(n), "--dir", d], capture_output=True,
                                   text=True, timeout=a.timeout)
                if p.returncode != 0:
                    rows.append({"size": n, "error": f"exit {p.returncode}: {(p.stderr.strip().splitlines() or ['?'])[-1]}"})
                else:
                    rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
            except subprocess.TimeoutExpired:
                rows.append({"size": n, "error": f"timeout (> {a.timeout:g} s)"})
            print(f"  {n}x{n} done", file=sys.stderr)
    sys.path.insert(0, str(HERE))
    from machine import machine_facts

    facts = machine_facts()
    text = "\n".join([
        "# faces on growing canvases (issue 14 item 2)", "",
        f"Command: `python bench/canvas.py --sizes {a.sizes} --timeout {a.timeout:g}`; "
        f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; total {time.perf_counter() - t_all:.1f} s.", "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in facts.items()), "",
        "Seconds are wall time of the call inside one process (start-up and imports excluded).", "",
        table(rows), "",
        "<!-- raw\n" + json.dumps(rows, indent=1) + "\n-->", ""])
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(out)
    print(table(rows))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
