"""The scene lemma's search: can these features all appear together in one scene of a class?

Stage: task -> scene facts (used by the compositional prover). Trusted: no (its "impossible"
answers are re-decided by the certificate checker with a separate implementation; its
"possible" answers come with a concrete scene that exact evaluation re-checks).

``appear_together(task, cls, goals)`` decides exactly whether some scene of ``cls`` (MODEL.md
section 3: copies, distractors, gap, stride/region anchors, canvas borders) has a base image in
which every feature of ``goals`` occurs (by accident or placed), and returns such a scene. The
search is absolute (so it is exact at the border) and goal-directed:

* for the next goal g and each anchor u of g's window, the cells of g's support that need a
  non-background value must be written by placements; the first such cell is covered by trying
  each (feature f, cell of f with that value) that is *compatible* with g at that relative
  offset (precomputed: on the overlap, f writes what g needs) and fits (anchor rules, gap, slots);
* a committed occurrence freezes its cells, so later placements cannot destroy it;
* when every goal is committed, the remaining required copies are packed anywhere compatible.

The search never runs on a canvas larger than :func:`reduced_canvas`: an explicit frame, a
function of the class's rules and the goals only, beyond which neither the canvas nor a region's
distance from the canvas corner can change the answer (the proof: docs/canvas-bound.md). A scene
found in the frame is, translated back, a scene of the real canvas, and a scene of the real
canvas can be squeezed into the frame, so the answer is exact on every canvas and the work stops
growing once the canvas is larger than the frame. ``WORK`` counts searches and nodes.

A node budget bounds the work; exceeding it raises SearchBudgetExceeded (the caller answers
UNKNOWN or falls back, never guesses). :func:`uncoverable_cell` is the cheap, canvas-independent
proof that a feature can never appear in a class: a cell of its support that needs a
non-background value which no placement of the class can write compatibly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

from cnnproof.constructions.scenes import Placement, Scene, SearchBudgetExceeded, _separated
from cnnproof.constructions.task import ClassSpec, Feature, Task

Cell = tuple[int, int, int]  # (channel, row, col)

DEFAULT_BUDGET = 200_000

WORK: Counter = Counter()  # "searches" and "nodes" of appear_together; read by tests and bench


def reduced_canvas(task: Task, cls: ClassSpec, goals) -> tuple[int, int, int, int]:
    """(dr, dc, rows, cols): the frame on which the question "can ``goals`` occur together in a
    scene of ``cls``?" has the same answer as on the task's canvas (the proof:
    docs/canvas-bound.md). The frame is the rows x cols canvas whose cell (0, 0) is the task's
    cell (dr, dc); an anchor (i, j) of the frame stands for the task's (i + dr, j + dc), under
    the class's own grid and region. dr, dc are multiples of the stride.

    Per axis: a region's first anchor is moved up to just past the goal windows that can lie
    above it (the shift), then the frame holds the region's first anchor, the extent of every
    object a scene with the goals can hold (each placement and each goal window), and per
    object one empty run shorter than gap + stride. Never larger than the canvas.
    """
    r, q = cls.anchors.stride
    r0, c0 = (0, 0) if cls.anchors.region is None else cls.anchors.region[:2]
    req = [task.feature(n) for n in cls.required for _ in range(cls.copies)]
    ds = [task.feature(n) for n in cls.distractors] if cls.max_distractors > 0 else []
    gs = [task.feature(n) for n in dict.fromkeys(goals)]
    n_obj = len(req) + (cls.max_distractors if ds else 0) + len(gs)

    def axis(first: int, stride: int, size, canvas: int) -> tuple[int, int]:
        above = sum(size(f) for f in gs) + (len(gs) + 1) * (stride - 1)
        first = max(first, 0)
        shift = stride * -(-(first - above) // stride) if first > above else 0
        most = max((size(f) for f in ds), default=0)
        extent = sum(size(f) for f in req + gs) + cls.max_distractors * most
        return shift, min(canvas - shift, first - shift + extent + n_obj * (cls.gap + stride - 1))

    dr, rows = axis(r0, r, lambda f: f.height, task.height)
    dc, cols = axis(c0, q, lambda f: f.width, task.width)
    return dr, dc, rows, cols


def _support(f: Feature) -> dict[Cell, Fraction]:
    return {(ch, a, b): v for ch, a, b, v in f.support()}


class _Tables:
    """Per-task precomputation: supports and pairwise compatibility at relative offsets."""

    def __init__(self, task: Task):
        self.task = task
        self.sup = {f.name: _support(f) for f in task.features}
        self.size = {f.name: f.size for f in task.features}
        self._compat: dict[tuple[str, str, int, int], bool] = {}
        self.options: dict[tuple, dict] = {}
        self._by_value: dict[tuple[str, int, Fraction], list[tuple[int, int]]] = {}
        for name, sup in self.sup.items():
            for (ch, a, b), v in sup.items():
                self._by_value.setdefault((name, ch, v), []).append((a, b))

    def cells_with(self, f: str, ch: int, v: Fraction) -> list[tuple[int, int]]:
        """The cells of f's template in channel ch whose value is v."""
        return self._by_value.get((f, ch, v), [])

    def compatible(self, g: str, f: str, di: int, dj: int) -> bool:
        """f placed at offset (di, dj) relative to g's window writes nothing g's support rejects.

        On the overlap of f's footprint with g's window: where g needs a value, the image value
        (f's template value, or background under f's '*') must equal it.
        """
        key = (g, f, di, dj)
        hit = self._compat.get(key)
        if hit is not None:
            return hit
        bg = self.task.background
        gs, fs = self.sup[g], self.sup[f]
        fh, fw = self.size[f]
        ok = True
        for (ch, a, b), need in gs.items():
            ra, rb = a - di, b - dj
            if 0 <= ra < fh and 0 <= rb < fw:
                have = fs.get((ch, ra, rb), bg)
                if have != need:
                    ok = False
                    break
        self._compat[key] = ok
        return ok


