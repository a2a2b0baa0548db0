"""Scene facts, re-decided by the checker's own small code. Trusted: yes (checker).

Stage: task -> scene facts. Written separately from ``constructions/scene_search.py``:

* :func:`uncoverable` re-checks an "uncoverable cell" claim directly;
* :func:`can_cooccur` decides exactly, by one z3 query (integer anchors), whether some scene
  of a class has a base image containing every goal feature. The query is posed on the canvas
  of :func:`bounded_canvas`, never larger than the task's: by the squeezing argument of
  docs/canvas-bound.md the answer is the same there, so the query, and its cost, stop growing
  with the canvas;
* :func:`scene_errors` and :func:`item_anchors` check a concrete counterexample scene and image.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import z3

from cnnproof.constructions.task import ClassSpec, Feature, Task


def _available(cls: ClassSpec) -> list[str]:
    return list(cls.required) + (list(cls.distractors) if cls.max_distractors > 0 else [])


_SUP: dict[int, tuple[Feature, dict]] = {}


def _sup(f: Feature) -> dict[tuple[int, int, int], Fraction]:
    """f's support {(channel, row, col): value}, built once per feature object (callers do not
    mutate it)."""
    hit = _SUP.get(id(f))
    if hit is None or hit[0] is not f:
        if len(_SUP) > 100_000:
            _SUP.clear()
        _SUP[id(f)] = hit = (f, {(ch, a, b): v for ch, a, b, v in f.support()})
    return hit[1]


def uncoverable(task: Task, cls: ClassSpec, g: str, cell) -> str | None:
    """None if ``cell`` of g needs a non-background value that no available feature can write
    compatibly (so g never occurs in ``cls``); otherwise why the claim fails."""
    if not (isinstance(cell, list) and len(cell) == 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in cell)):
        return f"cell {cell!r} is not [channel, row, col]"
    if task.parts:
        return "the uncoverable-cell argument is for tasks without parts"
    gs = _sup(task.feature(g))
    need = gs.get(tuple(cell))
    if need is None:
        return f"cell {cell} is not in the support of {g}"
    bg = task.background
    if need == bg:
        return f"cell {cell} of {g} needs the background value"
    ch, a, b = cell
    gc, _ = _coded(task, task.feature(g))
    for fname in _available(cls):
        f = task.feature(fname)
        fc, at = _coded(task, f)
        for fa, fb in at.get((ch, gc[(ch, a, b)]), ()):  # f's cells holding the value needed
            di, dj = a - fa, b - fb  # f's anchor relative to g's window
            ok = all(fc.get((c2, a2 - di, b2 - dj), 0) == n2
                     for (c2, a2, b2), n2 in gc.items()
                     if 0 <= a2 - di < f.height and 0 <= b2 - dj < f.width)
            if ok:
                return f"{fname} placed at offset ({di}, {dj}) writes cell {cell} of {g} compatibly"
    return None


_CODED: dict[tuple, tuple] = {}


def _coded(task: Task, f: Feature):
    """f's support with each value as a small integer (the background is 0), and its cells by
    (channel, value); built once per feature object and task levels."""
    key = (id(f), task.background, task.levels)
    hit = _CODED.get(key)
    if hit is None or hit[0] is not f:
        code = {task.background: 0}
        for v in task.levels:
            code.setdefault(v, len(code))
        sup = {c: code[v] for c, v in _sup(f).items()}
        at: dict = {}
        for (ch, a, b), v in sup.items():
            at.setdefault((ch, v), []).append((a, b))
        if len(_CODED) > 100_000:
            _CODED.clear()
        _CODED[key] = hit = (f, sup, at)
    return hit[1], hit[2]


def bounded_canvas(task: Task, cls: ClassSpec, goals: list[str]) -> tuple[int, int, int, int]:
    """(dr, dc, H', W'): the frame with the same co-occurrence answer as the task's canvas (the
    proof: docs/canvas-bound.md). Frame cell (i, j) is the task's (i + dr, j + dc). Per axis:
    the shift moves a region's first row (column) up to just past the goal windows that fit
    above it, in whole strides; the size is the shifted first row (column), plus the heights
    (widths) of the most placements a scene can hold and of the goal windows, plus
    gap + stride - 1 per object; capped by the canvas."""
    heights, widths = [], []
    for fname in cls.required:
        f = task.feature(fname)
        heights += [f.height] * cls.copies
        widths += [f.width] * cls.copies
    if cls.max_distractors > 0 and cls.distractors:
        heights += [max(task.feature(d).height for d in cls.distractors)] * cls.max_distractors
        widths += [max(task.feature(d).width for d in cls.distractors)] * cls.max_distractors
    goal_h = [task.feature(g).height for g in set(goals)]
    goal_w = [task.feature(g).width for g in set(goals)]
    n = len(heights) + len(goal_h)
    region = cls.anchors.region or (0, 0, 0, 0)

    def one_axis(first, stride, sizes, goal_sizes, canvas):
        first = max(first, 0)
        above = sum(goal_sizes) + (len(goal_sizes) + 1) * (stride - 1)
        shift = 0
        while first - shift > above:  # Lemma 3 of docs/canvas-bound.md, one stride at a time
            shift += stride
        size = first - shift + sum(sizes) + sum(goal_sizes) + n * (cls.gap + stride - 1)
        return shift, min(size, canvas - shift)

    dr, H = one_axis(region[0], cls.anchors.stride[0], heights, goal_h, task.height)
    dc, W = one_axis(region[1], cls.anchors.stride[1], widths, goal_w, task.width)
    return dr, dc, H, W


def can_cooccur(task: Task, cls: ClassSpec, goals: list[str]) -> bool:
    """Exactly: does some scene of ``cls`` have a base image containing every goal?"""
    return cooccur(task, cls, goals) is not None


def _tree(task: Task, name: str, R, C, tag: str, cons: list):
    """An item placed (or occurring) at anchor (R, C), recursively (MODEL.md section 8): each
    piece k of a part at (R + r_k + e_k, C + c_k + e'_k) with |e|, |e'| <= jitter. Returns
    (name, R, C, children) and appends the displacement bounds to ``cons``."""
    if not task.parts or not any(g.name == name for g in task.parts):
        return (name, R, C, [])
    g = next(g for g in task.parts if g.name == name)
    kids = []
    for k, (n, r, c) in enumerate(g.pieces):
        e, e2 = z3.Int(f"{tag}e{k}"), z3.Int(f"{tag}f{k}")
        cons += [e >= -g.jitter, e <= g.jitter, e2 >= -g.jitter, e2 <= g.jitter]
        kids.append(_tree(task, n, R + r + e, C + c + e2, f"{tag}_{k}", cons))
    return (name, R, C, kids)


def _leaves(t):
    return [t] if not t[3] else [x for k in t[3] for x in _leaves(k)]


def _apart(a, b, gap: int):
    """Leaf footprints (feature, R, C, h, w) disjoint with Chebyshev distance >= gap + 1."""
    return z3.Or(a[1] + a[3] + gap <= b[1], b[1] + b[3] + gap <= a[1], a[2] + a[4] + gap <= b[2], b[2] + b[4] + gap <= a[2])


def scene_model(task: Task, cls: ClassSpec, s, dr: int = 0, dc: int = 0, H: int | None = None, W: int | None = None):
    """Add to solver ``s`` the constraints of a scene of ``cls`` (section 3, placement trees of
    section 8) on an H x W frame at offset (dr, dc); returns the slots [(selector, tree)] and the
    leaf footprints [(selector, (feature, R, C, h, w), slot)]."""
    H, W = task.height if H is None else H, task.width if W is None else W
    feats = {f.name: f for f in task.features}
    cons: list = []
    slots = []  # per slot: [(selector, placement tree)]
    k = 0
    for fname in cls.required:
        for _ in range(cls.copies):
            slots.append([(z3.BoolVal(True), _tree(task, fname, z3.Int(f"r{k}"), z3.Int(f"c{k}"), f"p{k}", cons))])
            k += 1
    if cls.max_distractors > 0 and cls.distractors:
        for _ in range(cls.max_distractors):
            opts = [(z3.Bool(f"d{k}_{f}"), _tree(task, f, z3.Int(f"r{k}_{f}"), z3.Int(f"c{k}_{f}"), f"p{k}_{f}", cons))
                    for f in cls.distractors]
            for i in range(len(opts)):
                for j in range(i + 1, len(opts)):
                    s.add(z3.Not(z3.And(opts[i][0], opts[j][0])))
            slots.append(opts)
            k += 1
    s.add(cons)
    an = cls.anchors
    placed = []  # (selector, leaf footprint (feature, R, C, h, w))
    for si, opts in enumerate(slots):
        for on, t in opts:
            _, r, c, _ = t
            cond = []
            if an.stride[0] > 1:
                cond.append((r + dr) % an.stride[0] == 0)
            if an.stride[1] > 1:
                cond.append((c + dc) % an.stride[1] == 0)
            if an.region is not None:
                r0, c0, r1, c1 = an.region
                cond += [r + dr >= r0, r + dr <= r1, c + dc >= c0, c + dc <= c1]
            lv = [(n, R, C, feats[n].height, feats[n].width) for n, R, C, _ in _leaves(t)]
            for n, R, C, h, w in lv:
                cond += [R >= 0, C >= 0, R <= H - h, C <= W - w]
            for i in range(len(lv)):  # within one placement: disjoint, touching allowed
                for j in range(i + 1, len(lv)):
                    cond.append(_apart(lv[i], lv[j], 0))
            s.add(z3.Implies(on, z3.And(cond)))
            placed += [(on, x, si) for x in lv]
    for i in range(len(placed)):
        for j in range(i + 1, len(placed)):
            (oi, a, si), (oj, b, sj) = placed[i], placed[j]
            if si != sj:
                s.add(z3.Implies(z3.And(oi, oj), _apart(a, b, cls.gap)))
    return slots, placed


_AGREE: dict[tuple, tuple] = {}  # (id(g), id(f), background, levels, channels) -> (g, f, the offsets)


def _grid(task: Task, f: Feature):
    """f as arrays: each cell's value code of :func:`_coded` (the background's under '*'), and
    whether the cell is in f's support."""
    val = np.zeros((task.channels, f.height, f.width), dtype=np.int64)  # 0: the background's code
    sup = np.zeros(val.shape, dtype=bool)
    for (ch, a, b), v in _coded(task, f)[0].items():
        val[ch, a, b], sup[ch, a, b] = v, True
    return val, sup


