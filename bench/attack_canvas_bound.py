"""Red-team sweep of the canvas bound (docs/canvas-bound.md): random small tasks that stress the
squeezing argument's corners, with every class's co-occurrence questions decided four ways.

Stage: none (bench; not part of the default test run). For each drawn task the script compares,
per class and per goal set of size 1..3:

* brute force on the full canvas (``tests/naive.py``: every scene, every occurrence),
* the prover's search ``appear_together`` (frame of ``reduced_canvas``),
* the checker's ``can_cooccur`` (frame of ``bounded_canvas``),

and, per task, the compositional ``check-task`` (well-posedness) and ``prove`` (the paper's
network, zero error) verdicts with ``--method exhaustive``; PROVED certificates are written and
re-checked by the fenced checker (``cnnproof check``), which must say VALID exactly when
exhaustive says PROVED.

Corners drawn on purpose: strips (1-3 rows or columns, long the other way) and small squares;
regions far from the corner, per class, sometimes a single anchor, sometimes only rows or only
columns far; strides 1-3 per axis (features larger than the stride, regions off the grid); gap
0-2; copies 1-2; max_distractors 0-2 with distractors larger than the required features;
don't-care cells; all-background features; one or two channels; two or three levels with a
background that is not the smallest; noise. Canvases are a little larger than the frames.

``--big`` instead draws 8-14 x 8-14 canvases (too large for brute force) and compares the frame
answers of the search and the checker with the same code run on the full canvas (the frame
functions patched to return the canvas). ``--tight`` also asks brute force on the frame with one
row (or column) less, counting how often that would flip a "yes" (how close the sweep comes to
the bound's edge).

Results (2026-12-01, 2 shared cores): 498 tasks / 8288 questions (3064 squeezed, 2554 "never")
scenes only; 441 + 127 tasks with verdicts (10675 questions; check-task PROVED 37 times, prove
PROVED 29 times, every certificate VALID, each matching brute force / exhaustive; the rest
REFUTED, matching); ``--big``: 777 tasks, 7422 squeezed questions against the full canvas;
``--tight``: 719 edge probes, 0 flips (random tasks never need the whole frame: the bound is
safe but loose; its edge is pinned by hand-made tests in tests/test_scene_search.py).
0 disagreements in all.

Usage: ``python bench/attack_canvas_bound.py [--tasks N] [--seed S] [--seconds T] [--no-prove]
[--big] [--tight] [--task-seconds T]``.
Prints every disagreement with the task's TOML, and a summary; exit 1 on any disagreement.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import signal
import sys
import tempfile
import time
from math import comb
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from naive import naive_contains, naive_image, naive_scenes, naive_wellposed  # noqa: E402

from cnnproof.constructions.scene_search import appear_together, reduced_canvas  # noqa: E402
from cnnproof.constructions.scenes import SearchBudgetExceeded, scene_problem  # noqa: E402
from cnnproof.constructions.task import task_from_toml  # noqa: E402
from cnnproof.verifier.checker.scenes import bounded_canvas, can_cooccur  # noqa: E402
from cnnproof.verifier.errors import InputError  # noqa: E402


def _anchors(H, W, h, w, stride, region):
    n = 0
    for i in range(0, H - h + 1):
        for j in range(0, W - w + 1):
            if i % stride[0] or j % stride[1]:
                continue
            if region and not (region[0] <= i <= region[2] and region[1] <= j <= region[3]):
                continue
            n += 1
    return n


def draw_line(rng: random.Random) -> str:
    """One row (or column) of 10-22 pixels with 1 x w features: packing at its hardest (copies
    up to 3, distractors up to 3, gap up to 3, stride up to 4, far and one-anchor regions)."""
    n = rng.randint(10, 22)
    vertical = rng.random() < 0.3
    H, W = (n, 1) if vertical else (1, n)
    lines = ['name = "line"', "[canvas]", f"height = {H}", f"width = {W}", "[pixels]",
             'levels = ["0", "1", "2"]', 'symbols = { "a" = "0", "b" = "1", "c" = "2" }']
    if rng.random() < 0.2:
        lines.append('background = "1"')
    names = []
    for k in range(rng.randint(2, 4)):
        w = rng.randint(1, 4)
        if rng.random() < 0.2:
            cells = [rng.choice("ab*" if "background" in lines[-1] else "a*") for _ in range(w)]
        else:
            cells = [rng.choice("aabc*") for _ in range(w)]
        if all(c == "*" for c in cells):
            cells[0] = "c"
        sep = "\\n" if vertical else ""
        lines += [f"[features.f{k}]", 'template = "' + sep.join(cells) + '"']
        names.append(f"f{k}")
    for c in range(rng.randint(2, 3)):
        req = rng.sample(names, rng.randint(1, min(2, len(names))))
        rest = [x for x in names if x not in req]
        dis = rng.sample(rest, rng.randint(0, min(2, len(rest)))) if rest else []
        lines += [f"[classes.c{c}]", "required = " + json.dumps(req)]
        copies = rng.choice([1, 1, 2, 3]) if len(req) == 1 else rng.choice([1, 1, 2])
        if copies > 1:
            lines.append(f"copies = {copies}")
        if dis:
            lines += ["distractors = " + json.dumps(dis), f"max_distractors = {rng.choice([1, 2, 3]) if copies == 1 else 1}"]
        st = rng.choice([1, 1, 2, 3, 4])
        if st > 1:
            lines.append(f"stride = [{st}, 1]" if vertical else f"stride = [1, {st}]")
        if rng.random() < 0.5:
            lines.append(f"gap = {rng.choice([1, 2, 3])}")
        if rng.random() < 0.6:
            a = rng.randint(0, n - 1)
            b = a if rng.random() < 0.3 else rng.randint(a, n - 1)
            lines.append(f"region = [{a}, 0, {b}, 0]" if vertical else f"region = [0, {a}, 0, {b}]")
    return "\n".join(lines) + "\n"


def draw_posed(rng: random.Random) -> str:
    """Classes that share a feature and differ by one of their own, so that a proof of
    well-posedness (and of zero error) must show that each class's own feature never occurs,
    by accident, in the other's scenes: the "never" answers decided on the frame."""
    vertical = rng.random() < 0.3
    n = rng.randint(7, 16)
    m = rng.randint(1, 3)
    H, W = (n, m) if vertical else (m, n)
    lines = ['name = "posed"', "[canvas]", f"height = {H}", f"width = {W}", "[pixels]",
             'levels = ["0", "1", "2"]', 'symbols = { "a" = "0", "b" = "1", "c" = "2" }']
    if rng.random() < 0.2:
        lines.append('noise = "1/4"')

    def template(maxh, maxw, pool="aabbc*"):
        h, w = rng.randint(1, maxh), rng.randint(1, maxw)
        rows = ["".join(rng.choice(pool) for _ in range(w)) for _ in range(h)]
        if all(ch in "a*" for r in rows for ch in r):
            rows[0] = "b" + rows[0][1:]
        return "\\n".join(rows)

    nc = rng.randint(2, 3)
    feats = {"s": template(min(H, 2), min(W, 3), "aab*")}
    for c in range(nc):  # own features: mostly level 2 with some 1s, so accidents are rare
        feats[f"o{c}"] = template(min(H, 2), min(W, 3), rng.choice(["abc", "bcc", "acc*", "aabbc*"]))
    extra = rng.random() < 0.5
    if extra:
        feats["d"] = template(min(H, 3), min(W, 4))  # a distractor, possibly larger
    for k, t in feats.items():
        lines += [f"[features.{k}]", f'template = "{t}"']
    for c in range(nc):
        req = [f"o{c}"] + (["s"] if rng.random() < 0.7 else [])
        lines += [f"[classes.c{c}]", "required = " + json.dumps(req)]
        if extra and rng.random() < 0.7:
            lines += ['distractors = ["d"]', f"max_distractors = {rng.choice([1, 2])}"]
        if rng.random() < 0.5:
            st = rng.choice([2, 3])
            lines.append(f"stride = [{st if vertical else 1}, {1 if vertical else st}]")
        if rng.random() < 0.4:
            lines.append(f"gap = {rng.choice([1, 2])}")
        if rng.random() < 0.2:
            lines.append("copies = 2")
        if rng.random() < 0.5:
            a = rng.randint(0, n - 1)
            b = a if rng.random() < 0.3 else rng.randint(a, n - 1)
            lines.append(f"region = [{a}, 0, {b}, {m - 1}]" if vertical else f"region = [0, {a}, {m - 1}, {b}]")
    if extra and not any('"d"' in x for x in lines):
        lines += ['distractors = ["d"]', "max_distractors = 1"]
    return "\n".join(lines) + "\n"


