"""Parts made of pieces, with jitter (MODEL.md section 8): their placements and their occurrence.

Stage: task -> scenes -> images. Trusted: yes (scenes, exhaustive proofs and the labels of
hierarchical tasks use it). ``tests/naive.py`` re-implements occurrence literally from section 8
and the tests compare the two.

A placement of an item is a :class:`~cnnproof.constructions.scenes.Placement` tree: a feature's
has no pieces; a part's holds one placement per piece, at absolute positions, so the
displacement of piece ``k`` is ``child.row - (row + r_k)``. Two placements are equal exactly when
they place the same item at the same anchor with the same displacements (section 8's identity
of scenes). A *variant* of a part is its placement at anchor (0, 0).
"""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np

from cnnproof.constructions.scenes import SearchBudgetExceeded
from cnnproof.constructions.task import Feature, Task

MAX_VARIANTS = 250_000  # per part: past this, enumeration-based methods answer UNKNOWN


class TooManyVariants(SearchBudgetExceeded):
    """A part has more variants than enumeration-based methods take (they answer UNKNOWN)."""


def leaves(p) -> Iterator:
    """The feature placements of a placement tree."""
    if not p.pieces:
        yield p
    else:
        for q in p.pieces:
            yield from leaves(q)


def shifted(p, dr: int, dc: int):
    from cnnproof.constructions.scenes import Placement

    return Placement(p.feature, p.row + dr, p.col + dc, tuple(shifted(q, dr, dc) for q in p.pieces))