_CACHE: dict[tuple[type, int], tuple[Task, object]] = {}


def _per_task(kind: type, task: Task):
    """``kind(task)``, built once per task object (cached by identity: hashing a large frozen
    task is slow)."""
    hit = _CACHE.get((kind, id(task)))
    if hit is None or hit[0] is not task:
        if len(_CACHE) > 64:
            _CACHE.clear()
        hit = (task, kind(task))
        _CACHE[(kind, id(task))] = hit
    return hit[1]


def _tables(task: Task) -> _Tables:
    return _per_task(_Tables, task)


def available(task: Task, cls: ClassSpec) -> list[str]:
    """Features that may be placed in a scene of ``cls``."""
    out = list(cls.required)
    if cls.max_distractors > 0:
        out += list(cls.distractors)
    return out


def cover_options(task: Task, cls: ClassSpec, g: str) -> dict[Cell, list[tuple[str, int, int]]]:
    """For each support cell of g needing a non-background value: the (f, di, dj) offsets
    (f's anchor relative to g's window) at which an available f writes that value there and is
    compatible with g."""
    T = _tables(task)
    key = (cls, g)  # the class itself: another class of the same name has other options
    hit = T.options.get(key)
    if hit is not None:
        return hit
    bg = task.background
    out: dict[Cell, list[tuple[str, int, int]]] = {}
    for (ch, a, b), v in T.sup[g].items():
        if v == bg:
            continue
        opts = []
        for f in available(task, cls):
            for fa, fb in T.cells_with(f, ch, v):
                di, dj = a - fa, b - fb
                if T.compatible(g, f, di, dj):
                    opts.append((f, di, dj))
        out[(ch, a, b)] = opts
    T.options[key] = out
    return out


def uncoverable_cell(task: Task, cls: ClassSpec, g: str) -> Cell | None:
    """A support cell of g that no placement of ``cls`` can write compatibly, or None.

    If one exists, g never occurs in any image of ``cls``, whatever the canvas. Most features
    are settled by the key-cell index (:class:`_KeyIndex`) without visiting their cells: the
    work per class grows with the class's own features, not with the task's.
    """
    idx = _key_index(task)
    if g not in idx.candidates(cls):
        return idx.uncovered(cls, g)  # no option covers this key cell (the index is exact for it)
    return _first_uncoverable(task, cls, g)