def draw_task(rng: random.Random) -> str | None:
    if rng.random() < 0.4:
        return draw_posed(rng)
    if rng.random() < 0.35:
        return draw_line(rng)
    shape = rng.choice(["rowstrip", "colstrip", "square"])
    if shape == "rowstrip":
        H, W = rng.randint(1, 3), rng.randint(6, 16)
    elif shape == "colstrip":
        H, W = rng.randint(6, 16), rng.randint(1, 3)
    else:
        H, W = rng.randint(4, 7), rng.randint(4, 7)
    C = 2 if rng.random() < 0.2 else 1
    levels = rng.choice([["0", "1"], ["0", "1", "2"], ["0", "1/2", "1"]])
    syms = dict(zip("abc", levels))
    bg = rng.choice(levels) if rng.random() < 0.3 else None
    noise = None
    if rng.random() < 0.2:
        noise = "1/8" if "1/2" in levels else "1/4"
    side = 3 if shape == "square" else 4
    nf = rng.randint(2, 4)
    feats = {}
    for k in range(nf):
        h = rng.randint(1, min(side if H >= W else 1 + (H > 1), H))
        w = rng.randint(1, min(side if W >= H else 1 + (W > 1), W))
        kind = rng.random()
        planes = []
        for _ in range(C):
            if kind < 0.12:  # all background (or all bg-or-*)
                bgs = [s for s, v in syms.items() if v == (bg or levels[0])][0]
                rows = ["".join(rng.choice([bgs, bgs, "*"]) for _ in range(w)) for _ in range(h)]
            else:
                pool = list(syms) + ["*"] * (1 if rng.random() < 0.5 else 0)
                rows = ["".join(rng.choice(pool) for _ in range(w)) for _ in range(h)]
            planes.append(rows)
        if all(c == "*" for p in planes for r in p for c in r):
            planes[0][0] = "a" + planes[0][0][1:]
        feats[f"f{k}"] = planes
    names = list(feats)
    sizes = {n: (len(feats[n][0]), len(feats[n][0][0])) for n in names}

    def rules():
        out = {}
        if rng.random() < 0.5:
            out["stride"] = [rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2, 3])]
        if rng.random() < 0.35:
            out["gap"] = rng.choice([1, 1, 2])
        if rng.random() < 0.25:
            out["copies"] = 2
        if rng.random() < 0.55:
            kind = rng.random()
            if kind < 0.3:  # a single anchor, far
                r0, c0 = rng.randint(0, H - 1), rng.randint(0, W - 1)
                out["region"] = [r0, c0, r0, c0]
            else:
                r0 = rng.randint(0, H - 1) if rng.random() < 0.7 else 0
                c0 = rng.randint(0, W - 1) if rng.random() < 0.7 else 0
                r1 = rng.randint(r0, H - 1 + (2 if rng.random() < 0.2 else 0))
                c1 = rng.randint(c0, W - 1 + (2 if rng.random() < 0.2 else 0))
                out["region"] = [r0, c0, r1, c1]
        return out

    classes = []
    nc = rng.randint(2, 3)
    for c in range(nc):
        req = rng.sample(names, rng.randint(1, min(2, len(names))))
        rest = [n for n in names if n not in req]
        dis = rng.sample(rest, rng.randint(0, min(2, len(rest)))) if rest else []
        r = rules()
        if dis:
            r["max_distractors"] = rng.choice([1, 1, 2])
        classes.append({"name": f"c{c}", "required": req, "distractors": dis, "rules": r})
    # keep brute force small
    for c in classes:
        r = c["rules"]
        st, reg = r.get("stride", [1, 1]), r.get("region")
        while True:
            bound = 1
            for f in c["required"]:
                bound *= comb(_anchors(H, W, *sizes[f], st, reg), r.get("copies", 1))
            nd = sum(_anchors(H, W, *sizes[f], st, reg) for f in c["distractors"])
            bound *= sum(comb(nd, k) for k in range(r.get("max_distractors", 0) + 1))
            if bound <= 4000:
                break
            if r.get("max_distractors", 0) > 1:
                r["max_distractors"] -= 1
            elif r.get("copies", 1) > 1:
                r["copies"] = 1
            elif c["distractors"]:
                c["distractors"].pop()
                if not c["distractors"]:
                    r.pop("max_distractors", None)
            elif len(c["required"]) > 1:
                c["required"].pop()
            else:
                break
    used = {n for c in classes for n in c["required"] + c["distractors"]}
    lines = ['name = "attack"', "[canvas]", f"height = {H}", f"width = {W}"]
    if C > 1:
        lines.append(f"channels = {C}")
    lines += ["[pixels]", "levels = [" + ", ".join(f'"{v}"' for v in levels) + "]",
              "symbols = { " + ", ".join(f'"{k}" = "{v}"' for k, v in syms.items()) + " }"]
    if bg is not None:
        lines.append(f'background = "{bg}"')
    if noise is not None:
        lines.append(f'noise = "{noise}"')
    for n in names:
        if n not in used:
            continue
        ps = ['"' + "\\n".join(p) + '"' for p in feats[n]]
        lines += [f"[features.{n}]", "template = " + (ps[0] if C == 1 else "[" + ", ".join(ps) + "]")]
    for c in classes:
        lines += [f"[classes.{c['name']}]", "required = " + json.dumps(c["required"])]
        if c["distractors"]:
            lines.append("distractors = " + json.dumps(c["distractors"]))
        for k, v in c["rules"].items():
            lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def present_sets(task, cls):
    out = set()
    for scene in naive_scenes(task, cls):
        img = naive_image(task, scene)
        out.add(frozenset(f.name for f in task.features if naive_contains(task, img, f)))
    return out


