"""Issue 11: `cnnproof train` on a matrix of tasks, architectures and seeds.

Not part of the verifier: it runs the CLI (`cnnproof train ... --json`) in a fresh process per
run, one at a time, and prints one table row per run (rounds, counterexamples per round, the
final verdict, margin, float32 claim and wall time), then each run's rounds. The results go to
``--out`` (default bench/results/train_to_proof.txt) and are quoted in docs/trained-example.md.

Usage (from the repository root)::

    python bench/train_to_proof.py [--tasks proofs/tasks/faces.toml,...] [--archs paper,conv5x16]
                                   [--seeds 0,1,2] [--rounds 10] [--time 900] [--extra "..."]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def run(task: str, arch: str, seed: int, rounds: int, budget: float, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "m.onnx"
        argv = [sys.executable, "-m", "cnnproof", "train", task, "-o", str(out), "--arch", arch, "--seed", str(seed),
                "--rounds", str(rounds), "--time", str(budget), "--json", *extra]
        t0 = time.perf_counter()
        # stdout is the JSON; stderr (each round's line as it ends) goes through to ours
        r = subprocess.run(argv, stdout=subprocess.PIPE, text=True, cwd=REPO)
        wall = time.perf_counter() - t0
        try:
            js = json.loads(r.stdout)
        except json.JSONDecodeError:
            js = {"verdict": f"exit {r.returncode} (its stderr is above)", "rounds": []}
        float_claim = None
        if out.exists():
            import onnx

            meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
            float_claim = meta.get("cnnproof.float32_status")
        js.update(exit=r.returncode, wall=wall, float32=float_claim, task=Path(task).stem, arch=arch, seed=seed)
        return js


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", default="proofs/tasks/faces.toml")
    ap.add_argument("--archs", default="paper,conv5x16")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--time", type=float, default=900)
    ap.add_argument("--extra", default="", help="more `cnnproof train` options, e.g. \"--n-train 4000\"")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "train_to_proof.txt")
    a = ap.parse_args()
    rows = []
    lines = [f"bench/train_to_proof.py  {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
             "command: bench/train_to_proof.py " + " ".join(shlex.quote(x) for x in sys.argv[1:]), ""]
    head = f"{'task':10} {'arch':18} {'seed':>4} {'rounds':>6} {'verdict':>8} {'margin':>12} {'float32':>8} {'wall':>8}  errors per round"
    print(head, flush=True)
    lines.append(head)
    for task in a.tasks.split(","):
        for arch in a.archs.split(","):
            for seed in (int(s) for s in a.seeds.split(",")):
                js = run(task, arch, seed, a.rounds, a.time, shlex.split(a.extra))
                rs = js.get("rounds", [])
                last = rs[-1] if rs else {}
                errs = " ".join("?" if r["known_errors"] is None else str(r["known_errors"]) for r in rs)
                row = (f"{js['task']:10} {arch:18} {seed:4d} {len(rs):6d} {js.get('verdict', '?'):>8} "
                       f"{str(last.get('margin')):>12} {str(js['float32']):>8} {js['wall']:7.1f}s  {errs}")
                print(row, flush=True)
                lines.append(row)
                rows.append(js)
    lines += ["", "rounds (verdict, known errors, pool, seconds):"]
    for js in rows:
        lines.append(f"  {js['task']} {js['arch']} seed {js['seed']}: " + "; ".join(
            f"{r['round']}: {r['verdict']} {r['known_errors']} err, pool {r['pool']}, {r['seconds']:.1f}s"
            for r in js.get("rounds", [])))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