def _first_uncoverable(task: Task, cls: ClassSpec, g: str) -> Cell | None:
    """The cell :func:`cover_options` would leave without options, tried nearest the centre
    first and each abandoned at its first option (the full option lists are not built)."""
    T = _tables(task)
    avail = list(dict.fromkeys(available(task, cls)))
    for (ch, a, b), v in _centre_first(task, g):
        if not any(T.compatible(g, f, a - fa, b - fb) for f in avail for fa, fb in T.cells_with(f, ch, v)):
            return (ch, a, b)
    return None


def _centre_first(task: Task, g: str) -> list[tuple[Cell, Fraction]]:
    """g's support cells needing a non-background value, nearest the centre of its window first
    (Chebyshev distance; ties by cell): they have the largest overlaps with what covers them."""
    T = _tables(task)
    gh, gw = T.size[g]
    return sorted(((c, v) for c, v in T.sup[g].items() if v != task.background),
                  key=lambda cv: (max(abs(2 * cv[0][1] - (gh - 1)), abs(2 * cv[0][2] - (gw - 1))), cv[0]))


KEY_CELLS = 2  # key cells per feature: a candidate must have all of them covered


class _KeyIndex:
    """For every feature g, its key cells: the (at most ``KEY_CELLS``) support cells needing a
    non-background value that are nearest the centre of g's window (the ones with the largest
    overlaps, so the fewest features cover them). ``candidates(cls)`` is the set of features
    each of whose key cells some available feature of ``cls`` covers compatibly, found by
    hashing, not by visiting every g: for f placed with its cell y on g's key cell x (offset
    d = x - y), f is compatible with g iff g's needed values on the overlap equal what f writes
    there; the (feature, key cell) entries of one (window size, cell, value) group are hashed,
    per offset and f's size, by those values. A feature outside ``candidates(cls)`` has an
    uncoverable key cell, ``uncovered(cls, g)`` (exactly what :func:`cover_options` would find
    for that cell); a feature with no key cell (it needs only background) is a candidate."""

    def __init__(self, task: Task):
        self.task = task
        T = _tables(task)
        self.T = T
        bg = task.background
        self.keys: dict[str, list[Cell]] = {}
        self.groups: dict[tuple[int, Fraction], list[tuple[int, int, int, int]]] = {}  # (ch, v) -> (gh, gw, a, b)
        self.members: dict[tuple, list[tuple[str, int]]] = {}  # group -> (feature, which key cell)
        self.trivial: set[str] = set()
        for f in task.features:
            gh, gw = f.size
            cells = _centre_first(task, f.name)
            self.keys[f.name] = [c for c, _ in cells[:KEY_CELLS]]
            if not cells:
                self.trivial.add(f.name)
            for i, ((ch, a, b), v) in enumerate(cells[:KEY_CELLS]):
                grp = (gh, gw, a, b)
                if (ch, v) + grp not in self.members:
                    self.groups.setdefault((ch, v), []).append(grp)
                self.members.setdefault((ch, v) + grp, []).append((f.name, i))
        self._tables: dict[tuple, tuple[list, dict]] = {}
        self._hits: dict[str, tuple] = {}  # class name -> (the class, feature -> bit set of its covered key cells)
        self._cands: dict[str, tuple] = {}  # class name -> (the class, its candidates)
        # each feature's values as small integers (hashing Fractions dominated the lookups)
        codes: dict[Fraction, int] = {bg: 0}
        self.code = {f.name: {c: codes.setdefault(v, len(codes)) for c, v in T.sup[f.name].items()}
                     for f in task.features}

    def _table(self, ch: int, v, grp, fsize, d):
        """(cells of the overlap, {mask: {needed values: [(g, i)]}}) for the group and offset."""
        k = (ch, v, grp, fsize, d)
        hit = self._tables.get(k)
        if hit is not None:
            return hit
        gh, gw, _, _ = grp
        fh, fw = fsize
        di, dj = d
        cells = [(c, r, q) for r in range(max(0, di), min(gh, di + fh)) for q in range(max(0, dj), min(gw, dj + fw))
                 for c in range(self.task.channels)]
        by_mask: dict[tuple, dict[tuple, list[tuple[str, int]]]] = {}
        for g, i in self.members[(ch, v) + grp]:
            sup = self.code[g]
            mask = tuple(c in sup for c in cells)
            key = tuple(sup[c] for c in cells if c in sup)
            by_mask.setdefault(mask, {}).setdefault(key, []).append((g, i))
        self._tables[k] = hit = (cells, by_mask)
        return hit

    def _covered(self, cls: ClassSpec) -> dict[str, int]:
        hit = self._hits.get(cls.name)
        if hit is not None and (hit[0] is cls or hit[0] == cls):
            return hit[1]
        T = self.T
        bits: dict[str, int] = {}
        for f in dict.fromkeys(available(self.task, cls)):
            fs = self.code[f]
            for (ch, fa, fb), v in T.sup[f].items():
                for grp in self.groups.get((ch, v), ()):
                    _, _, a, b = grp
                    di, dj = a - fa, b - fb
                    cells, by_mask = self._table(ch, v, grp, T.size[f], (di, dj))
                    for mask, table in by_mask.items():
                        key = tuple(fs.get((c, r - di, q - dj), 0) for (c, r, q), m in zip(cells, mask) if m)
                        for g, i in table.get(key, ()):
                            bits[g] = bits.get(g, 0) | (1 << i)
        self._hits[cls.name] = (cls, bits)
        return bits

    def candidates(self, cls: ClassSpec) -> frozenset[str]:
        hit = self._cands.get(cls.name)
        if hit is None or not (hit[0] is cls or hit[0] == cls):  # a changed class of the same name: anew
            bits = self._covered(cls)
            hit = (cls, frozenset(self.trivial | {g for g, m in bits.items() if m == (1 << len(self.keys[g])) - 1}))
            self._cands[cls.name] = hit
        return hit[1]

    def uncovered(self, cls: ClassSpec, g: str) -> Cell:
        """A key cell of g (not a candidate of ``cls``) that nothing available covers."""
        m = self._covered(cls).get(g, 0)
        return next(c for i, c in enumerate(self.keys[g]) if not m >> i & 1)