def _framed(task, cls, dr, dc, H, W):
    import dataclasses

    from cnnproof.constructions.task import Anchors

    region = cls.anchors.region
    if region is not None:
        region = (region[0] - dr, region[1] - dc, region[2] - dr, region[3] - dc)
    moved = dataclasses.replace(cls, anchors=Anchors(cls.anchors.stride, region))
    classes = tuple(moved if c.name == cls.name else c for c in task.classes)
    return dataclasses.replace(task, height=H, width=W, classes=classes)


def attack_scenes(text, task, stats, fails, max_k=3, tight=False):
    feats = [f.name for f in task.features]
    for cls in task.classes:
        sets = present_sets(task, cls)
        for k in range(1, min(max_k, len(feats)) + 1):
            for goals in itertools.combinations(feats, k):
                truth = any(set(goals) <= p for p in sets)
                fr = reduced_canvas(task, cls, list(goals))
                if bounded_canvas(task, cls, list(goals)) != fr:
                    fails.append(("frames differ", text, cls.name, goals))
                if fr != (0, 0, task.height, task.width):
                    stats["squeezed"] += 1
                stats["questions"] += 1
                stats["never"] += not truth
                try:
                    found = appear_together(task, cls, list(goals))
                except SearchBudgetExceeded:
                    stats["budget"] += 1
                    found = "budget"
                if found != "budget":
                    if (found is not None) != truth:
                        fails.append(("search", text, cls.name, goals, truth, fr))
                    elif found is not None and scene_problem(task, cls, found) is not None:
                        fails.append(("search scene invalid", text, cls.name, goals, found))
                if can_cooccur(task, cls, list(goals)) != truth:
                    fails.append(("checker", text, cls.name, goals, truth, fr))
                if tight and truth and fr != (0, 0, task.height, task.width):
                    # how often one row or column less than the frame would flip the answer:
                    # the sweep reaches the edge of the bound when this is not 0
                    dr, dc, fh, fw = fr
                    for cut in ((1, 0), (0, 1)):
                        h2, w2 = fh - cut[0], fw - cut[1]
                        if h2 < 1 or w2 < 1 or (cut[0] and fh == task.height - dr) or (cut[1] and fw == task.width - dc):
                            continue
                        small = _framed(task, cls, dr, dc, h2, w2)
                        try:
                            ok = any(set(goals) <= p for p in present_sets(small, small.classes[task.class_index(cls.name)]))
                        except Exception:
                            continue  # the smaller canvas is not a valid task
                        stats["edge probes"] += 1
                        stats["edge flips"] += not ok


