"""Issue 9 item 5: time to verdict for briefly trained networks, and the paper's networks through
the general engine. Not part of the verifier (nothing here is trusted).

Table 1: for each ``--arch`` of examples/train_cnn.py x canvas size x class count, a task from
bench/gen_tasks.py (seed 0, 3K random 5x5 features), a network trained briefly on it (accuracy is
not the point: time to verdict is), then ``cnnproof prove TASK --net MODEL.onnx --classes ...``
with ``--method auto`` (verdict, route, seconds), beside ``--method exhaustive`` and
``--method smt`` under ``--timeout`` (skipped from ``--brute-max`` up: hopeless there).

Table 2: the paper's constructed network (``cnnproof prove TASK``, no ``--net``) for 2, 10 and 100
classes at 28x28 and the catalogue's large28, by today's route (``auto``: the paper's special
case) beside the general engine (configuration lemmas) forced on the same network. Forcing is a
hook in this script only: ``compositional.decompose`` is replaced by a function that says "not the
paper's form", so ``_zero_error_normal`` goes to ``local_decompose`` and ``_zero_error_general``.

Every measurement runs in a fresh process, killed past its deadline. Trained models and tasks
are cached under ``--work`` (reruns skip training). ``--profile`` runs cProfile on the slowest
finished auto cell and appends the top functions to the report.

    python bench/trained.py [--quick] [--work DIR] [--out bench/results/trained.md]
                            [--timeout 60] [--cell-timeout 300] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
ARCHS = ("paper", "conv5x16", "conv3-pool-conv3")
SIZES = (12, 28, 64, 256)
CLASSES = (2, 10, 100)
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           OPENBLAS_NUM_THREADS="1")


def run(cmd, timeout):
    """(returncode or None on timeout, stdout, stderr, wall seconds)."""
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=ROOT)
        return p.returncode, p.stdout, p.stderr, time.perf_counter() - t
    except subprocess.TimeoutExpired:
        return None, "", "", time.perf_counter() - t


def task_file(work: Path, size: int, k: int) -> Path:
    f = work / "tasks" / f"s{size}_k{k}.toml"
    if not f.exists():
        f.parent.mkdir(parents=True, exist_ok=True)
        rc, out, err, _ = run([PY, "bench/gen_tasks.py", "--classes", str(k), "--size", str(size),
                               "--seed", "0", "-o", str(f)], 600)
        if rc != 0:
            raise RuntimeError(f"gen_tasks {size} {k}: {err.strip().splitlines()[-1:] if err else rc}")
    return f


def class_names(task: Path) -> list[str]:
    """The class names in the task's order (the ONNX output order of train_cnn.py)."""
    code = ("import sys;from cnnproof.constructions.task import load_task;"
            "print(','.join(load_task(sys.argv[1]).class_names))")
    rc, out, err, _ = run([PY, "-c", code, str(task)], 300)
    if rc != 0:
        raise RuntimeError(f"loading {task}: {err.strip()[-300:]}")
    return out.strip().split(",")


def train_budget(size: int, k: int) -> tuple[int, int]:
    """(n_train, epochs): brief, sized for 2 shared cores; at least one image per class."""
    if size >= 256:
        return max(k, 100), 1
    if size >= 64:
        return max(k, 200), 1
    return max(2 * k, 300), 3