def _key_index(task: Task) -> _KeyIndex:
    return _per_task(_KeyIndex, task)


@dataclass
class _State:
    placements: list[Placement]
    boxes: list[tuple[int, int, int, int]]
    written: dict[Cell, Fraction]  # support cells written by placements
    covered: set[tuple[int, int]]  # (row, col) inside some footprint
    frozen: dict[Cell, Fraction]
    left: dict[str, int]  # required copies still to place
    distractors_left: int


def local_configuration(task: Task, cls: ClassSpec, g: str, budget: int = DEFAULT_BUDGET) -> bool:
    """Can g occur at all, ignoring the canvas border and the anchor rules (gap, copies and
    distractor counts kept)? A relaxation: False proves g never occurs in any image of ``cls``,
    whatever the canvas; True decides nothing. Translation invariance fixes g's window at the
    centre of a canvas large enough that no placement touching it reaches a border."""
    span = max(max(f.height, f.width) for f in task.features) + cls.gap + 1
    gh, gw = _tables(task).size[g]
    return appear_together(task, cls, [g], budget, _relaxed=(2 * span + gh, 2 * span + gw, (span, span))) is not None


def appear_together(task: Task, cls: ClassSpec, goals: list[str] | tuple[str, ...],
                    budget: int = DEFAULT_BUDGET, _relaxed=None) -> Scene | None:
    """A scene of ``cls`` whose base image contains every feature of ``goals``, or None.

    Raises SearchBudgetExceeded after ``budget`` search nodes.
    """
    T = _tables(task)
    goals = list(dict.fromkeys(goals))
    opts = {g: cover_options(task, cls, g) for g in goals}
    if any(not o for g in goals for o in opts[g].values()):
        return None  # some needed cell can never be written
    if forced_conflict(task, cls, goals) is not None:
        return None
    # goals with the fewest anchors and most constraints first
    goals.sort(key=lambda g: (-len(opts[g]), g))
    bg = task.background
    # the frame: exact on the real canvas (see the docstring); frame anchor (i, j) = task's (i + dr, j + dc)
    dr, dc, H, W = reduced_canvas(task, cls, goals)
    allows = (lambda i, j: cls.anchors.allows(i + dr, j + dc)) if dr or dc else cls.anchors.allows
    if _relaxed is not None:
        H, W, centre = _relaxed
        dr = dc = 0
        allows = lambda i, j: True  # noqa: E731
    else:
        centre = None
        if len(goals) == 1 and not local_configuration(task, cls, goals[0], budget):
            return None
    st = _State([], [], {}, set(), {}, {n: cls.copies for n in cls.required}, cls.max_distractors)
    nodes = 0

    WORK["searches"] += 1

    def tick():
        nonlocal nodes
        nodes += 1
        WORK["nodes"] += 1
        if nodes > budget:
            raise SearchBudgetExceeded(f"scene search over {budget} nodes (class {cls.name}, goals {goals})")

    def value(cell: Cell) -> Fraction:
        return st.written.get(cell, bg)

    def can_place(f: str, i: int, j: int) -> bool:
        fh, fw = T.size[f]
        if not (0 <= i <= H - fh and 0 <= j <= W - fw) or not allows(i, j):
            return False
        if f in st.left:
            if st.left[f] <= 0:
                return False
        elif not (f in cls.distractors and st.distractors_left > 0):
            return False
        box = (i, j, fh, fw)
        if not all(_separated(box, b, cls.gap) for b in st.boxes):
            return False
        for (ch, a, b), fv in T.sup[f].items():
            fz = st.frozen.get((ch, i + a, j + b))
            if fz is not None and fz != fv:
                return False
        # '*' cells of f leave background: frozen cells there must be background
        for (ch, r, c), fz in st.frozen.items():
            if i <= r < i + fh and j <= c < j + fw and (ch, r - i, c - j) not in T.sup[f] and fz != bg:
                return False
        return True

    def place(f: str, i: int, j: int):
        fh, fw = T.size[f]
        st.placements.append(Placement(f, i, j))
        st.boxes.append((i, j, fh, fw))
        for (ch, a, b), fv in T.sup[f].items():
            st.written[(ch, i + a, j + b)] = fv
        for a in range(fh):
            for b in range(fw):
                st.covered.add((i + a, j + b))
        if f in st.left:
            st.left[f] -= 1
        else:
            st.distractors_left -= 1

    def unplace():
        p = st.placements.pop()
        st.boxes.pop()
        fh, fw = T.size[p.feature]
        for (ch, a, b) in T.sup[p.feature]:
            del st.written[(ch, p.row + a, p.col + b)]
        for a in range(fh):
            for b in range(fw):
                st.covered.discard((p.row + a, p.col + b))
        if p.feature in st.left:
            st.left[p.feature] += 1
        else:
            st.distractors_left += 1

    def commit(g: str, u: tuple[int, int], rest: list[str]) -> Scene | None:
        tick()
        ui, uj = u
        need = None  # of the cells still to write, the ways (f, i, j) to write the one with the fewest
        for (ch, a, b), v in T.sup[g].items():
            cell = (ch, ui + a, uj + b)
            cur = value(cell)
            if cur == v:
                continue
            if (ui + a, uj + b) in st.covered:
                return None  # fixed by a placement (its value or background under its '*')
            fz = st.frozen.get(cell)
            if fz is not None and fz != v:
                return None
            if v == bg:
                continue  # cannot happen: an uncovered cell is background
            ways = [(f, ui + di, uj + dj) for f, di, dj in opts[g][(ch, a, b)] if can_place(f, ui + di, uj + dj)]
            if not ways:
                return None  # this cell can no longer be written: no scene down this branch
            if need is None or len(ways) < len(need):
                need = ways
        if need is None:
            saved = dict(st.frozen)
            for (ch, a, b), v in T.sup[g].items():
                st.frozen[(ch, ui + a, uj + b)] = v
            found = search(rest)
            st.frozen.clear()
            st.frozen.update(saved)
            return found
        for f, i, j in need:
            place(f, i, j)
            found = commit(g, u, rest)
            if found is not None:
                return found
            unplace()
        return None

    def live(f: str) -> bool:
        if f in st.left:
            return st.left[f] > 0
        return f in cls.distractors and st.distractors_left > 0

    def anchors_of(g: str) -> list[tuple[int, int]] | None:
        """Where g can still occur: None (anywhere) unless some needed cell can no longer be
        written by a new placement; then only where that cell is already written right."""
        for (ch, a, b), os_ in opts[g].items():
            if any(live(f) for f, _, _ in os_):
                continue
            v = T.sup[g][(ch, a, b)]
            gh, gw = T.size[g]
            out = []
            for (wch, r, c), wv in st.written.items():
                if wch == ch and wv == v and 0 <= r - a <= H - gh and 0 <= c - b <= W - gw:
                    out.append((r - a, c - b))
            return sorted(out)
        return None

    def search(rest: list[str]) -> Scene | None:
        if not rest:
            return complete()
        # the goal with the fewest possible anchors first
        best = None
        for g in rest:
            an = anchors_of(g)
            if an is not None and (best is None or best[1] is None or len(an) < len(best[1])):
                best = (g, an)
                if not an:
                    return None
        if best is None:
            best = (rest[0], None)
        g, cand = best
        tail = [x for x in rest if x != g]
        gh, gw = T.size[g]
        if cand is None:
            if centre is not None and not st.placements:
                cand = [centre]
            else:
                cand = [(ui, uj) for ui in range(H - gh + 1) for uj in range(W - gw + 1)]
        for u in cand:
            found = commit(g, u, tail)
            if found is not None:
                return found
        return None

    def complete() -> Scene | None:
        if centre is not None:
            return tuple(sorted(st.placements))  # relaxed: the rest may go anywhere
        todo = [f for f, k in sorted(st.left.items()) for _ in range(k)]
        return pack(todo, 0, -1)

    def pack(todo: list[str], k: int, last: int) -> Scene | None:
        if k == len(todo):
            return tuple(sorted(st.placements))
        f = todo[k]
        fh, fw = T.size[f]
        start = last + 1 if k > 0 and todo[k - 1] == f else 0
        for idx in range(start, (H - fh + 1) * (W - fw + 1)):
            tick()
            i, j = divmod(idx, W - fw + 1)
            if can_place(f, i, j):
                place(f, i, j)
                found = pack(todo, k + 1, idx)
                if found is not None:
                    return found
                unplace()
        return None

    found = search(goals)
    if found is None or not (dr or dc):
        return found
    return tuple(sorted(Placement(p.feature, p.row + dr, p.col + dc) for p in found))