def _agreeing(task: Task, g: Feature, f: Feature) -> list[tuple[int, int]]:
    """The offsets (di, dj) of f's anchor from g's at which their boxes meet and f writes, on
    the overlap, what g needs."""
    key = (id(g), id(f), task.background, task.levels, task.channels)
    hit = _AGREE.get(key)
    if hit is not None and hit[0] is g and hit[1] is f:
        return hit[2]
    (gv, gm), (fv, _) = _grid(task, g), _grid(task, f)
    out = []
    for di in range(1 - f.height, g.height):
        for dj in range(1 - f.width, g.width):
            r0, r1, c0, c1 = max(0, di), min(g.height, di + f.height), max(0, dj), min(g.width, dj + f.width)
            if not ((gv[:, r0:r1, c0:c1] != fv[:, r0 - di:r1 - di, c0 - dj:c1 - dj]) & gm[:, r0:r1, c0:c1]).any():
                out.append((di, dj))
    if len(_AGREE) > 200_000:
        _AGREE.clear()
    _AGREE[key] = (g, f, out)
    return out


def cooccur(task: Task, cls: ClassSpec, goals: list[str]):
    """A scene of ``cls`` whose base image contains every goal item, as nested
    [item, row, col, [pieces]] lists, or None when there is none (decided exactly by one z3
    query). Flat tasks are posed on the frame of :func:`bounded_canvas`; tasks with parts on
    the canvas itself."""
    if task.parts:
        dr, dc, H, W = 0, 0, task.height, task.width
    else:
        dr, dc, H, W = bounded_canvas(task, cls, goals)  # anchors below are frame coordinates
    bg = task.background
    feats = {f.name: f for f in task.features}
    s = z3.Solver()
    slots, placed = scene_model(task, cls, s, dr, dc, H, W)
    gcons: list = []

    # Leaf boxes are pairwise disjoint, so the image on a box is its feature's. Hence g occurs
    # at (U, V) iff every leaf whose box meets g's window agrees with g on their overlap, and
    # every cell where g needs a non-background value lies in some leaf's box.
    for gi, gname in enumerate(goals):
        t = _tree(task, gname, z3.Int(f"u{gi}"), z3.Int(f"v{gi}"), f"g{gi}", gcons)
        for n, U, V, _ in _leaves(t):
            g = feats[n]
            s.add(U >= 0, V >= 0, U <= H - g.height, V <= W - g.width)
            offs = []  # per placed leaf: (selector, DI, DJ, h, w), its anchor minus g's
            for on, (fname, r, c, fh, fw), _ in placed:
                DI, DJ = z3.Int(f"o{gi}_{len(gcons)}"), z3.Int(f"o{gi}_{len(gcons)}b")
                gcons += [DI == r - U, DJ == c - V]
                ok = [DI <= -fh, DI >= g.height, DJ <= -fw, DJ >= g.width]  # the boxes do not meet
                ok += [z3.And(DI == di, DJ == dj) for di, dj in _agreeing(task, g, feats[fname])]
                s.add(z3.Implies(on, z3.Or(ok)))
                offs.append((on, DI, DJ, fh, fw))
            for a, b in sorted({(a, b) for (_, a, b), need in _sup(g).items() if need != bg}):
                # g's cell (a, b) lies in the leaf's box: a - h < DI <= a and b - w < DJ <= b
                inside = [z3.And(on, DI <= a, DI > a - fh, DJ <= b, DJ > b - fw) for on, DI, DJ, fh, fw in offs]
                s.add(z3.Or(inside) if inside else z3.BoolVal(False))
    s.add(gcons)
    r = s.check()
    if r == z3.unknown:
        raise RuntimeError(f"z3 answered unknown: {s.reason_unknown()}")
    if r == z3.unsat:
        return None
    return scene_of_model(s.model(), slots, dr, dc)


