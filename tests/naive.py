"""A naive, literal reference semantics of MODEL.md sections 1-4, for tests only.

Stage: none (test oracle). Trusted: it is the independent reference the production scene
enumerator (``cnnproof.constructions.scenes``) and the provers are checked against, so it is
written straight from MODEL.md and shares no code with them: it reads the fields of the
``Task`` / ``Feature`` / ``ClassSpec`` dataclasses and nothing else (no methods, no
``Anchors.allows``, no properties). It is deliberately slow and obvious.

Representations (chosen to differ from the production ones):

- a placement is a plain tuple ``(feature name, row, col)``; a scene is a ``frozenset`` of
  placements (MODEL.md section 3: a scene is a set; order does not matter);
- an image is a nested list ``image[ch][row][col]`` of ``Fraction``.

How scenes are enumerated (MODEL.md section 3, rule by rule): every candidate placement
``(f, i, j)`` with ``f`` any feature of the task and ``(i, j)`` any pixel of the canvas is
considered; the candidates that violate a per-placement rule (footprint inside the canvas,
anchor on the stride grid counted from canvas row/col 0, anchor inside the inclusive region
box, feature neither required nor a distractor) are dropped; then every *subset* of the
remaining candidates is considered (sets, so the same placement cannot occur twice and the
order of placements is irrelevant) and kept when every required feature occurs exactly
``copies`` times, the distractors total at most ``max_distractors``, and every two placements
are separated cell by cell by Chebyshev distance ``>= gap + 1``. The subset search prunes a
branch only by rules that can never be repaired by adding placements (a count already too
large, two placements already too close); the exact-count rule is checked on each subset.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable, Sequence

Placement = tuple[str, int, int]
NaiveScene = frozenset  # frozenset[Placement]
Image = list  # list[list[list[Fraction]]], [channel][row][col]


class TooManyScenes(Exception):
    """Raised by :func:`naive_scenes` when a class has more scenes than the given limit."""


# ---------------------------------------------------------------------------------------------
# Reading the dataclasses (fields only)
# ---------------------------------------------------------------------------------------------


def _features(task) -> dict:
    """name -> template [ch][row][col] (None is '*'), read from the ``features`` field."""
    return {f.name: f.template for f in task.features}


def _shape(template) -> tuple[int, int]:
    """(h, w) of a template: every channel has the same shape."""
    return len(template[0]), len(template[0][0])


def _class(task, cls):
    """A ClassSpec given itself, its name or its index."""
    if isinstance(cls, int):
        return task.classes[cls]
    if isinstance(cls, str):
        for c in task.classes:
            if c.name == cls:
                return c
        raise KeyError(cls)
    return cls


# ---------------------------------------------------------------------------------------------
# Section 3: scenes
# ---------------------------------------------------------------------------------------------


def footprint_cells(h: int, w: int, i: int, j: int) -> list[tuple[int, int]]:
    """Every cell of the full h x w rectangle anchored at (i, j), '*' cells included."""
    return [(i + a, j + b) for a in range(h) for b in range(w)]


def inside_canvas(task, h: int, w: int, i: int, j: int) -> bool:
    """Every cell of the footprint is a pixel of the H x W canvas.

    A rectangle lies inside the canvas exactly when its first and last cells do.
    """
    first, last = (i, j), (i + h - 1, j + w - 1)
    return all(0 <= r < task.height and 0 <= c < task.width for r, c in (first, last))


def anchor_allowed(cls, i: int, j: int) -> bool:
    """The anchor rules of MODEL.md section 3, read from the ClassSpec fields.

    Stride grid: ``i mod r = 0`` and ``j mod q = 0``, counted from canvas row/col 0 (never from
    the region's corner). Region: ``row0 <= i <= row1`` and ``col0 <= j <= col1`` (inclusive).
    """
    r, q = cls.anchors.stride
    on_grid = i % r == 0 and j % q == 0
    region = cls.anchors.region
    if region is None:
        in_region = True
    else:
        row0, col0, row1, col1 = region
        in_region = row0 <= i <= row1 and col0 <= j <= col1
    return on_grid and in_region


def separated(cells_u: list[tuple[int, int]], cells_v: list[tuple[int, int]], gap: int) -> bool:
    """For every cell u of one footprint and v of the other: max(|du_row|, |du_col|) >= gap + 1."""
    return all(
        max(abs(u[0] - v[0]), abs(u[1] - v[1])) >= gap + 1 for u in cells_u for v in cells_v
    )


def candidate_placements(task, cls) -> list[Placement]:
    """Every placement that obeys the rules about one placement on its own."""
    cls = _class(task, cls)
    role = set(cls.required) | set(cls.distractors)
    out = []
    for name, template in _features(task).items():
        h, w = _shape(template)
        for i in range(task.height):
            for j in range(task.width):
                if name not in role:  # "no other feature placed"
                    continue
                if not inside_canvas(task, h, w, i, j):
                    continue
                if not anchor_allowed(cls, i, j):
                    continue
                out.append((name, i, j))
    return out


def _counts_ok_so_far(cls, counts: dict[str, int]) -> bool:
    """The count rules that adding placements can only break further."""
    for name in cls.required:
        if counts.get(name, 0) > cls.copies:
            return False
    extra = sum(k for name, k in counts.items() if name not in cls.required)
    return extra <= cls.max_distractors


def _counts_exact(cls, counts: dict[str, int]) -> bool:
    """Every required feature exactly ``copies`` times; distractors at most max_distractors."""
    for name in cls.required:
        if counts.get(name, 0) != cls.copies:
            return False
    for name, k in counts.items():
        if k and name not in cls.required and name not in cls.distractors:
            return False
    extra = sum(k for name, k in counts.items() if name not in cls.required)
    return extra <= cls.max_distractors


def is_scene(task, cls, scene) -> bool:
    """Whether a set of placements is a scene of ``cls`` (every rule of section 3, checked directly)."""
    cls = _class(task, cls)
    feats = _features(task)
    scene = list(set(scene))
    counts: dict[str, int] = {}
    for name, i, j in scene:
        if name not in feats:
            return False
        counts[name] = counts.get(name, 0) + 1
        h, w = _shape(feats[name])
        if not inside_canvas(task, h, w, i, j) or not anchor_allowed(cls, i, j):
            return False
    if not _counts_exact(cls, counts):
        return False
    for x in range(len(scene)):
        for y in range(x + 1, len(scene)):
            (n1, i1, j1), (n2, i2, j2) = scene[x], scene[y]
            c1 = footprint_cells(*_shape(feats[n1]), i1, j1)
            c2 = footprint_cells(*_shape(feats[n2]), i2, j2)
            if not separated(c1, c2, cls.gap):
                return False
    return True


def naive_scenes(task, cls, limit: int | None = None) -> set:
    """Every scene of ``cls`` (a ClassSpec, its name or index) as a frozenset of placements.

    Enumerates the subsets of :func:`candidate_placements` (see the module docstring).
    Raises TooManyScenes when more than ``limit`` scenes exist.
    """
    cls = _class(task, cls)
    feats = _features(task)
    cands = candidate_placements(task, cls)
    cells = [footprint_cells(*_shape(feats[n]), i, j) for n, i, j in cands]
    most = len(cls.required) * cls.copies + cls.max_distractors
    memo: dict[tuple[int, int], bool] = {}

    def apart(x: int, y: int) -> bool:
        if (x, y) not in memo:
            memo[(x, y)] = separated(cells[x], cells[y], cls.gap)
        return memo[(x, y)]

    found: set = set()
    chosen: list[int] = []
    counts: dict[str, int] = {}

    def visit(start: int) -> None:
        if _counts_exact(cls, counts):
            found.add(frozenset(cands[k] for k in chosen))
            if limit is not None and len(found) > limit:
                raise TooManyScenes(f"class {cls.name}: more than {limit} scenes")
        if len(chosen) == most:
            return
        for k in range(start, len(cands)):
            name = cands[k][0]
            counts[name] = counts.get(name, 0) + 1
            if _counts_ok_so_far(cls, counts) and all(apart(k, m) for m in chosen):
                chosen.append(k)
                visit(k + 1)
                chosen.pop()
            counts[name] -= 1

    visit(0)
    return found


def naive_count(task, cls) -> int:
    """The number of scenes of ``cls``."""
    return len(naive_scenes(task, cls))


# ---------------------------------------------------------------------------------------------
# Section 1: images and occurrence
# ---------------------------------------------------------------------------------------------


def naive_image(task, scene) -> Image:
    """The base image: background everywhere, then each placement writes its support.

    ``scene`` is any iterable of (name, row, col) tuples (or objects with those three fields
    in that order, e.g. production placements).
    """
    feats = _features(task)
    image = [
        [[Fraction(task.background) for _ in range(task.width)] for _ in range(task.height)]
        for _ in range(task.channels)
    ]
    for p in scene:
        name, i, j = tuple(p) if isinstance(p, tuple) else (p.feature, p.row, p.col)
        template = feats[name]
        for ch in range(task.channels):
            for a, row in enumerate(template[ch]):
                for b, value in enumerate(row):
                    if value is not None:  # '*' keeps what is under it
                        image[ch][i + a][j + b] = Fraction(value)
    return image


def naive_occurrences(task, image: Image, feature) -> list[tuple[int, int]]:
    """Every anchor where ``image`` contains ``feature`` (a Feature or its name), row-major.

    The whole h x w window, '*' cells included, must lie inside the canvas, and
    ``|x - T| <= δ`` on every support cell (every channel).
    """
    name = feature if isinstance(feature, str) else feature.name
    template = _features(task)[name]
    h, w = _shape(template)
    support = [
        (ch, a, b, template[ch][a][b])
        for ch in range(task.channels)
        for a in range(h)
        for b in range(w)
        if template[ch][a][b] is not None
    ]
    delta = Fraction(task.noise)
    out = []
    for i in range(task.height):
        for j in range(task.width):
            if not inside_canvas(task, h, w, i, j):
                continue
            if all(abs(image[ch][i + a][j + b] - t) <= delta for ch, a, b, t in support):
                out.append((i, j))
    return out


def naive_contains(task, image: Image, feature) -> bool:
    """Whether ``image`` contains ``feature`` at some anchor."""
    return len(naive_occurrences(task, image, feature)) > 0


# ---------------------------------------------------------------------------------------------
# Section 2: the true label
# ---------------------------------------------------------------------------------------------


def naive_complete(task, image: Image) -> list[int]:
    """Indices of the classes every feature of whose required set the image contains."""
    return [
        k
        for k, c in enumerate(task.classes)
        if all(naive_contains(task, image, name) for name in c.required)
    ]


def naive_label(task, image: Image) -> int | None:
    """The class index when exactly one class is complete, None when none or several are."""
    done = naive_complete(task, image)
    if len(done) == 1:
        return done[0]
    return None


# ---------------------------------------------------------------------------------------------
# Section 4: the two theorems, by brute force
# ---------------------------------------------------------------------------------------------


def naive_wellposed(task) -> bool:
    """Every base image of every scene of every class c has label c.

    Presence does not depend on noise (MODEL.md section 1), so base images decide it.
    """
    for k, cls in enumerate(task.classes):
        for scene in naive_scenes(task, cls):
            if naive_label(task, naive_image(task, scene)) != k:
                return False
    return True


def naive_min_margin(task, logits_fn: Callable[[Image], Sequence]) -> Fraction:
    """min over c, scenes of c, c' != c of logits[c] - logits[c'], for exact images (δ = 0).

    ``logits_fn`` receives the nested-list image [ch][row][col] of Fractions and returns the
    K logits; they must be exact (int or Fraction).
    """
    if task.noise != 0:
        raise ValueError("naive_min_margin needs exact images (noise 0): G_c is infinite")
    K = len(task.classes)
    worst: Fraction | None = None
    for c, cls in enumerate(task.classes):
        for scene in naive_scenes(task, cls):
            logits = list(logits_fn(naive_image(task, scene)))
            if len(logits) != K:
                raise ValueError(f"logits_fn returned {len(logits)} values for {K} classes")
            for v in logits:
                if isinstance(v, (bool, float)) or not isinstance(v, (int, Fraction)):
                    raise TypeError(f"logit {v!r} is not exact (int or Fraction)")
            for o in range(K):
                if o != c:
                    gap = Fraction(logits[c]) - Fraction(logits[o])
                    if worst is None or gap < worst:
                        worst = gap
    if worst is None:  # cannot happen for a loaded task (every class has a scene)
        raise ValueError("no scenes")
    return worst


def present_sets(task, cls) -> list[set[str]]:
    """Per scene of ``cls`` (enumerated literally): the set of features its base image contains."""
    out = []
    for scene in naive_scenes(task, cls):
        img = naive_image(task, scene)
        out.append({f.name for f in task.features if naive_contains(task, img, f)})
    return out