# examples/train_cnn.py, with its ``sample`` step cached per (task, n, seed) under WORK/data, so that
# the three archs of one cell share their images (sampling a 256x256 100-class task takes minutes)
TRAIN = r"""
import importlib.util, shutil, sys
from pathlib import Path
work = Path(sys.argv[1])
spec = importlib.util.spec_from_file_location("train_cnn", "examples/train_cnn.py")
tc = importlib.util.module_from_spec(spec); sys.modules["train_cnn"] = tc; spec.loader.exec_module(tc)
plain = tc.sample
def sample(task, n, seed, path):
    cache = work / "data" / f"{Path(task).stem}_n{n}_s{seed}.npz"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        try:
            plain(task, n, seed, cache)
        except SystemExit as e:
            if "Population must be a sequence" not in str(e):
                raise
            # constructions/scenes.py _rejection_sample: rng.sample(anchors) on a lazy AnchorGrid
            # crashes when its backtracking fallback runs (dense canvases); sample in this process
            # with anchors_for returning lists (a bench-side workaround; the bug is reported)
            from cnnproof.constructions import scenes
            from cnnproof.cli import main as cli
            grid = scenes.anchors_for
            scenes.anchors_for = lambda *a: list(grid(*a))
            code = cli(["sample", str(task), "-n", str(n), "-o", str(cache), "--seed", str(seed)])
            scenes.anchors_for = grid
            if code != 0:
                raise SystemExit(f"cnnproof sample (anchors as lists) failed ({code})")
            print("sampled with the AnchorGrid workaround", file=sys.stderr)
    shutil.copyfile(cache, path)
    return _load(task, path)
def _load(task, path):
    import numpy as np
    d = np.load(path, allow_pickle=False)
    if not (d["labels"] == d["true_labels"]).all():
        raise SystemExit(f"{task}: the task is not well-posed")
    return d["images"], d["labels"], [str(c) for c in d["class_names"]]
tc.sample = sample
raise SystemExit(tc.main(sys.argv[2:]))
"""


def model_file(work: Path, arch: str, size: int, k: int, task: Path, train_timeout: float):
    """(path to MODEL.onnx or None, note, training wall seconds or None if cached)."""
    d = work / "models" / f"{arch}_s{size}_k{k}"
    m = d / "MODEL.onnx"
    if m.exists():
        return m, "cached", None
    n, ep = train_budget(size, k)
    cmd = [PY, "-c", TRAIN, str(work), "--task", str(task), "--out", str(d), "--arch", arch,
           "--n-train", str(n), "--n-test", str(20 if size >= 64 else 50), "--epochs", str(ep),
           "--no-prove", "--no-census"]
    rc, out, err, s = run(cmd, train_timeout)
    if rc is None:
        return None, f"training timed out (> {train_timeout:.0f} s)", s
    if rc != 0 or not m.exists():
        return None, f"training failed (exit {rc}): {(err or out).strip().splitlines()[-1:]}", s
    acc = [l for l in out.splitlines() if l.startswith("weights and biases rounded")]
    (d / "train.txt").write_text(out)
    return m, (acc[0].split(": ", 1)[1] if acc else ""), s


def prove_cli(task: Path, net: Path | None, names, method: str, timeout: float) -> dict:
    cmd = [PY, "-m", "cnnproof", "prove", str(task), "--method", method, "--json", "--timeout", str(timeout)]
    if net is not None:
        cmd += ["--net", str(net), "--classes", ",".join(names)]
    rc, out, err, wall = run(cmd, timeout + 60)
    if rc is None:
        return {"verdict": "timeout", "method": method, "seconds": None, "wall": wall}
    try:
        j = json.loads(out)
    except json.JSONDecodeError:
        return {"verdict": f"error (exit {rc})", "method": method, "seconds": None, "wall": wall,
                "error": (err or out).strip()[-300:]}
    return {"verdict": j.get("verdict"), "method": j.get("method"), "seconds": j.get("seconds"),
            "wall": wall, "reason": j.get("reason")}


def fmt(r: dict | None, timeout: float) -> str:
    if r is None:
        return ""
    if isinstance(r, str):
        return r
    if r["verdict"] == "timeout" or (r["verdict"] == "UNKNOWN" and r["seconds"] is not None
                                     and r["seconds"] >= 0.9 * timeout):
        return f"timeout (>{timeout:.0f} s)"
    s = "" if r["seconds"] is None else f" {r['seconds']:.2f} s"
    why = f" ({r['reason'][:100]})" if r["verdict"] == "UNKNOWN" and r.get("reason") else ""
    return f"{r['verdict']}{s}{why}"