def attack_verdicts(text, task, stats, fails):
    from cnnproof.constructions.task_to_network import build_network
    from cnnproof.verifier import compositional, exhaustive
    from cnnproof.verifier.outcome import Question

    wp = naive_wellposed(task)
    co = compositional.prove(task, None, Question("wellposed"))
    stats["wellposed " + co.verdict] += 1
    if (co.verdict == "PROVED") != wp and co.verdict != "UNKNOWN":
        fails.append(("check-task", text, co.verdict, wp))
    if task.noise == 0:
        net = build_network(task)
        ex = exhaustive.prove(task, net, Question("zero_error"))
        cz = compositional.prove(task, net, Question("zero_error"))
        stats["zero_error " + cz.verdict] += 1
        if cz.verdict in ("PROVED", "REFUTED") and cz.verdict != ex.verdict:
            fails.append(("prove", text, cz.verdict, ex.verdict))
        if cz.verdict == "PROVED":
            _cli_check(text, ["prove", "--method", "compositional"], ex.verdict == "PROVED", "prove", stats, fails)
    # the fenced checker on the certificate of check-task
    _cli_check(text, ["check-task", "--method", "compositional"], wp, "check-task", stats, fails)


def draw_big(rng: random.Random) -> str:
    """A larger 2-D task (8-14 per side) for the frame-versus-full-canvas comparison: more
    placements than brute force could enumerate, regions far in both axes."""
    H, W = rng.randint(8, 14), rng.randint(8, 14)
    syms = {"a": "0", "b": "1", "c": "2"}
    nf = rng.randint(2, 4)
    lines = ['name = "big"', "[canvas]", f"height = {H}", f"width = {W}", "[pixels]",
             'levels = ["0", "1", "2"]', 'symbols = { "a" = "0", "b" = "1", "c" = "2" }']
    names = []
    for k in range(nf):
        h, w = rng.randint(1, 3), rng.randint(1, 3)
        if rng.random() < 0.12:
            rows = ["".join(rng.choice("a*") for _ in range(w)) for _ in range(h)]
        else:
            rows = ["".join(rng.choice("aabc*") for _ in range(w)) for _ in range(h)]
        if all(c == "*" for r in rows for c in r):
            rows[0] = "b" + rows[0][1:]
        lines += [f"[features.f{k}]", 'template = "' + "\\n".join(rows) + '"']
        names.append(f"f{k}")
    for c in range(rng.randint(2, 3)):
        req = rng.sample(names, rng.randint(1, min(3, len(names))))
        rest = [n for n in names if n not in req]
        dis = rng.sample(rest, rng.randint(0, min(2, len(rest)))) if rest else []
        lines += [f"[classes.c{c}]", "required = " + json.dumps(req)]
        if dis:
            lines += ["distractors = " + json.dumps(dis), f"max_distractors = {rng.choice([1, 2])}"]
        if rng.random() < 0.5:
            lines.append(f"stride = [{rng.choice([1, 2, 3])}, {rng.choice([1, 2, 3])}]")
        if rng.random() < 0.4:
            lines.append(f"gap = {rng.choice([1, 2])}")
        if rng.random() < 0.3:
            lines.append("copies = 2")
        if rng.random() < 0.6:
            r0, c0 = rng.randint(0, H - 1), rng.randint(0, W - 1)
            lines.append(f"region = [{r0}, {c0}, {rng.randint(r0, H - 1)}, {rng.randint(c0, W - 1)}]")
    return "\n".join(lines) + "\n"