def scene_of_model(m, slots, dr: int = 0, dc: int = 0) -> list:
    """The scene a model of :func:`scene_model` places, as nested [item, row, col, [pieces]]."""
    val = lambda x: m.eval(x, model_completion=True)  # noqa: E731
    out = lambda t: [t[0], val(t[1]).as_long() + dr, val(t[2]).as_long() + dc, [out(x) for x in t[3]]]  # noqa: E731
    return [out(t) for opts in slots for on, t in opts if z3.is_true(val(on))]


def _tree_leaves(task: Task, p, out: list) -> str | None:
    """Check one placement [item, row, col(, [pieces])] (section 8: each piece of a part at its
    offset within the jitter) and collect its leaf footprints (row, col, h, w, feature)."""
    if not (isinstance(p, list) and len(p) in (3, 4) and isinstance(p[0], str)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in p[1:3])):
        return f"placement {p!r} is not [item, row, col] or [part, row, col, [pieces]]"
    g = next((x for x in task.parts if x.name == p[0]), None)
    if g is None:
        if len(p) != 3 or p[0] not in {f.name for f in task.features}:
            return f"placement {p!r} is not [feature, row, col]"
        f = task.feature(p[0])
        out.append((p[1], p[2], f.height, f.width, p[0]))
        return None
    kids = p[3] if len(p) == 4 else None
    if not isinstance(kids, list) or len(kids) != len(g.pieces):
        return f"placement of part {g.name} at ({p[1]}, {p[2]}) does not list its {len(g.pieces)} pieces"
    for q, (n, r, c) in zip(kids, g.pieces):
        if not (isinstance(q, list) and len(q) >= 3 and q[0] == n and isinstance(q[1], int) and isinstance(q[2], int)):
            return f"part {g.name} at ({p[1]}, {p[2]}): piece {q!r} is not a placement of {n}"
        if max(abs(q[1] - p[1] - r), abs(q[2] - p[2] - c)) > g.jitter:
            return f"part {g.name} at ({p[1]}, {p[2]}): piece {n} beyond jitter {g.jitter}"
        why = _tree_leaves(task, q, out)
        if why:
            return why
    return None