# -- the paper's networks: today's route against the general engine forced ------------------------

FORCE = r"""
import json, sys, time
from cnnproof.constructions.task import load_task
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier import compositional
from cnnproof.verifier.outcome import Question
from cnnproof.verifier.prove import prove
task = load_task(sys.argv[1]); net = build_network(task)
if sys.argv[2] == "general":   # the hook: the paper's form is not recognised
    compositional.decompose = lambda net: "forced off by bench/trained.py"
t = time.perf_counter()
v = prove(task, net, Question("zero_error", None), method=sys.argv[3], timeout=float(sys.argv[4]))
print(json.dumps({"verdict": v.verdict, "method": v.method, "seconds": time.perf_counter() - t,
                  "reason": getattr(v, "reason", None)}))
"""


def prove_paper(task: Path, mode: str, timeout: float) -> dict:
    rc, out, err, wall = run([PY, "-c", FORCE, str(task), mode, "auto", str(timeout)], timeout + 60)
    if rc is None:
        return {"verdict": "timeout", "method": "", "seconds": None, "wall": wall}
    try:
        return dict(json.loads(out.strip().splitlines()[-1]), wall=wall)
    except (json.JSONDecodeError, IndexError):
        return {"verdict": f"error (exit {rc})", "method": "", "seconds": None, "wall": wall,
                "error": err.strip()[-300:]}


def profile(task: Path, net: Path, names, timeout: float, top: int = 15) -> str:
    prof = net.parent / "prove.prof"
    cmd = [PY, "-m", "cProfile", "-o", str(prof), "-m", "cnnproof", "prove", str(task), "--net", str(net),
           "--classes", ",".join(names), "--json", "--timeout", str(timeout)]
    rc, _, err, wall = run(cmd, timeout + 120)
    if rc is None or not prof.exists():
        return f"(profiling did not finish: exit {rc}, {wall:.0f} s)"
    code = ("import pstats,sys;p=pstats.Stats(sys.argv[1]);p.sort_stats('tottime').print_stats(%d);"
            "p.sort_stats('cumulative').print_stats(%d)" % (top, top))
    _, out, _, _ = run([PY, "-c", code, str(prof)], 120)
    keep = [l for l in out.splitlines() if l.strip() and not l.startswith(("   Ordered", "   List reduced"))]
    return "\n".join(keep)