def _disjoint(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Footprints (row, col, h, w) do not overlap (touching allowed)."""
    return a[0] + a[2] <= b[0] or b[0] + b[2] <= a[0] or a[1] + a[3] <= b[1] or b[1] + b[3] <= a[1]


def boxes(task: Task, p) -> list[tuple[int, int, int, int]]:
    """The leaf footprints (row, col, h, w) of a placement tree."""
    out = []
    for q in leaves(p):
        f = task.feature(q.feature)
        out.append((q.row, q.col, f.height, f.width))
    return out


class Variants:
    """Every variant of every part of a task, computed on demand and kept (one table per task)."""

    def __init__(self, task: Task, limit: int = MAX_VARIANTS):
        self.task, self.limit = task, limit
        self._table: dict[str, list] = {}

    def of(self, name: str) -> list:
        """The variants of ``name`` (a feature: its one placement at (0, 0)), each with its leaf
        footprints pairwise disjoint."""
        from cnnproof.constructions.scenes import Placement

        if name in self._table:
            return self._table[name]
        task = self.task
        if not task.is_part(name):
            task.feature(name)
            self._table[name] = [Placement(name, 0, 0)]
            return self._table[name]
        g = task.part(name)
        J = range(-g.jitter, g.jitter + 1)
        options = []
        for n, r, c in g.pieces:
            sub = self.of(n)
            options.append([shifted(v, r + e, c + e2) for e in J for e2 in J for v in sub])
        total = 1
        for o in options:
            total *= len(o)
        out = []
        chosen: list = []
        used: list = []

        def rec(k: int) -> None:
            if k == len(options):
                out.append(Placement(name, 0, 0, tuple(chosen)))
                if len(out) > self.limit:
                    raise TooManyVariants(f"part {name!r} has more than {self.limit} variants")
                return
            for v in options[k]:
                bx = boxes(task, v)
                if all(_disjoint(a, b) for a in bx for b in used):
                    chosen.append(v)
                    used.extend(bx)
                    rec(k + 1)
                    del used[len(used) - len(bx):]
                    chosen.pop()

        rec(0)
        self._table[name] = out
        return out


def extent(task: Task, p) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a placement's leaves, bottom and right exclusive."""
    bx = boxes(task, p)
    return (min(b[0] for b in bx), min(b[1] for b in bx), max(b[0] + b[2] for b in bx), max(b[1] + b[3] for b in bx))


def placeable(task: Task, name: str, height: int | None = None, width: int | None = None,
              budget: int = 200_000) -> bool | None:
    """Is there a variant of ``name`` whose leaf footprints are pairwise disjoint (and, given a
    size, whose extent fits in height x width)? A depth-first search over the pieces'
    displacements that stops at the first layout; None past ``budget`` nodes."""
    nodes = 0

    def layouts(n, r, c):
        """Every disjoint layout (leaf boxes) of item n placed at (r, c), lazily."""
        if not task.is_part(n):
            f = task.feature(n)
            yield [(r, c, f.height, f.width)]
            return
        g = task.part(n)
        J = range(-g.jitter, g.jitter + 1)
        used: list = []

        def rec(k):
            nonlocal nodes
            if k == len(g.pieces):
                yield list(used)
                return
            m, dr, dc = g.pieces[k]
            for e in J:
                for e2 in J:
                    for lay in layouts(m, r + dr + e, c + dc + e2):
                        nodes += 1
                        if nodes > budget:
                            raise TooManyVariants("budget")
                        if all(_disjoint(x, y) for x in lay for y in used):
                            used.extend(lay)
                            yield from rec(k + 1)
                            del used[len(used) - len(lay):]

        yield from rec(0)

    try:
        for lay in layouts(name, 0, 0):
            if height is None:
                return True
            top, left = min(b[0] for b in lay), min(b[1] for b in lay)
            bottom, right = max(b[0] + b[2] for b in lay), max(b[1] + b[3] for b in lay)
            if bottom - top <= height and right - left <= width:
                return True
        return False
    except TooManyVariants:
        return None


# ---------------------------------------------------------------------------------------------
# Occurrence (section 8): presence maps over integer anchors
# ---------------------------------------------------------------------------------------------


class Map:
    """A presence map of one item over a batch: ``on[n, a, b]`` says whether image ``n`` contains
    the item at anchor (r0 + a, c0 + b); anchors outside the array never hold it."""

    __slots__ = ("r0", "c0", "on")

    def __init__(self, r0: int, c0: int, on: np.ndarray):
        self.r0, self.c0, self.on = r0, c0, on


def feature_map(task: Task, images: np.ndarray, f: Feature) -> Map:
    """Where each base image (N, C, H, W scaled integers) contains ``f``: exact levels, so
    containment is equality on the support (noise does not change presence)."""
    N, C, H, W = images.shape
    h, w = f.size
    sc = task.scale
    ok = np.ones((N, max(H - h + 1, 0), max(W - w + 1, 0)), dtype=bool)
    for ch, a, b, v in f.support():
        ok &= images[:, ch, a: a + H - h + 1, b: b + W - w + 1] == int(v * sc)
    return Map(0, 0, ok)


def part_map(g, maps: dict[str, Map]) -> Map:
    """P_g[a] = AND over pieces k of (OR over |e|, |e'| <= j of P_{f_k}[a + o_k + e])."""
    j = g.jitter
    N = next(iter(maps.values())).on.shape[0]
    los, his = [], []
    for n, r, c in g.pieces:
        m = maps[n]
        hh, ww = m.on.shape[1:]
        los.append((m.r0 - r - j, m.c0 - c - j))
        his.append((m.r0 + hh - 1 - r + j, m.c0 + ww - 1 - c + j))
    r0, c0 = max(x for x, _ in los), max(y for _, y in los)
    r1, c1 = min(x for x, _ in his), min(y for _, y in his)
    if r1 < r0 or c1 < c0:
        return Map(0, 0, np.zeros((N, 0, 0), dtype=bool))
    out = np.ones((N, r1 - r0 + 1, c1 - c0 + 1), dtype=bool)
    for n, r, c in g.pieces:
        m = maps[n]
        hh, ww = m.on.shape[1:]
        pad = np.zeros((N, hh + 2 * j, ww + 2 * j), dtype=bool)
        pad[:, j: j + hh, j: j + ww] = m.on
        dil = np.zeros((N, hh + 2 * j, ww + 2 * j), dtype=bool)  # D over anchors (m.r0 - j + a, ...)
        for e in range(-j, j + 1):
            for e2 in range(-j, j + 1):
                src = np.zeros_like(pad)
                # dil[x] |= pad[x + e]: the piece occurs at x + e
                ys = slice(max(0, -e), min(pad.shape[1], pad.shape[1] - e))
                xs = slice(max(0, -e2), min(pad.shape[2], pad.shape[2] - e2))
                src[:, ys, xs] = pad[:, ys.start + e: ys.stop + e, xs.start + e2: xs.stop + e2]
                dil |= src
        # anchor a of g needs D at a + (r, c): index (a + r) - (m.r0 - j)
        i0, k0 = r0 + r - (m.r0 - j), c0 + c - (m.c0 - j)
        out &= dil[:, i0: i0 + out.shape[1], k0: k0 + out.shape[2]]
    return Map(r0, c0, out)


def item_maps(task: Task, images: np.ndarray) -> dict[str, Map]:
    """The presence map of every item (features, then parts in level order)."""
    maps = {f.name: feature_map(task, images, f) for f in task.features}
    for g in sorted(task.parts, key=lambda g: task.level(g.name)):
        maps[g.name] = part_map(g, maps)
    return maps


def item_presence(task: Task, images: np.ndarray) -> np.ndarray:
    """(N, I) bool: which items (``task.items`` order) each base image contains."""
    maps = item_maps(task, images)
    N = images.shape[0]
    return np.stack([maps[n].on.reshape(N, -1).any(axis=1) for n in task.items], axis=1)


def base_levels_int(task: Task, image: np.ndarray) -> np.ndarray | None:
    """A noisy image (object array of Fractions) as its base image in scaled integers: every
    pixel replaced by the level within δ of it (unique since 2δ < s); None when a pixel is
    within δ of no level (then the image is not generated by the task)."""
    from fractions import Fraction

    sc = task.scale
    flat = np.asarray(image, dtype=object).ravel()
    out = np.empty(flat.shape, dtype=np.int64)
    for k, v in enumerate(flat):
        near = min(task.levels, key=lambda l: abs(l - Fraction(v)))
        if abs(near - Fraction(v)) > task.noise:
            return None
        out[k] = int(near * sc)
    return out.reshape(np.shape(image))


def item_occurrences(task: Task, image: np.ndarray, name: str) -> list[tuple[int, int]]:
    """Every anchor where ``image`` (object array, exact or noisy) contains item ``name``."""
    from cnnproof.constructions.scenes import occurrences

    if not task.is_part(name):
        return occurrences(task, image, task.feature(name))
    ints = base_levels_int(task, image)
    if ints is None:  # a pixel near no level contains nothing that needs it: per-feature test
        maps = {}
        for f in task.features:
            h, w = f.size
            on = np.zeros((1, max(task.height - h + 1, 0), max(task.width - w + 1, 0)), dtype=bool)
            for i, j in occurrences(task, image, f):
                on[0, i, j] = True
            maps[f.name] = Map(0, 0, on)
        for g in sorted(task.parts, key=lambda g: task.level(g.name)):
            maps[g.name] = part_map(g, maps)
    else:
        maps = item_maps(task, ints[None])
    m = maps[name]
    return [(m.r0 + int(a), m.c0 + int(b)) for a, b in zip(*np.nonzero(m.on[0]))]


def how_present(task: Task, image: np.ndarray, name: str, anchor: tuple[int, int]) -> list:
    """Why part ``name`` occurs at ``anchor``: per piece, (item, the anchor where it occurs, and
    for a part piece the same list again), the first displacement that works."""
    g = task.part(name)
    out = []
    for n, r, c in g.pieces:
        occ = set(item_occurrences(task, image, n))
        hit = None
        for e in range(-g.jitter, g.jitter + 1):
            for e2 in range(-g.jitter, g.jitter + 1):
                a = (anchor[0] + r + e, anchor[1] + c + e2)
                if hit is None and a in occ:
                    hit = a
        if hit is None:
            raise ValueError(f"{name} does not occur at {anchor}")
        out.append((n, hit, how_present(task, image, n, hit) if task.is_part(n) else []))
    return out


def assembly_lines(task: Task, scene, image, name: str, anchor: tuple[int, int], depth: int = 0) -> list[str]:
    """How an accidental part is assembled, one line per piece: where the piece occurs and
    whether a placement put it there (which one) or it appears by accident."""
    where: dict = {}
    todo = [(p, p) for p in scene]
    while todo:
        p, top = todo.pop()
        where[(p.feature, p.row, p.col)] = top
        todo.extend((q, top) for q in p.pieces)
    out = []
    for n, a, sub in how_present(task, image, name, anchor):
        top = where.get((n, a[0], a[1]))
        src = (f"placed (in {top.feature}@({top.row},{top.col}))" if top is not None and top.feature != n
               else "placed" if top is not None else "by accident")
        out.append("  " * depth + f"piece {n} at ({a[0]},{a[1]}): {src}")
        if sub and top is None:
            out.extend(assembly_lines(task, scene, image, n, a, depth + 1))
    return out
