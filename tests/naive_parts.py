"""A naive, literal reference for MODEL.md section 8 (parts made of pieces), for tests only.

Written straight from the spec, sharing no code with ``constructions/parts.py`` or ``scenes.py``:
it reads the ``parts`` field of the task (``Part(name, pieces, jitter)``) and uses tests/naive.py
for features. A placement tree is a tuple ``(item, row, col, (piece trees...))`` (a feature's
has no pieces); a scene is a list of them (JSON lists are accepted too).
"""

from __future__ import annotations

from naive import _class, _features, _shape, anchor_allowed, naive_occurrences


def _part(task, name):
    for g in task.parts:
        if g.name == name:
            return g
    return None


def _tree(t):
    """A JSON placement [item, row, col(, [pieces])] as a tuple tree."""
    return (t[0], t[1], t[2], tuple(_tree(list(k)) for k in (t[3] if len(t) > 3 else ())))


def leaves(t) -> list:
    return [t] if not t[3] else [x for k in t[3] for x in leaves(k)]


def _cells(task, leaf) -> set:
    h, w = _shape(_features(task)[leaf[0]])
    return {(leaf[1] + a, leaf[2] + b) for a in range(h) for b in range(w)}


def placement_ok(task, t) -> bool:
    """Section 8: each piece of a part placed at its offset plus a displacement within the
    jitter, recursively down to features; the features of one placement never overlap."""
    g = _part(task, t[0])
    if g is None:
        return t[0] in _features(task) and not t[3]
    if len(t[3]) != len(g.pieces):
        return False
    for k, (name, r, c) in zip(t[3], g.pieces):
        if k[0] != name or abs(k[1] - t[1] - r) > g.jitter or abs(k[2] - t[2] - c) > g.jitter or not placement_ok(task, k):
            return False
    cells = [_cells(task, x) for x in leaves(t)]
    return all(not (cells[a] & cells[b]) for a in range(len(cells)) for b in range(a))


def _inside(task, t) -> bool:
    """Every feature of the placement lies inside the canvas."""
    for x in leaves(t):
        h, w = _shape(_features(task)[x[0]])
        if not (0 <= x[1] <= task.height - h and 0 <= x[2] <= task.width - w):
            return False
    return True


def is_item_scene(task, cls, scene) -> bool:
    cls = _class(task, cls)
    trees = [_tree(list(t)) for t in scene]
    counts = {}
    extra = 0
    for t in trees:
        if not placement_ok(task, t) or not anchor_allowed(cls, t[1], t[2]):
            return False
        if not _inside(task, t):
            return False
        if t[0] in cls.required:
            counts[t[0]] = counts.get(t[0], 0) + 1
        elif t[0] in cls.distractors:
            extra += 1
        else:
            return False
    if any(counts.get(n, 0) != cls.copies for n in cls.required) or extra > cls.max_distractors:
        return False
    if len(set(trees)) != len(trees):
        return False
    for a in range(len(trees)):
        for b in range(a):
            for u in set().union(*(_cells(task, x) for x in leaves(trees[a]))):
                for v in set().union(*(_cells(task, x) for x in leaves(trees[b]))):
                    if max(abs(u[0] - v[0]), abs(u[1] - v[1])) < cls.gap + 1:
                        return False
    return True


def item_image(task, scene) -> list:
    img = [[[task.background] * task.width for _ in range(task.height)] for _ in range(task.channels)]
    for t in scene:
        for x in leaves(_tree(list(t))):
            tpl = _features(task)[x[0]]
            for ch, plane in enumerate(tpl):
                for a, row in enumerate(plane):
                    for b, v in enumerate(row):
                        if v is not None:
                            img[ch][x[1] + a][x[2] + b] = v
    return img


def item_occurrences(task, image, name) -> list:
    """Every integer anchor where ``image`` contains ``name`` (section 8, recursively: for each
    piece some displacement within the jitter where the piece occurs). Anchors are searched in
    a range wider than any part can reach."""
    g = _part(task, name)
    if g is None:
        return naive_occurrences(task, image, name)
    occ = [set(item_occurrences(task, image, n)) for n, _, _ in g.pieces]
    J = range(-g.jitter, g.jitter + 1)
    # an anchor that works puts piece 0 at one of its occurrences: those anchors are all candidates
    _, r0, c0 = g.pieces[0]
    cand = {(a - r0 - e, b - c0 - e2) for a, b in occ[0] for e in J for e2 in J}
    return sorted((i, j) for i, j in cand
                  if all(any((i + r + e, j + c + e2) in o for e in J for e2 in J) for o, (_, r, c) in zip(occ, g.pieces)))


def item_complete(task, image) -> list[int]:
    """The classes whose required items all occur in ``image``."""
    return [k for k, c in enumerate(task.classes) if all(item_occurrences(task, image, n) for n in c.required)]


def _trees_at(task, name, i, j) -> list:
    """Every placement tree of ``name`` at anchor (i, j), overlapping ones included."""
    g = _part(task, name)
    if g is None:
        return [(name, i, j, ())]
    J = range(-g.jitter, g.jitter + 1)
    out = [()]
    for n, r, c in g.pieces:
        out = [kids + (k,) for kids in out for e in J for e2 in J for k in _trees_at(task, n, i + r + e, j + c + e2)]
    return [(name, i, j, kids) for kids in out]


def item_scenes(task, cls) -> set:
    """Every scene of ``cls`` (frozensets of placement trees), by brute force over every tree at
    every anchor in a range wider than any placement can reach."""
    cls = _class(task, cls)
    R = max(task.height, task.width) + 2 * sum(g.jitter for g in task.parts) + 2
    names = list(cls.required) + (list(cls.distractors) if cls.max_distractors else [])
    cands = [t for n in names for i in range(-R, R) for j in range(-R, R) for t in _trees_at(task, n, i, j)
             if placement_ok(task, t) and anchor_allowed(cls, i, j) and _inside(task, t)]
    size = len(cls.required) * cls.copies
    out = set()

    def rec(start, chosen):
        if len(chosen) >= size and is_item_scene(task, cls, list(chosen)):
            out.add(frozenset(chosen))
        if len(chosen) == size + cls.max_distractors:
            return
        for k in range(start, len(cands)):
            rec(k + 1, chosen + [cands[k]])

    rec(0, [])
    return out


def item_wellposed(task) -> bool:
    """Every scene's base image completes its own class and no other (MODEL.md section 4)."""
    for c, cls in enumerate(task.classes):
        for sc in item_scenes(task, cls):
            if item_complete(task, item_image(task, list(sc))) != [c]:
                return False
    return True