def _single(cls: ClassSpec, f: str) -> bool:
    """At most one placement of f in any scene of cls."""
    if f in cls.required:
        return cls.copies == 1
    return f in cls.distractors and cls.max_distractors <= 1


def forced_conflict(task: Task, cls: ClassSpec, goals: list[str] | tuple[str, ...]) -> str | None:
    """A canvas-independent reason why the goals cannot all occur in one scene, or None.

    If every way to write some needed cell of goal g uses the same placement (f, offset), and f
    is placed at most once in any scene, then every occurrence of g sits at that offset from the
    one f; two such goals (or two cells of one goal) forcing f at different offsets fix their
    relative position, and a cell both need with different values makes them incompatible.
    """
    T = _tables(task)
    forced: dict[str, list[tuple[str, str, int, int]]] = {}
    for g in goals:
        for cell, os_ in cover_options(task, cls, g).items():
            if len({(f, di, dj) for f, di, dj in os_}) == 1:
                f, di, dj = os_[0]
                if _single(cls, f):
                    forced.setdefault(f, []).append((g, di, dj))
    for f, uses in forced.items():
        for k in range(len(uses)):
            for m in range(k + 1, len(uses)):
                g1, d1i, d1j = uses[k]
                g2, d2i, d2j = uses[m]
                # u_g2 = u_g1 + (d1 - d2)
                oi, oj = d1i - d2i, d1j - d2j
                if g1 == g2:
                    if (oi, oj) != (0, 0):
                        return f"{g1} needs its single {f} at two offsets"
                    continue
                s1, s2 = T.sup[g1], T.sup[g2]
                for (ch, a, b), v in s2.items():
                    w = s1.get((ch, a + oi, b + oj))
                    if w is not None and w != v:
                        return (f"{g1} and {g2} share the single {f} at relative offset ({oi}, {oj}) "
                                f"and disagree at cell {(ch, a + oi, b + oj)} of {g1}")
    return None