def attack_vs_full(text, task, stats, fails, max_k=3):
    """Frame answers (search and checker) against the same code run on the full canvas."""
    import cnnproof.constructions.scene_search as ss
    import cnnproof.verifier.checker.scenes as cs

    feats = [f.name for f in task.features]
    full = lambda task_, cls_, goals_: (0, 0, task_.height, task_.width)  # noqa: E731
    for cls in task.classes:
        for k in range(1, min(max_k, len(feats)) + 1):
            for goals in itertools.combinations(feats, k):
                fr = reduced_canvas(task, cls, list(goals))
                if fr == (0, 0, task.height, task.width):
                    continue
                stats["squeezed"] += 1
                answers = {}
                for mode in ("frame", "full"):
                    saved = ss.reduced_canvas, cs.bounded_canvas
                    if mode == "full":
                        ss.reduced_canvas, cs.bounded_canvas = full, full
                    try:
                        try:
                            answers["search " + mode] = appear_together(task, cls, list(goals), budget=60_000) is not None
                        except SearchBudgetExceeded:
                            stats["budget"] += 1
                        answers["checker " + mode] = cs.can_cooccur(task, cls, list(goals))
                    finally:
                        ss.reduced_canvas, cs.bounded_canvas = saved
                stats["questions"] += 1
                stats["never"] += not answers["checker full"]
                if len(set(answers.values())) > 1:
                    fails.append(("frame vs full", text, cls.name, goals, answers, fr))