def _item_scene_errors(task: Task, cls: ClassSpec, scene: list) -> str | None:
    items, counts, extra = [], {}, 0
    if not isinstance(scene, list):
        return "the scene is not a list"
    for p in scene:
        lv: list = []
        why = _tree_leaves(task, p, lv)
        if why:
            return why
        n = p[0]
        if n in cls.required:
            counts[n] = counts.get(n, 0) + 1
        elif n in cls.distractors:
            extra += 1
        else:
            return f"{n} may not be placed in class {cls.name}"
        if not all(0 <= i and i + h <= task.height and 0 <= j and j + w <= task.width for i, j, h, w, _ in lv):
            return f"{n} at ({p[1]}, {p[2]}) is not inside the canvas"
        if not cls.anchors.allows(p[1], p[2]):
            return f"{n} at ({p[1]}, {p[2]}) is not an allowed anchor"
        for x in range(len(lv)):
            for y in range(x + 1, len(lv)):
                a, b = lv[x], lv[y]
                if not (a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]):
                    return f"{n} at ({p[1]}, {p[2]}): its features {a[4]} and {b[4]} overlap"
        items.append((n, lv))
    for n in cls.required:
        if counts.get(n, 0) != cls.copies:
            return f"{n} is placed {counts.get(n, 0)} times, not {cls.copies}"
    if extra > cls.max_distractors:
        return f"{extra} distractors, more than {cls.max_distractors}"
    g = cls.gap
    for x in range(len(items)):
        for y in range(x + 1, len(items)):
            for i1, j1, h1, w1, n1 in items[x][1]:
                for i2, j2, h2, w2, n2 in items[y][1]:
                    if not (i1 + h1 + g <= i2 or i2 + h2 + g <= i1 or j1 + w1 + g <= j2 or j2 + w2 + g <= j1):
                        return f"{n1} at ({i1}, {j1}) and {n2} at ({i2}, {j2}) overlap or break the gap {g}"
    return None


