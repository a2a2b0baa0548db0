"""Scenes, base images and feature occurrence (MODEL.md sections 1-3).

Stage: task -> scenes -> images. Trusted: yes (the exhaustive prover and the falsifier use it).
The test suite checks it against a naive enumerator written separately from MODEL.md.

A scene is a sorted tuple of placements ``(feature, row, col)``; scenes that differ only in the
order of their placements are the same scene. In a hierarchical task (MODEL.md section 8) a
placement may place a part: then ``feature`` is the part's name and ``pieces`` holds the
placements of its pieces (constructions/parts.py); every function here handles both, the flat
task keeping its own fast loops.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Sequence

import numpy as np

from cnnproof.constructions.task import ClassSpec, Feature, Task


class SearchBudgetExceeded(Exception):
    """A bounded search ran out of budget: the caller must answer UNKNOWN, never guess."""


@dataclass(frozen=True, order=True)
class Placement:
    feature: str  # the item's name: a feature, or a part (then ``pieces`` is not empty)
    row: int
    col: int
    pieces: tuple = ()  # a part's placement: one placement per piece, at absolute positions


Scene = tuple[Placement, ...]


class AnchorGrid:
    """The allowed anchors as a lazy sequence in row-major order: rows × cols ranges.

    >>> g = AnchorGrid(range(0, 4, 2), range(1, 3))
    >>> list(g), len(g), g[3]
    ([(0, 1), (0, 2), (2, 1), (2, 2)], 4, (2, 2))
    """

    __slots__ = ("rows", "cols")

    def __init__(self, rows: range, cols: range):
        self.rows, self.cols = rows, cols

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def __getitem__(self, k: int) -> tuple[int, int]:
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        a, b = divmod(k, len(self.cols))
        return (self.rows[a], self.cols[b])

    def __iter__(self):
        for i in self.rows:
            for j in self.cols:
                yield (i, j)


def _axis(n: int, step: int, lo: int, hi: int) -> range:
    """Multiples of ``step`` (counted from 0) in [lo, hi] and in [0, n)."""
    lo, hi = max(lo, 0), min(hi, n - 1)
    first = -(-lo // step) * step
    return range(first, hi + 1, step) if first <= hi else range(0)


def anchors_for(task: Task, cls: ClassSpec, feature: Feature) -> AnchorGrid:
    """Every allowed top-left anchor of ``feature`` in a scene of ``cls`` (footprint inside)."""
    r, q = cls.anchors.stride
    r0, c0, r1, c1 = cls.anchors.region or (0, 0, task.height, task.width)
    return AnchorGrid(
        _axis(task.height - feature.height + 1, r, r0, r1),
        _axis(task.width - feature.width + 1, q, c0, c1),
    )


def _separated(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    """Footprints (row, col, h, w) are disjoint with Chebyshev distance >= gap + 1."""
    ai, aj, ah, aw = a
    bi, bj, bh, bw = b
    return (
        ai + ah - 1 + gap < bi
        or bi + bh - 1 + gap < ai
        or aj + aw - 1 + gap < bj
        or bj + bw - 1 + gap < aj
    )


def distractor_multisets(cls: ClassSpec) -> list[tuple[str, ...]]:
    """Every multiset (sorted tuple) of distractors of total size <= max_distractors."""
    out: list[tuple[str, ...]] = [()]
    for k in range(1, cls.max_distractors + 1):
        out.extend(itertools.combinations_with_replacement(cls.distractors, k))
    return out


def _slots(task: Task, cls: ClassSpec, extra: Sequence[str]) -> list[str]:
    req = [n for n in cls.required for _ in range(cls.copies)]
    return req + list(extra)


class ItemCandidates:
    """Every placement of one item in a scene of a class, as a lazy sequence (a part can have
    tens of thousands of variants at each of hundreds of anchors): candidate ``k`` is a variant
    (parts.py) at an anchor allowed by the class's stride and region (about the item's anchor,
    which for a part may lie outside the canvas) with every leaf inside the canvas.
    ``boxes(k)``: its leaf footprints (row, col, h, w); ``placement(k)``: the placement tree."""

    def __init__(self, task: Task, cls: ClassSpec, name: str, V=None):
        from cnnproof.constructions import parts as P

        V = V or P.Variants(task)
        (r, q), rg = cls.anchors.stride, cls.anchors.region
        self.per, self.starts, n = [], [], 0
        for v in V.of(name):
            t, l, b, rr = P.extent(task, v)
            rows = [i for i in range(-t, task.height - b + 1) if i % r == 0 and (rg is None or rg[0] <= i <= rg[2])]
            cols = [j for j in range(-l, task.width - rr + 1) if j % q == 0 and (rg is None or rg[1] <= j <= rg[3])]
            if rows and cols:
                self.per.append((v, P.boxes(task, v), rows, cols))
                self.starts.append(n)
                n += len(rows) * len(cols)
        self.n = n

    def __len__(self) -> int:
        return self.n

    def _locate(self, k: int):
        import bisect

        if not 0 <= k < self.n:
            raise IndexError(k)
        x = bisect.bisect_right(self.starts, k) - 1
        v, bx, rows, cols = self.per[x]
        a, b = divmod(k - self.starts[x], len(cols))
        return v, bx, rows[a], cols[b]

    def boxes(self, k: int) -> list:
        _, bx, i, j = self._locate(k)
        return [(a + i, b + j, h, w) for a, b, h, w in bx]

    def placement(self, k: int) -> Placement:
        from cnnproof.constructions.parts import shifted

        v, _, i, j = self._locate(k)
        return shifted(v, i, j)


def part_candidates(task: Task, cls: ClassSpec, name: str, V=None) -> ItemCandidates:
    return ItemCandidates(task, cls, name, V)


def _items_apart(bx1: list, bx2: list, gap: int) -> bool:
    return all(_separated(a, b, gap) for a in bx1 for b in bx2)


def _place_items(task: Task, cls: ClassSpec, slots: list[str]) -> Iterator[Scene]:
    """Every scene with exactly these item slots, for a hierarchical task."""
    from cnnproof.constructions import parts as P

    V = P.Variants(task)
    slots = sorted(slots)
    cands = {n: part_candidates(task, cls, n, V) for n in set(slots)}
    n = len(slots)
    chosen: list[int] = []
    placed: list = []

    def rec(k: int) -> Iterator[Scene]:
        if k == n:
            yield tuple(sorted(cands[slots[t]].placement(chosen[t]) for t in range(n)))
            return
        start = chosen[k - 1] + 1 if k > 0 and slots[k] == slots[k - 1] else 0
        cs = cands[slots[k]]
        for idx in range(start, len(cs)):
            bx = cs.boxes(idx)
            if all(_items_apart(bx, o, cls.gap) for o in placed):
                placed.append(bx)
                chosen.append(idx)
                yield from rec(k + 1)
                placed.pop()
                chosen.pop()

    yield from rec(0)


def _place(task: Task, cls: ClassSpec, slots: list[str]) -> Iterator[Scene]:
    """Every scene with exactly these feature slots (identical slots are unordered)."""
    if task.parts:
        yield from _place_items(task, cls, slots)
        return
    feats = [task.feature(n) for n in slots]
    anchors = [anchors_for(task, cls, f) for f in feats]
    # identical consecutive slots: enforce increasing anchor index to avoid permutations
    order = sorted(range(len(slots)), key=lambda k: slots[k])
    slots = [slots[k] for k in order]
    feats = [feats[k] for k in order]
    anchors = [anchors[k] for k in order]
    n = len(slots)
    boxes: list[tuple[int, int, int, int]] = []
    chosen: list[int] = []

    def rec(k: int) -> Iterator[Scene]:
        if k == n:
            yield tuple(
                sorted(Placement(slots[t], *anchors[t][chosen[t]]) for t in range(n))
            )
            return
        start = chosen[k - 1] + 1 if k > 0 and slots[k] == slots[k - 1] else 0
        f = feats[k]
        for idx in range(start, len(anchors[k])):
            i, j = anchors[k][idx]
            box = (i, j, f.height, f.width)
            if all(_separated(box, b, cls.gap) for b in boxes):
                boxes.append(box)
                chosen.append(idx)
                yield from rec(k + 1)
                boxes.pop()
                chosen.pop()

    yield from rec(0)


def enumerate_scenes(task: Task, cls: ClassSpec) -> Iterator[Scene]:
    """Every scene of ``cls``, each exactly once."""
    for extra in distractor_multisets(cls):
        yield from _place(task, cls, _slots(task, cls, extra))


def count_scenes(task: Task, cls: ClassSpec, limit: int | None = None) -> int:
    """The number of scenes of ``cls``; raises SearchBudgetExceeded past ``limit``."""
    n = 0
    for _ in enumerate_scenes(task, cls):
        n += 1
        if limit is not None and n > limit:
            raise SearchBudgetExceeded(f"more than {limit} scenes")
    return n


def find_scene(task: Task, cls: ClassSpec, budget: int = 2_000_000) -> Scene | None:
    """One scene of ``cls`` with no distractors, or None when there is none.

    Distractors are optional, so a class has a scene iff its required placements fit.
    Raises SearchBudgetExceeded when the backtracking search visits more than ``budget`` nodes.
    """
    slots = _slots(task, cls, ())
    if task.parts:  # one exact z3 query (enumerating every variant at every anchor is too slow)
        from cnnproof.verifier.checker.scenes import cooccur

        found = cooccur(task, cls, [])
        return None if found is None else scene_from_json(found)
    # place the largest features first: failures show up early
    feats = sorted((task.feature(n) for n in slots), key=lambda f: -f.height * f.width)
    anchors = [anchors_for(task, cls, f) for f in feats]
    if any(not a for a in anchors):
        return None
    visited = 0
    boxes: list[tuple[int, int, int, int]] = []
    chosen: list[int] = []

    def rec(k: int) -> bool:
        nonlocal visited
        if k == len(feats):
            return True
        f = feats[k]
        start = chosen[k - 1] + 1 if k > 0 and feats[k].name == feats[k - 1].name else 0
        for idx in range(start, len(anchors[k])):
            visited += 1
            if visited > budget:
                raise SearchBudgetExceeded(f"more than {budget} search nodes")
            i, j = anchors[k][idx]
            box = (i, j, f.height, f.width)
            if all(_separated(box, b, cls.gap) for b in boxes):
                boxes.append(box)
                chosen.append(idx)
                if rec(k + 1):
                    return True
                boxes.pop()
                chosen.pop()
        return False

    if not rec(0):
        return None
    return tuple(sorted(Placement(f.name, *anchors[k][chosen[k]]) for k, f in enumerate(feats)))


def _find_items(task: Task, cls: ClassSpec, slots: list[str], budget: int, rng: random.Random | None = None) -> Scene | None:
    """One scene with these item slots (hierarchical tasks), by backtracking; with ``rng``, over
    shuffled candidates (sampling's fallback)."""
    from cnnproof.constructions import parts as P

    V = P.Variants(task)
    slots = sorted(slots)
    cands, order = {}, {}
    for n in set(slots):
        cands[n] = part_candidates(task, cls, n, V)
        order[n] = list(range(len(cands[n])))
        if rng is not None:
            rng.shuffle(order[n])
    visited = 0
    chosen: list = []
    placed: list = []

    def rec(k: int) -> bool:
        nonlocal visited
        if k == len(slots):
            return True
        cs, od = cands[slots[k]], order[slots[k]]
        start = chosen[k - 1] + 1 if k > 0 and slots[k] == slots[k - 1] else 0
        for pos in range(start, len(cs)):
            idx = od[pos]
            visited += 1
            if visited > budget:
                raise SearchBudgetExceeded(f"more than {budget} search nodes")
            bx = cs.boxes(idx)
            if all(_items_apart(bx, o, cls.gap) for o in placed):
                placed.append(bx)
                chosen.append(pos)
                if rec(k + 1):
                    return True
                placed.pop()
                chosen.pop()
        return False

    if not rec(0):
        return None
    return tuple(sorted(cands[slots[k]].placement(order[slots[k]][chosen[k]]) for k in range(len(slots))))


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

UNIFORM_LIMIT = 20_000


def sample_scenes(task: Task, cls: ClassSpec, n: int, rng: random.Random) -> list[Scene]:
    """``n`` scenes of ``cls`` drawn with ``rng`` (see docs/sampling.md).

    Uniform over all scenes when the class has at most UNIFORM_LIMIT scenes (they are counted
    by enumeration). Otherwise: a distractor multiset uniformly among the multisets, then
    placements by rejection sampling over anchors, which is uniform over the scenes with that
    multiset; after 1000 rejections a randomized backtracking search takes over.
    """
    try:
        everything = list(_limited(enumerate_scenes(task, cls), UNIFORM_LIMIT))
        return [everything[rng.randrange(len(everything))] for _ in range(n)]
    except SearchBudgetExceeded:
        pass
    multisets = distractor_multisets(cls)
    out = []
    cache: dict = {}  # the items' candidates, built once for all n draws
    for _ in range(n):
        extra = multisets[rng.randrange(len(multisets))]
        s = _rejection_sample(task, cls, _slots(task, cls, extra), rng, cache)
        if s is None:  # this multiset may not fit: fall back to none
            s = _rejection_sample(task, cls, _slots(task, cls, ()), rng, cache)
        if s is None:
            raise SearchBudgetExceeded(f"could not sample a scene of class {cls.name}")
        out.append(s)
    return out


def _limited(it: Iterator[Scene], limit: int) -> Iterator[Scene]:
    for k, s in enumerate(it):
        if k >= limit:
            raise SearchBudgetExceeded("too many scenes to enumerate")
        yield s


def _rejection_sample(task: Task, cls: ClassSpec, slots: list[str], rng: random.Random,
                      cache: dict | None = None) -> Scene | None:
    if task.parts:
        return _sample_items(task, cls, slots, rng, cache)
    feats = [task.feature(s) for s in slots]
    anchors = [anchors_for(task, cls, f) for f in feats]
    if any(not a for a in anchors):
        return None
    for _ in range(1000):
        boxes = []
        ok = True
        placed = []
        for f, an in zip(feats, anchors):
            i, j = an[rng.randrange(len(an))]
            box = (i, j, f.height, f.width)
            if not all(_separated(box, b, cls.gap) for b in boxes):
                ok = False
                break
            boxes.append(box)
            placed.append(Placement(f.name, i, j))
        if ok:
            return tuple(sorted(placed))
    # randomized backtracking: shuffle anchor orders, take the first complete packing
    shuffled = [[a[k] for k in rng.sample(range(len(a)), len(a))] for a in anchors]  # (a lazy AnchorGrid too)
    boxes: list = []
    placed: list = []

    def rec(k: int) -> bool:
        if k == len(feats):
            return True
        f = feats[k]
        for i, j in shuffled[k]:
            box = (i, j, f.height, f.width)
            if all(_separated(box, b, cls.gap) for b in boxes):
                if any(p == Placement(f.name, i, j) for p in placed):
                    continue
                boxes.append(box)
                placed.append(Placement(f.name, i, j))
                if rec(k + 1):
                    return True
                boxes.pop()
                placed.pop()
        return False

    return tuple(sorted(placed)) if rec(0) else None


def _sample_items(task: Task, cls: ClassSpec, slots: list[str], rng: random.Random,
                  cache: dict | None = None) -> Scene | None:
    """Rejection sampling over item placements (hierarchical tasks), then shuffled backtracking.
    ``cache`` (one class's draws share it) keeps each item's candidates."""
    from cnnproof.constructions import parts as P

    cache = {} if cache is None else cache
    V = cache.setdefault(None, P.Variants(task))
    for n in sorted(set(slots)):
        if n not in cache:
            cache[n] = part_candidates(task, cls, n, V)
    cands = {n: cache[n] for n in set(slots)}
    if any(not c for c in cands.values()):
        return None
    for _ in range(1000):
        placed: list = []
        chosen: list = []
        for n in slots:
            k = rng.randrange(len(cands[n]))
            p, bx = cands[n].placement(k), cands[n].boxes(k)
            if p in chosen or not all(_items_apart(bx, o, cls.gap) for o in placed):
                break
            placed.append(bx)
            chosen.append(p)
        else:
            return tuple(sorted(chosen))
    try:
        return _find_items(task, cls, slots, 2_000_000, rng)
    except SearchBudgetExceeded:
        return None


# ---------------------------------------------------------------------------------------------
# Images and occurrence
# ---------------------------------------------------------------------------------------------


def placement_text(p: Placement) -> str:
    """``f@(r,c)``; a part's placement lists its pieces: ``g@(r,c)[f@(r,c) h@(r,c)]``."""
    own = f"{p.feature}@({p.row},{p.col})"
    return own + ("[" + " ".join(placement_text(q) for q in p.pieces) + "]" if p.pieces else "")


def placement_json(p: Placement) -> list:
    """[item, row, col], and for a part's placement a fourth entry: its pieces, the same way."""
    out: list = [p.feature, p.row, p.col]
    if p.pieces:
        out.append([placement_json(q) for q in p.pieces])
    return out


def scene_from_json(nested) -> Scene:
    """The scene of :func:`placement_json` lists ([item, row, col(, [pieces])])."""
    def one(t) -> Placement:
        return Placement(t[0], t[1], t[2], tuple(one(k) for k in (t[3] if len(t) > 3 else ())))

    return tuple(sorted(one(t) for t in nested))


def scene_text(scene: Scene) -> str:
    return ", ".join(placement_text(p) for p in scene)


def _leaves(scene: Scene):
    """The feature placements of a scene (a part's placement contributes its leaves)."""
    for p in scene:
        if p.pieces:
            from cnnproof.constructions.parts import leaves

            yield from leaves(p)
        else:
            yield p


def base_image(task: Task, scene: Scene) -> np.ndarray:
    """The base image of a scene as an object array (C, H, W) of Fractions."""
    img = np.full((task.channels, task.height, task.width), task.background, dtype=object)
    for p in _leaves(scene):
        f = task.feature(p.feature)
        for ch, a, b, v in f.support():
            img[ch, p.row + a, p.col + b] = v
    return img


def base_image_int(task: Task, scene: Scene) -> np.ndarray:
    """The base image scaled by ``task.scale`` as an int64 array (C, H, W)."""
    sc = task.scale
    img = np.full((task.channels, task.height, task.width), int(task.background * sc), dtype=np.int64)
    for p in _leaves(scene):
        f = task.feature(p.feature)
        for ch, a, b, v in f.support():
            img[ch, p.row + a, p.col + b] = int(v * sc)
    return img


def occurrences(task: Task, image: np.ndarray, feature: Feature) -> list[tuple[int, int]]:
    """Every anchor (i, j) where ``image`` (object array of Fractions) contains ``feature``.

    Containment is within the noise bound: |x - T| <= δ on every support cell.
    """
    C, H, W = image.shape
    h, w = feature.size
    sup = feature.support()
    out = []
    d = task.noise
    for i in range(H - h + 1):
        for j in range(W - w + 1):
            if all(abs(image[ch, i + a, j + b] - v) <= d for ch, a, b, v in sup):
                out.append((i, j))
    return out


def presence_int(task: Task, images: np.ndarray) -> np.ndarray:
    """Presence of each feature in each base image: (N, F) bool, images (N, C, H, W) scaled ints.

    Base images hold exact levels, so containment is equality on the support (noise does not
    change presence: MODEL.md section 1).
    """
    if task.parts:  # (N, I) over task.items: features, then parts (MODEL.md section 8)
        from cnnproof.constructions.parts import item_presence

        return item_presence(task, images)
    N, C, H, W = images.shape
    sc = task.scale
    out = np.zeros((N, len(task.features)), dtype=bool)
    for k, f in enumerate(task.features):
        h, w = f.size
        ok = np.ones((N, H - h + 1, W - w + 1), dtype=bool)
        for ch, a, b, v in f.support():
            ok &= images[:, ch, a : a + H - h + 1, b : b + W - w + 1] == int(v * sc)
        out[:, k] = ok.reshape(N, -1).any(axis=1)
    return out


def complete_classes(task: Task, present: Sequence[bool]) -> list[int]:
    """Indices of the classes whose required items are all present (``present`` in
    ``task.items`` order: the features, then any parts)."""
    names = {n for n, p in zip(task.items, present) if p}
    return [k for k, c in enumerate(task.classes) if all(n in names for n in c.required)]


def true_label(task: Task, present: Sequence[bool]) -> int | None:
    """The true label (MODEL.md section 2): the one complete class, or None when ambiguous."""
    done = complete_classes(task, present)
    return done[0] if len(done) == 1 else None


def image_text(task: Task, image: np.ndarray) -> str:
    """An image drawn as text: one symbol per pixel, exact values listed for off-level pixels."""
    lines = []
    C = image.shape[0]
    for ch in range(C):
        if C > 1:
            lines.append(f"channel {ch}:")
        for row in image[ch]:
            cells = []
            for v in row:
                v = Fraction(v)
                sym = task.symbol_of(v) if v in task.levels else None
                if sym is None or sym == "?":
                    # nearest level symbol, marked as noisy with a trailing '~'
                    near = min(task.levels, key=lambda l: abs(l - v))
                    s = task.symbol_of(near)
                    cells.append((s if s != "?" else "o") + ("~" if v != near else " "))
                else:
                    cells.append(sym + " ")
            lines.append("  " + "".join(cells).rstrip())
    return "\n".join(lines)


def _count_problem(cls: ClassSpec, scene: Scene, names: set, word: str) -> str | None:
    """The counting rules of section 3: known names, no repeats, copies, distractors."""
    counts: dict[str, int] = {}
    for p in scene:
        if p.feature not in names:
            return f"unknown {word} {p.feature!r}"
        counts[p.feature] = counts.get(p.feature, 0) + 1
    if len(set(scene)) != len(scene):
        return "a placement is listed twice"
    for n in cls.required:
        if counts.get(n, 0) != cls.copies:
            return f"required {word} {n!r} placed {counts.get(n, 0)} times, not {cls.copies}"
    extra = 0
    for n, k in counts.items():
        if n in cls.required:
            continue
        if n not in cls.distractors:
            return f"{word} {n!r} is neither required nor a distractor of class {cls.name}"
        extra += k
    if extra > cls.max_distractors:
        return f"{extra} distractors placed, at most {cls.max_distractors} allowed"
    return None


def scene_problem(task: Task, cls: ClassSpec, scene: Scene) -> str | None:
    """Why ``scene`` is not a scene of ``cls`` (MODEL.md section 3), or None when it is one."""
    if task.parts:
        return _items_problem(task, cls, scene)
    why = _count_problem(cls, scene, {f.name for f in task.features}, "feature")
    if why:
        return why
    boxes = []
    for p in scene:
        f = task.feature(p.feature)
        if not (0 <= p.row <= task.height - f.height and 0 <= p.col <= task.width - f.width):
            return f"{p.feature} at ({p.row}, {p.col}) does not fit on the canvas"
        if not cls.anchors.allows(p.row, p.col):
            return f"{p.feature} at ({p.row}, {p.col}) is not an allowed anchor"
        box = (p.row, p.col, f.height, f.width)
        for q, b in boxes:
            if not _separated(box, b, cls.gap):
                return f"{p.feature} at ({p.row}, {p.col}) overlaps or is closer than gap {cls.gap} to {q.feature} at ({q.row}, {q.col})"
        boxes.append((p, box))
    return None


def _placement_problem(task: Task, p: Placement) -> str | None:
    """Why a placement tree is not a placement of its item (section 8), or None."""
    if not task.is_part(p.feature):
        if p.pieces:
            return f"{p.feature} is a feature and has no pieces"
        return None
    g = task.part(p.feature)
    if len(p.pieces) != len(g.pieces):
        return f"part {g.name} at ({p.row}, {p.col}) has {len(p.pieces)} pieces, not {len(g.pieces)}"
    for q, (n, r, c) in zip(p.pieces, g.pieces):
        if q.feature != n:
            return f"part {g.name} at ({p.row}, {p.col}): piece {q.feature!r} where {n!r} belongs"
        e, e2 = q.row - p.row - r, q.col - p.col - c
        if max(abs(e), abs(e2)) > g.jitter:
            return f"part {g.name} at ({p.row}, {p.col}): piece {n} displaced by ({e}, {e2}), beyond jitter {g.jitter}"
        why = _placement_problem(task, q)
        if why:
            return why
    from cnnproof.constructions import parts as P

    bx = P.boxes(task, p)
    for a in range(len(bx)):
        for b in range(a):
            if not P._disjoint(bx[a], bx[b]):
                return f"part {g.name} at ({p.row}, {p.col}): two of its features overlap"
    return None


def _items_problem(task: Task, cls: ClassSpec, scene: Scene) -> str | None:
    from cnnproof.constructions import parts as P

    why = _count_problem(cls, scene, set(task.items), "item")
    if why:
        return why
    seen = []
    for p in scene:
        why = _placement_problem(task, p)
        if why:
            return why
        bx = P.boxes(task, p)
        if not all(0 <= r and r + h <= task.height and 0 <= c and c + w <= task.width for r, c, h, w in bx):
            return f"{p.feature} at ({p.row}, {p.col}) does not fit on the canvas"
        if not cls.anchors.allows(p.row, p.col):
            return f"{p.feature} at ({p.row}, {p.col}) is not an allowed anchor"
        for q, ob in seen:
            if not _items_apart(bx, ob, cls.gap):
                return f"{p.feature} at ({p.row}, {p.col}) overlaps or is closer than gap {cls.gap} to {q.feature} at ({q.row}, {q.col})"
        seen.append((p, bx))
    return None