def header(argv) -> list[str]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return ["# Trained networks: time to verdict (bench/trained.py)", "",
            f"- command: `python bench/trained.py {' '.join(argv)}`",
            f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; cnnproof commit {commit}",
            f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), python {platform.python_version()}",
            ""]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="28x28, 10 classes, every arch; paper table at 2 and 10 classes")
    ap.add_argument("--work", type=Path, default=Path("/tmp/cnnproof-bench-trained"), help="cache of tasks and trained models")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "trained.md")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--classes", default=",".join(map(str, CLASSES)))
    ap.add_argument("--timeout", type=float, help="exhaustive and smt: give up after S s (60; --quick: 20)")
    ap.add_argument("--cell-timeout", type=float, help="auto and the paper table: per cell (300; --quick: 60)")
    ap.add_argument("--train-timeout", type=float, default=600)
    ap.add_argument("--brute-max", type=int, default=64, help="no exhaustive/smt from this canvas size up (64)")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--skip-trained", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile the slowest finished auto cell")
    a = ap.parse_args(argv)
    if a.timeout is None:
        a.timeout = 20.0 if a.quick else 60.0
    if a.cell_timeout is None:
        a.cell_timeout = 60.0 if a.quick else 300.0
    archs = a.archs.split(",")
    sizes = [28] if a.quick else [int(s) for s in a.sizes.split(",")]
    classes = [10] if a.quick else [int(k) for k in a.classes.split(",")]
    a.work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    raw: list[dict] = []
    gave_up: list[tuple] = []  # (arch, method, size, classes) where exhaustive or smt timed out
    rows: dict[tuple, str] = {}  # (arch index, size, classes) -> table row
    paper_rows: list[str] = []
    prof_lines: list[str] = []

    def render() -> list[str]:
        out = header(argv)
        if not a.skip_trained:
            out += ["## Trained networks (`--net MODEL.onnx`)", "",
                    "A task from `bench/gen_tasks.py --classes K --size N --seed 0`, a network trained by "
                    "`examples/train_cnn.py --arch A` on a few images for one to three epochs (`train_budget` in the "
                    "script: 300 images and 3 epochs up to 28x28, 200 and 1 at 64x64, 100 and 1 at 256x256; weights "
                    "rounded to multiples of 2^-8), its accuracy after rounding, then "
                    f"`cnnproof prove TASK --net MODEL.onnx --classes ... --json`. auto: `--method auto`, killed past "
                    f"{a.cell_timeout:.0f} s. exhaustive and smt: `--timeout {a.timeout:.0f}`, not run from "
                    f"{a.brute_max}x{a.brute_max} up (hopeless there: the scene count grows with the canvas, and "
                    "bench/results/sweep.md shows both stop at about 12x12 to 24x24 even on a 2-class task), nor on a "
                    "cell at least as large (canvas and classes) as one of the same arch where that method timed out. "
                    "Seconds: the proof time that `prove --json` reports (not the interpreter start or the ONNX import).", "",
                    "| arch | canvas | classes | train (rounded weights) | auto: route | verdict | seconds | exhaustive | smt |",
                    "|---|---|---|---|---|---|---|---|---|"]
            out += [rows[key] for key in sorted(rows)] + [""]
        if paper_rows:
            out += ["## The paper's networks (`build_network`): today's route against the general engine", "",
                    "today: `prove(task, build_network(task), method=\"auto\")` (the paper's special case); "
                    "general: the same with `compositional.decompose` forced to answer \"not the paper's form\", "
                    f"so the configuration lemmas (`_zero_error_general`) decide. Killed past {a.cell_timeout:.0f} s. "
                    "Seconds: the `prove` call only, in a fresh process.", "",
                    "| task | today: route | verdict | seconds | general: route | verdict | seconds | general / today |",
                    "|---|---|---|---|---|---|---|---|"] + paper_rows + [""]
        return out + prof_lines

    def flush():
        body = render() + ["", f"Total run time {time.perf_counter() - t_all:.0f} s.", "",
                           "<!-- raw\n" + json.dumps(raw, indent=1) + "\n-->", ""]
        a.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.out.with_suffix(".tmp")
        tmp.write_text("\n".join(body))
        tmp.replace(a.out)

    def trained_cell(arch, n, k):
        key = (archs.index(arch), n, k)
        cell = {"arch": arch, "size": n, "classes": k}
        raw.append(cell)
        try:
            task = task_file(a.work, n, k)
            names = class_names(task)
        except RuntimeError as e:
            rows[key] = f"| {arch} | {n}x{n} | {k} | impossible: {e} | | | | | |"
            cell["error"] = str(e)
            return
        m, note, ts = model_file(a.work, arch, n, k, task, a.train_timeout)
        cell.update(train_note=note, train_seconds=ts)
        if m is None:
            rows[key] = f"| {arch} | {n}x{n} | {k} | {note} | | | | | |"
            return
        au = prove_cli(task, m, names, "auto", a.cell_timeout)
        cell["auto"] = au
        shown = []
        for meth in ("exhaustive", "smt"):
            # hopeless: a cell of this arch no larger in size and classes timed out
            stop = [(n2, k2) for (ar, me, n2, k2) in gave_up if ar == arch and me == meth and n2 <= n and k2 <= k]
            if n >= a.brute_max:
                shown.append(f"skipped (>= {a.brute_max}x{a.brute_max})")
            elif stop:
                shown.append(f"skipped (timed out at {stop[0][0]}x{stop[0][0]}, {stop[0][1]} classes)")
            else:
                r = prove_cli(task, m, names, meth, a.timeout)
                cell[meth] = r
                shown.append(fmt(r, a.timeout))
                if shown[-1].startswith("timeout"):
                    gave_up.append((arch, meth, n, k))
        secs = "" if au["seconds"] is None else f"{au['seconds']:.2f}"
        verdict = f"timeout (>{a.cell_timeout:.0f} s)" if au["verdict"] == "timeout" else au["verdict"]
        if au["verdict"] == "UNKNOWN" and au.get("reason"):
            verdict += f" ({au['reason'][:120]})"
        rows[key] = f"| {arch} | {n}x{n} | {k} | {note} | {au['method'] or ''} | {verdict} | {secs} | {shown[0]} | {shown[1]} |"

    def paper_table():
        tasks = [(f"gen_tasks 28x28, {k} classes", task_file(a.work, 28, k)) for k in ([2, 10] if a.quick else [2, 10, 100])]
        tasks.append(("large28 (catalogue)", ROOT / "proofs" / "tasks" / "large28.toml"))
        for name, task in tasks:
            r = [prove_paper(task, mode, a.cell_timeout) for mode in ("today", "general")]
            cells = []
            for x in r:
                s = "" if x["seconds"] is None else f"{x['seconds']:.2f}"
                v = x["verdict"] if x["verdict"] != "timeout" else f"timeout (>{a.cell_timeout:.0f} s)"
                if x["verdict"] == "UNKNOWN" and x.get("reason"):
                    v += f" ({x['reason'][:120]})"
                cells += [x.get("method") or "", v, s]
            ratio = (f"{r[1]['seconds'] / r[0]['seconds']:.1f}x" if r[0]["seconds"] and r[1]["seconds"]
                     and r[0]["verdict"] == "PROVED" and r[1]["verdict"] == "PROVED" else "")
            paper_rows.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")
            print(paper_rows[-1], flush=True)
            raw.append({"paper": name, "today": r[0], "general": r[1]})
            flush()

    # the targets' cells first (28x28 and 256x256 at 10 classes), then the paper's networks, then the rest
    cells = [(ar, n, k) for ar in archs for n in sizes for k in classes]
    first = [c for c in cells if c[2] == 10 and c[1] in (28, 256)]
    if not a.skip_trained:
        for c in first:
            trained_cell(*c)
            print(rows[(archs.index(c[0]),) + c[1:]], flush=True)
            flush()
    if not a.skip_paper:
        paper_table()
    if not a.skip_trained:
        for c in cells:
            if c not in first:
                trained_cell(*c)
                print(rows[(archs.index(c[0]),) + c[1:]], flush=True)
                flush()

    if a.profile:
        done = [c for c in raw if "auto" in c and c["auto"].get("seconds") is not None]
        if done:
            c = max(done, key=lambda c: c["auto"]["seconds"])
            task = task_file(a.work, c["size"], c["classes"])
            m = a.work / "models" / f"{c['arch']}_s{c['size']}_k{c['classes']}" / "MODEL.onnx"
            print(f"\nprofiling {c['arch']} {c['size']}x{c['size']} {c['classes']} classes", flush=True)
            text = profile(task, m, class_names(task), a.cell_timeout)
            prof_lines[:] = [f"## Profile of the slowest auto cell: {c['arch']}, {c['size']}x{c['size']}, {c['classes']} "
                             f"classes ({c['auto']['seconds']:.2f} s)", "",
                             "`python -m cProfile -m cnnproof prove ...` (the whole command), top functions by own time, "
                             "then by cumulative time:", "", "```text", text, "```", ""]
            print(text, flush=True)
    flush()
    print("\n".join(render()))
    print(f"written {a.out} ({time.perf_counter() - t_all:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