def _cli_check(text, cmd, truth, what, stats, fails):
    """Run ``cnnproof <cmd> --certificate`` and ``cnnproof check`` on it: VALID only if ``truth``."""
    import contextlib
    import io

    from cnnproof.cli import main

    with tempfile.TemporaryDirectory() as d:
        tp = Path(d) / "t.toml"
        tp.write_text(text)
        cert = Path(d) / "c.json"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            rc = main(cmd + [str(tp), "--certificate", str(cert)])
        if rc == 0 and not truth:
            fails.append((f"{what} cli PROVED", text))
        if rc == 0 and cert.exists():
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                rc2 = main(["check", str(cert), "--task", str(tp)])
            stats[f"{what} check rc {rc2}"] += 1
            if rc2 == 0 and not truth:
                fails.append((f"{what} check VALID on a false claim", text))


class _Slow(Exception):
    pass


def _alarm(signum, frame):
    raise _Slow()


def main_(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=1e9)
    ap.add_argument("--no-prove", action="store_true")
    ap.add_argument("--task-seconds", type=float, default=60, help="skip a task after this long")
    ap.add_argument("--tight", action="store_true", help="also probe one row/column less than the frame")
    ap.add_argument("--big", action="store_true", help="larger canvases, frame vs full canvas (no brute force)")
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    signal.signal(signal.SIGALRM, _alarm)
    from collections import Counter

    stats, fails = Counter(), []
    t0 = time.time()
    done = 0
    while done < a.tasks and time.time() - t0 < a.seconds:
        text = draw_big(rng) if a.big else draw_task(rng)
        try:
            task = task_from_toml(text)
        except InputError:
            stats["rejected"] += 1
            continue
        n0 = len(fails)
        signal.alarm(int(a.task_seconds))  # a task that takes too long is skipped, and counted
        try:
            if a.big:
                attack_vs_full(text, task, stats, fails)
            else:
                attack_scenes(text, task, stats, fails, tight=a.tight)
            if not a.no_prove and not a.big:
                attack_verdicts(text, task, stats, fails)
        except _Slow:
            stats["skipped (slow)"] += 1
            print("SLOW (skipped)\n" + text, flush=True)
        finally:
            signal.alarm(0)
        for f in fails[n0:]:
            print("DISAGREEMENT", f[0], f[2:], "\n" + f[1], flush=True)
        done += 1
        if done % 25 == 0:
            print(f"... {done} tasks, {time.time() - t0:.0f} s, {len(fails)} disagreements", flush=True)
    print(f"{done} tasks in {time.time() - t0:.0f} s; {dict(stats)}; {len(fails)} disagreements")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main_())