def scene_errors(task: Task, cls: ClassSpec, scene: list) -> str | None:
    """None if ``scene`` ([[item, row, col(, [pieces])], ...]) is a scene of ``cls`` (MODEL.md
    sections 3 and 8)."""
    return _item_scene_errors(task, cls, scene)


def base_image(task: Task, scene: list) -> list:
    img = [[[task.background] * task.width for _ in range(task.height)] for _ in range(task.channels)]
    leaves: list = []
    for p in scene:
        _tree_leaves(task, p, leaves)  # (checked by scene_errors first)
    for i, j, _, _, fname in leaves:
        for ch, a, b, v in task.feature(fname).support():
            img[ch][i + a][j + b] = v
    return img


def item_anchors(task: Task, img: list, name: str, memo: dict | None = None) -> set:
    """Every anchor where ``img`` contains item ``name``: a feature within δ on its support; a
    part when every piece occurs within the jitter of its offset (section 8, recursively)."""
    memo = {} if memo is None else memo
    if name in memo:
        return memo[name]
    g = next((x for x in task.parts if x.name == name), None)
    if g is None:
        f, d = task.feature(name), task.noise
        out = {(i, j) for i in range(task.height - f.height + 1) for j in range(task.width - f.width + 1)
               if all(abs(img[ch][i + a][j + b] - t) <= d for ch, a, b, t in f.support())}
    else:
        J = range(-g.jitter, g.jitter + 1)
        occ = [item_anchors(task, img, n, memo) for n, _, _ in g.pieces]
        n0, r0, c0 = g.pieces[0]
        cand = {(i - r0 - e, j - c0 - e2) for i, j in occ[0] for e in J for e2 in J}
        out = {(a, b) for a, b in cand
               if all(any((a + r + e, b + c + e2) in o for e in J for e2 in J) for o, (_, r, c) in zip(occ, g.pieces))}
    memo[name] = out
    return out
