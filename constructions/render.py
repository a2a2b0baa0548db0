"""Looking at a task: a text view, float32 sample images, PNG contact sheets and .npz datasets.

Stage: task -> scenes -> images (a side branch for people and for training scripts; nothing
in the proof path imports it). Trusted: no. It never changes a verdict, but it keeps one
promise exactly, and checks it with ``Fraction``: every float32 pixel it writes lies within
``δ`` of its base level, so the float32 image itself is in ``G_c`` (MODEL.md section 3),
except where no float32 number lies within ``δ`` of a level (a level such as 1/3 with
``δ = 0``). Such images are flagged (``in_class`` is False) and the exact base images are
always stored too. ``docs/sampling.md`` describes the sampling and both file layouts.

>>> from cnnproof.constructions.task import task_from_toml
>>> t = task_from_toml('''
... canvas = { height = 3, width = 3 }
... [features.dot]
... template = "1"
... [features.bar]
... template = "11"
... [classes.a]
... required = ["dot"]
... [classes.b]
... required = ["bar"]
... ''')
>>> print(task_text(t).splitlines()[0])
task task: 1 channel, 3 rows x 3 columns
>>> float32_box(Fraction(1, 3), Fraction(0)) is None    # 1/3 is not a float32 number
True
>>> lo, hi = float32_box(Fraction(1, 2), Fraction(0))
>>> float(lo), float(hi)
(0.5, 0.5)
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from cnnproof.constructions.scenes import (
    Scene,
    SearchBudgetExceeded,
    base_image,
    base_image_int,
    presence_int,
    sample_scenes,
    true_label,
)
from cnnproof.constructions.task import ClassSpec, Task
from cnnproof.verifier.errors import CnnproofError, InputError, SoundnessError
from cnnproof.verifier.exact import format_rational

NOISE_MODES = ("random", "none")

# ---------------------------------------------------------------------------------------------
# Text view of a task
# ---------------------------------------------------------------------------------------------

_SPARE_SYMBOLS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def level_symbols(task: Task) -> dict[Fraction, str]:
    """One drawing symbol per level: the task's own, else a spare letter not used by the task."""
    out: dict[Fraction, str] = {}
    for s, v in task.symbols:
        out.setdefault(v, s)
    used = {s for s, _ in task.symbols} | {"*"}
    spare = (c for c in _SPARE_SYMBOLS if c not in used)
    for v in task.levels:
        if v not in out:
            out[v] = next(spare)
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _rules_text(task: Task, c: ClassSpec) -> str:
    r, q = c.anchors.stride
    if c.anchors.region is None:
        region = "every anchor"
    else:
        r0, c0, r1, c1 = c.anchors.region
        region = f"top-left anchors in rows {r0}..{r1}, cols {c0}..{c1}"
    return (f"copies {c.copies}, max_distractors {c.max_distractors}, gap {c.gap}, "
            f"stride {r}x{q}, region: {region}")


def task_text(task: Task) -> str:
    """A readable text view of a task: canvas, levels, noise, features as ASCII art, classes.

    Templates are drawn with the level symbols (a spare letter for a level the task gives no
    symbol) and ``*`` for don't care; a multi-channel template shows its channels side by side.
    """
    sym = level_symbols(task)
    C = task.channels
    lines = [f"task {task.name}: {_plural(C, 'channel')}, {task.height} rows x {task.width} columns"]
    lv = "  ".join(f"{format_rational(v)} '{sym[v]}'" for v in task.levels)
    lines.append(f"levels      {lv}   (smallest gap s = {format_rational(task.min_gap)})")
    lines.append(f"background  {format_rational(task.background)} '{sym[task.background]}'")
    if task.noise == 0:
        lines.append("noise       δ = 0: exact images")
    else:
        lines.append(f"noise       δ = {format_rational(task.noise)}: every pixel within "
                     f"{format_rational(task.noise)} of its level")
    lines.append("")
    lines.append(f"features ({len(task.features)}; '*' = don't care)")
    for f in task.features:
        lines.append(f"  {f.name}  {f.height}x{f.width}")
        planes = [[" ".join("*" if v is None else sym[v] for v in row) for row in plane]
                  for plane in f.template]
        width = len(planes[0][0])
        if C > 1:
            width = max(width, len(f"ch{C - 1}"))
            lines.append("      " + "   ".join(f"ch{ch}".ljust(width) for ch in range(C)).rstrip())
        for a in range(f.height):
            lines.append("      " + "   ".join(p[a].ljust(width) for p in planes).rstrip())
    if task.parts:
        lines.append("")
        lines.extend(parts_text(task, sym))
    lines.append("")
    lines.append(f"classes ({len(task.classes)})")
    for c in task.classes:
        lines.append(f"  {c.name}")
        lines.append(f"      required     {', '.join(c.required)}")
        lines.append(f"      distractors  {', '.join(c.distractors) if c.distractors else 'none'}")
        lines.append(f"      scene rules  {_rules_text(task, c)}")
    return "\n".join(lines)


def rigid_variants(task: Task, name: str) -> int:
    """The displacement patterns of item ``name``: 1 for a feature; for a part of ``n`` pieces
    with jitter ``j``, ``(2j + 1)^(2n)`` times the patterns of its pieces (MODEL.md section 8:
    the templates a flat bank would list, overlapping ones included)."""
    if not task.is_part(name):
        return 1
    g = task.part(name)
    out = (2 * g.jitter + 1) ** (2 * len(g.pieces))
    for n, _, _ in g.pieces:
        out *= rigid_variants(task, n)
    return out


def empty_symbol(task: Task) -> str:
    """The character drawn where no feature of a part's layout lies: ``-``, or the first of
    ``~:^`` that is not a level's symbol."""
    used = {s for s, _ in task.symbols} | set(level_symbols(task).values())
    return next(c for c in "-~:^" if c not in used)


def nominal_layout(task: Task, name: str, sym: dict[Fraction, str]) -> list[list[str]]:
    """Part ``name`` with every piece at displacement 0, drawn from its anchor (the top-left
    cell) like a template, one list of rows per channel: a level's symbol where a feature tests
    it, ``*`` for a feature's don't-care cell, :func:`empty_symbol` where no feature lies, ``!``
    where two features of the layout overlap."""
    from cnnproof.constructions import parts as P
    from cnnproof.constructions.scenes import Placement

    def nominal(n: str, r: int, c: int) -> Placement:
        if not task.is_part(n):
            return Placement(n, r, c)
        return Placement(n, r, c, tuple(nominal(m, r + dr, c + dc) for m, dr, dc in task.part(n).pieces))

    empty = empty_symbol(task)
    leaves = list(P.leaves(nominal(name, 0, 0)))
    _, _, bottom, right = P.extent(task, nominal(name, 0, 0))
    out = []
    for ch in range(task.channels):
        cells: list[list[set]] = [[set() for _ in range(right)] for _ in range(bottom)]
        for q in leaves:
            f = task.feature(q.feature)
            for a, row in enumerate(f.template[ch]):
                for b, v in enumerate(row):
                    cells[q.row + a][q.col + b].add(v)
        counts = [[0] * right for _ in range(bottom)]
        for q in leaves:
            f = task.feature(q.feature)
            for a in range(f.height):
                for b in range(f.width):
                    counts[q.row + a][q.col + b] += 1
        plane = []
        for a in range(bottom):
            row = []
            for b in range(right):
                if counts[a][b] == 0:
                    row.append(empty)
                elif counts[a][b] > 1:
                    row.append("!")
                else:
                    (v,) = cells[a][b]
                    row.append("*" if v is None else sym[v])
            plane.append(" ".join(row).rstrip())
        out.append(plane)
    return out


def parts_text(task: Task, sym: dict[Fraction, str]) -> list[str]:
    """The parts of a hierarchical task: pieces and offsets, jitter, level, variant counts, and
    the nominal layout (every piece at displacement 0)."""
    from cnnproof.constructions import parts as P

    V = P.Variants(task)
    lines = [f"parts ({len(task.parts)}; pieces at their nominal offsets from the part's anchor, "
             "each displaced by up to the jitter on each axis)"]
    for g in task.parts:
        n, j = len(g.pieces), g.jitter
        lines.append(f"  {g.name}  level {task.level(g.name)}, jitter {j}, {_plural(n, 'piece')}")
        for k, (m, r, c) in enumerate(g.pieces):
            kind = f"part, level {task.level(m)}" if task.is_part(m) else "feature"
            lines.append(f"      piece {k}: {m} at ({r},{c})  ({kind})")
        rigid = rigid_variants(task, g.name)
        formula = f"(2*{j}+1)^(2*{n})"
        for m, _, _ in g.pieces:
            if task.is_part(m):
                formula += f" x {rigid_variants(task, m)} ({m})"
        try:
            valid = str(len(V.of(g.name)))
        except P.TooManyVariants:
            valid = f"more than {V.limit}"
        lines.append(f"      rigid variants {rigid} = {formula}; valid (features disjoint) {valid}")
        planes = nominal_layout(task, g.name, sym)
        overlap = any("!" in row for plane in planes for row in plane)
        lines.append(f"      nominal layout (displacement 0, the anchor at the top left; '{empty_symbol(task)}' = no feature"
                     + ("; '!' = features overlap: only other displacements place the part" if overlap else "")
                     + "):")
        C = task.channels
        width = max(len(row) for plane in planes for row in plane)
        if C > 1:
            width = max(width, len(f"ch{C - 1}"))
            lines.append("      " + "   ".join(f"ch{ch}".ljust(width) for ch in range(C)).rstrip())
        for a in range(len(planes[0])):
            lines.append("      " + "   ".join(p[a].ljust(width) for p in planes).rstrip())
    return lines


# ---------------------------------------------------------------------------------------------
# Exact float32 arithmetic
# ---------------------------------------------------------------------------------------------

_F32_UP = np.float32(np.inf)
_F32_DOWN = np.float32(-np.inf)


def nearest_float32(q: Fraction) -> np.float32:
    """The float32 nearest to the rational ``q`` (ties to an even significand), as IEEE fl(q).

    ``float(q)`` rounds correctly to float64, but rounding that to float32 can round twice; the
    two float32 neighbours are therefore compared exactly.

    >>> float(nearest_float32(Fraction(1, 3)))
    0.3333333432674408
    """
    c = np.float32(float(q))
    best = None
    for cand in (np.nextafter(c, _F32_DOWN), c, np.nextafter(c, _F32_UP)):
        if not np.isfinite(cand):
            continue
        err = abs(Fraction(float(cand)) - q)
        key = (err, int(np.array(cand, dtype=np.float32).view(np.int32)) & 1)
        if best is None or key < best[0]:
            best = (key, cand)
    return np.float32(best[1])


def float32_box(level: Fraction, delta: Fraction) -> tuple[np.float32, np.float32] | None:
    """The float32 numbers in ``[level - δ, level + δ]``: ``(lowest, highest)``, or None if none.

    Both ends are checked with Fractions, so a float32 ``v`` is within ``δ`` of ``level``
    exactly when ``lowest <= v <= highest`` (IEEE comparisons are exact).
    """
    lo_q, hi_q = level - delta, level + delta
    lo = nearest_float32(lo_q)
    if Fraction(float(lo)) < lo_q:
        lo = np.nextafter(lo, _F32_UP)
    hi = nearest_float32(hi_q)
    if Fraction(float(hi)) > hi_q:
        hi = np.nextafter(hi, _F32_DOWN)
    if lo > hi:
        return None
    return np.float32(lo), np.float32(hi)


def exact_image(image: np.ndarray) -> np.ndarray:
    """The rationals a float32 array denotes, as an object array of Fractions (same shape)."""
    out = np.empty(image.shape, dtype=object)
    out.ravel()[:] = [Fraction(v) for v in np.asarray(image, dtype=np.float32).astype(np.float64).ravel().tolist()]
    return out


def exact_base(numerators: np.ndarray, denominator: int) -> np.ndarray:
    """Base images stored as integers over a common denominator, back as Fractions."""
    out = np.empty(numerators.shape, dtype=object)
    out.ravel()[:] = [Fraction(int(v), int(denominator)) for v in numerators.ravel().tolist()]
    return out


def within_noise(task: Task, base: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Per pixel, exactly: is the float32 pixel within ``δ`` of its base level? (bool array)

    ``base`` is an object array of Fractions, ``image`` a float32 array of the same shape; each
    float32 is converted exactly with ``Fraction(float(v))``.
    """
    d = task.noise
    vals = np.asarray(image, dtype=np.float32).astype(np.float64).ravel().tolist()
    ok = [abs(Fraction(v) - Fraction(b)) <= d for v, b in zip(vals, base.ravel().tolist())]
    return np.array(ok, dtype=bool).reshape(base.shape)


def _level_masks(task: Task, base: np.ndarray) -> list[tuple[Fraction, np.ndarray]]:
    flat = base.ravel().tolist()
    return [(lv, np.array([b == lv for b in flat], dtype=bool).reshape(base.shape)) for lv in task.levels]


def _finish(task: Task, base: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, bool]:
    """Move every float32 pixel into its level's box and check the result with Fractions.

    A pixel outside the box ``[lowest, highest]`` of its level is stepped toward the level one
    float32 at a time (``np.nextafter``) until inside; the first float32 reached inside is the
    box's nearer end, so this is a clip to the box. A level with an empty box (no float32 within
    δ of it) gets its nearest float32, which lies outside ``G_c``. Returns the image and
    whether every pixel is within δ of its level (the image is in ``G_c``).
    """
    v = np.array(v, dtype=np.float32)
    fixable = np.zeros(base.shape, dtype=bool)
    for lv, mask in _level_masks(task, base):
        if not mask.any():
            continue
        box = float32_box(lv, task.noise)
        if box is None:
            v[mask] = nearest_float32(lv)
            continue
        fixable |= mask
        lo, hi = box
        # Stepping a pixel above the box down one float32 at a time (np.nextafter toward the
        # level) first lands inside at ``hi``: every float32 between it and ``hi`` is above
        # ``hi``, hence outside. Likewise from below at ``lo``. So the steps are a clip.
        sel = np.minimum(np.maximum(v[mask], lo), hi)
        v[mask] = sel
    ok = within_noise(task, base, v)
    bad = fixable & ~ok
    if bad.any():
        ch, r, c = (int(x) for x in np.argwhere(bad)[0])
        raise SoundnessError(
            f"float32 pixel ({ch},{r},{c}) = {float(v[ch, r, c])!r} is not within "
            f"{format_rational(task.noise)} of its level {format_rational(base[ch, r, c])}"
        )
    return v, bool(ok.all())


def nearest_image_float32(task: Task, scene: Scene) -> np.ndarray:
    """The base image of ``scene`` rounded to float32 (C, H, W), each pixel fl(level).

    When every level used is a float32 number this is the base image exactly. A level that is
    not (1/3, say) becomes its nearest float32, which is within δ of the level only if δ is at
    least the rounding error: with δ = 0 that float32 image lies outside ``G_c``.
    """
    base = base_image(task, scene)
    v = np.empty(base.shape, dtype=np.float32)
    for lv, mask in _level_masks(task, base):
        v[mask] = nearest_float32(lv)
    return v


def noisy_image_float32(task: Task, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """The base image of ``scene`` plus noise uniform in ``[-δ, δ]`` per pixel, as float32 (C, H, W).

    The noise is drawn in float64 (``δ·U(-1, 1)``), added to the level in float64 and rounded to
    float32; every pixel is then checked exactly (``Fraction(float(v))``) and, where rounding
    pushed it out of ``[level - δ, level + δ]``, stepped toward the level with ``np.nextafter``
    until inside. So every float32 pixel is within δ of its level and the float32 image lies in
    ``G_c`` exactly, with one documented exception: a level with no float32 within δ of it
    (1/3 with δ = 0, or a δ below half the float32 spacing) gets its nearest float32 and the
    image lies outside ``G_c`` (see :func:`within_noise`). With δ = 0, ``rng`` is not used.
    """
    return _noisy(task, scene, rng)[0]


def _noisy(task: Task, scene: Scene, rng: np.random.Generator | None) -> tuple[np.ndarray, bool]:
    """The image (noise-free when ``rng`` is None or δ = 0) and whether it lies in ``G_c``."""
    base = base_image(task, scene)
    if task.noise == 0 or rng is None:
        return _finish(task, base, nearest_image_float32(task, scene))
    levels64 = np.array([float(b) for b in base.ravel().tolist()], dtype=np.float64).reshape(base.shape)
    eta = rng.uniform(-1.0, 1.0, size=base.shape) * float(task.noise)
    return _finish(task, base, (levels64 + eta).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """``n`` sampled images of a task, with everything needed to check them exactly.

    ``labels[k]`` is the class whose scene generated image ``k``; ``true_labels[k]`` is the true
    label of its base image (MODEL.md section 2), -1 when no label; they agree on every image of
    a well-posed task. ``in_class[k]`` is True when the float32 image lies in ``G_c`` exactly.
    The exact base image ``k`` is ``base_numerators[k] / base_denominator``.
    """

    task_name: str
    images: np.ndarray  # float32 (N, C, H, W)
    labels: np.ndarray  # int64 (N,)
    true_labels: np.ndarray  # int64 (N,), -1 = no true label
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    scenes: tuple[Scene, ...]
    base_numerators: np.ndarray  # int64 (N, C, H, W)
    base_denominator: int
    level_numerators: np.ndarray  # int64 (L,), over base_denominator
    in_class: np.ndarray  # bool (N,)
    noise: str  # "random" or "none"
    delta: Fraction
    seed: int
    item_names: tuple[str, ...] = ()  # a hierarchical task's items (features, then parts); () when flat
    scene_trees: str = ""  # a hierarchical task's scenes as JSON placement trees (scene_trees_json)

    def __post_init__(self):
        N = len(self.scenes)
        for name in ("images", "labels", "true_labels", "base_numerators", "in_class"):
            if len(getattr(self, name)) != N:
                raise ValueError(f"Dataset.{name} has {len(getattr(self, name))} rows, expected {N}")
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, found {self.noise!r}")

    def base(self, k: int) -> np.ndarray:
        """The exact base image ``k`` as an object array of Fractions (C, H, W)."""
        return exact_base(self.base_numerators[k], self.base_denominator)

    def scene_array(self) -> np.ndarray:
        """Scenes as int64 (N, P, 3): feature index, row, col per placement, padded with -1. In a
        hierarchical task the index is into ``item_names`` (features first, so a feature keeps
        its index) and a part's row is its anchor's."""
        P = max((len(s) for s in self.scenes), default=0)
        out = np.full((len(self.scenes), P, 3), -1, dtype=np.int64)
        index = {n: k for k, n in enumerate(self.item_names or self.feature_names)}
        for k, s in enumerate(self.scenes):
            for t, p in enumerate(s):
                out[k, t] = (index[p.feature], p.row, p.col)
        return out

    def leaf_array(self) -> np.ndarray:
        """Every feature placement of each scene (a part contributes its features) as int64
        (N, Q, 3): feature index, row, col, sorted, padded with -1; rebuilds the base images."""
        from cnnproof.constructions.scenes import _leaves

        rows = [sorted(_leaves(s)) for s in self.scenes]
        Q = max((len(r) for r in rows), default=0)
        out = np.full((len(self.scenes), Q, 3), -1, dtype=np.int64)
        index = {n: k for k, n in enumerate(self.feature_names)}
        for k, r in enumerate(rows):
            for t, p in enumerate(r):
                out[k, t] = (index[p.feature], p.row, p.col)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The .npz layout (docs/sampling.md): plain arrays, loadable with allow_pickle=False."""
        return {
            "images": self.images.astype(np.float32),
            "labels": self.labels.astype(np.int64),
            "true_labels": self.true_labels.astype(np.int64),
            "class_names": np.array(self.class_names, dtype=str),
            "feature_names": np.array(self.feature_names, dtype=str),
            "scenes": self.scene_array(),
            "base_numerators": self.base_numerators.astype(np.int64),
            "base_denominator": np.array(self.base_denominator, dtype=np.int64),
            "level_numerators": self.level_numerators.astype(np.int64),
            "in_class": self.in_class.astype(bool),
            "noise": np.array(self.noise),
            "delta": np.array(format_rational(self.delta)),
            "delta_numerator": np.array(self.delta.numerator, dtype=np.int64),
            "delta_denominator": np.array(self.delta.denominator, dtype=np.int64),
            "seed": np.array(self.seed, dtype=np.int64),
            "task_name": np.array(self.task_name),
            **({"item_names": np.array(self.item_names, dtype=str),
                "leaves": self.leaf_array(),
                "scene_trees": np.array(self.scene_trees)} if self.item_names else {}),
        }


def placement_tree(task: Task, p, offset: tuple[int, int] | None = None) -> dict:
    """A placement as JSON-ready data: ``{"item", "at"}`` (its anchor), and for a part
    ``"pieces"``, each piece's tree with ``"shift"``, its displacement from its nominal anchor
    (the part's anchor plus the piece's offset), so that ``at = parent.at + offset + shift``."""
    out: dict = {"item": p.feature, "at": [p.row, p.col]}
    if offset is not None:
        out["shift"] = [p.row - offset[0], p.col - offset[1]]
    if p.pieces:
        g = task.part(p.feature)
        out["pieces"] = [placement_tree(task, q, (p.row + r, p.col + c)) for q, (_, r, c) in zip(p.pieces, g.pieces)]
    return out


def scene_trees_json(task: Task, scenes) -> str:
    """The scenes of a dataset as one JSON string: a list (one per image) of lists of
    :func:`placement_tree`."""
    import json

    return json.dumps([[placement_tree(task, p) for p in s] for s in scenes], separators=(",", ":"))


def class_schedule(task: Task, n: int) -> list[int]:
    """Round robin: image ``k`` is of class ``k mod K`` (class counts differ by at most one)."""
    K = len(task.classes)
    return [k % K for k in range(n)]


def sample_dataset(task: Task, n: int, seed: int, noise: str = "random", progress=None) -> Dataset:
    """``n`` images, classes round robin, deterministic for ``seed`` (see docs/sampling.md).

    One ``random.Random(seed)`` draws the scenes (``sample_scenes`` once per class, in class
    order, for that class's share), then a 64-bit seed for the numpy generator of the noise, so
    the scenes do not depend on the noise mode. ``noise="none"`` gives the base images in
    float32 (:func:`nearest_image_float32`). ``progress(i, K + n)`` is called before the scenes
    of each of the K classes are drawn and before each image is made (``i`` from 0).
    """
    if n < 1:
        raise InputError(None, "-n", f"the number of images must be >= 1, found {n}")
    if noise not in NOISE_MODES:
        raise InputError(None, "--noise", f"must be one of {', '.join(NOISE_MODES)}, found {noise!r}")
    rng = random.Random(seed)
    schedule = class_schedule(task, n)
    per_class: list[list[Scene]] = []
    K = len(task.classes)
    for c, cls in enumerate(task.classes):
        if progress:
            progress(c, K + n)
        count = schedule.count(c)
        try:
            per_class.append(sample_scenes(task, cls, count, rng) if count else [])
        except SearchBudgetExceeded as e:
            raise CnnproofError(f"cannot sample scenes of class {cls.name}: {e}") from None
    noise_rng = np.random.default_rng(rng.getrandbits(64))
    taken = [0] * len(task.classes)
    scenes: list[Scene] = []
    images, inside = [], []
    for k, c in enumerate(schedule):
        if progress:
            progress(K + k, K + n)
        s = per_class[c][taken[c]]
        taken[c] += 1
        scenes.append(s)
        im, ok = _noisy(task, s, noise_rng if noise == "random" else None)
        images.append(im)
        inside.append(ok)
    nums = np.stack([base_image_int(task, s) for s in scenes])
    present = presence_int(task, nums)
    true = [true_label(task, p) for p in present]
    imgs = np.stack(images).astype(np.float32)
    in_class = np.array(inside, dtype=bool)
    return Dataset(
        task_name=task.name,
        images=imgs,
        labels=np.array(schedule, dtype=np.int64),
        true_labels=np.array([-1 if t is None else t for t in true], dtype=np.int64),
        class_names=task.class_names,
        feature_names=tuple(f.name for f in task.features),
        scenes=tuple(scenes),
        base_numerators=nums,
        base_denominator=task.scale,
        level_numerators=np.array([int(v * task.scale) for v in task.levels], dtype=np.int64),
        in_class=in_class,
        noise=noise,
        delta=task.noise,
        seed=seed,
        item_names=task.items if task.parts else (),
        scene_trees=scene_trees_json(task, scenes) if task.parts else "",
    )


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def npz_bytes(ds: Dataset) -> bytes:
    """The dataset as a compressed .npz, built in memory."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **ds.arrays())
    return buf.getvalue()


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # old Pillow or no FreeType: the bitmap font
        return ImageFont.load_default()


TICK_STEPS = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000)
TICK_MARK = 3  # length in screen pixels of a tick mark outside the image's frame
TICK_COLOUR = (90, 90, 90)


def tick_step(scale: int, label_px: int) -> int:
    """The step between labelled rows (or columns): the smallest of :data:`TICK_STEPS` whose
    labels, ``step * scale`` screen pixels apart, do not touch (``label_px`` wide, 4 px apart).

    >>> tick_step(32, 14), tick_step(16, 14), tick_step(4, 14), tick_step(1, 20)
    (1, 2, 5, 25)
    """
    for step in TICK_STEPS:
        if step * scale >= label_px + 4:
            return step
    return TICK_STEPS[-1]


def ticks(n: int, scale: int, label_px: int) -> list[int]:
    """The indices labelled on an axis of ``n`` pixels: 0, step, 2 step, ...

    >>> ticks(8, 32, 14)
    [0, 1, 2, 3, 4, 5, 6, 7]
    >>> ticks(28, 4, 14)
    [0, 5, 10, 15, 20, 25]
    """
    return list(range(0, n, tick_step(scale, label_px)))


def tick_font(scale: int):
    """The font of tick labels: 11 px, or 9 px for small pixels."""
    return _font(11 if scale >= 8 else 9)


def tick_margins(height: int, width: int, scale: int, font) -> tuple[int, int]:
    """``(left, top)``: the room row labels take left of an image and column labels above it."""
    from PIL import Image, ImageDraw

    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wide = probe.textbbox((0, 0), str(max(height - 1, 0)), font=font)
    tall = probe.textbbox((0, 0), "0123456789", font=font)
    return (wide[2] - wide[0]) + TICK_MARK + 4, (tall[3] - tall[1]) + TICK_MARK + 5


def draw_ticks(draw, x: int, y: int, height: int, width: int, scale: int, font,
               rows: bool = True, cols: bool = True) -> None:
    """Label the rows (left of the image) and the columns (above it) of an image whose pixel
    ``(0, 0)`` has its top-left screen corner at ``(x, y)``: a short mark outside the frame at
    the middle of each labelled pixel and its index, so that an anchor ``(row, col)`` of the
    text can be found on the picture."""
    probe = draw.textbbox((0, 0), "0", font=font)
    digit_w = probe[2] - probe[0]
    if cols:
        for c in ticks(width, scale, digit_w * len(str(width - 1))):
            cx = x + c * scale + scale // 2
            draw.line((cx, y - 2 - TICK_MARK, cx, y - 2), fill=TICK_COLOUR)
            x0, y0, x1, y1 = draw.textbbox((0, 0), str(c), font=font)
            draw.text((cx - (x1 - x0) // 2 - x0, y - 3 - TICK_MARK - y1), str(c), fill=TICK_COLOUR, font=font)
    if rows:
        x0, y0, x1, y1 = draw.textbbox((0, 0), "0", font=font)
        for r in ticks(height, scale, (y1 - y0) + 2):
            cy = y + r * scale + scale // 2
            draw.line((x - 2 - TICK_MARK, cy, x - 2, cy), fill=TICK_COLOUR)
            bx0, by0, bx1, by1 = draw.textbbox((0, 0), str(r), font=font)
            draw.text((x - 3 - TICK_MARK - bx1, cy - (by0 + by1) // 2), str(r), fill=TICK_COLOUR, font=font)


def channel_label(ch: int, room: int, draw, font) -> str:
    """``channel k``, ``ch k`` or ``k``: the longest that fits in ``room`` screen pixels."""
    for text in (f"channel {ch}", f"ch {ch}", str(ch)):
        x0, _, x1, _ = draw.textbbox((0, 0), text, font=font)
        if x1 - x0 <= room:
            return text
    return str(ch)


def gray(task: Task, plane: np.ndarray) -> np.ndarray:
    """One channel (H, W) of values (exact or float) as uint8 gray: the lowest level 0, the
    highest 255, linear between, clipped (noisy pixels beyond the levels)."""
    lo, hi = float(task.levels[0]), float(task.levels[-1])
    span = (hi - lo) or 1.0
    v = np.array([float(x) for x in np.asarray(plane).ravel().tolist()], dtype=np.float64).reshape(np.shape(plane))
    return np.round(np.clip((v - lo) / span, 0.0, 1.0) * 255).astype(np.uint8)


def _pixel_scale(task: Task) -> int:
    """Screen pixels per image pixel: 16 for small canvases, down to 4 for large ones."""
    return max(4, min(16, 160 // max(task.height, task.width * task.channels)))


def contact_sheet(task: Task, ds: Dataset) -> "PIL.Image.Image":  # noqa: F821
    """A grid of the images with class names under them and a title (docs/sampling.md).

    Gray levels map linearly from the lowest level (black) to the highest (white); noisy pixels
    are clipped to that range. Each image pixel is a ``scale x scale`` square with a 1-px gray
    grid line (when ``scale >= 6``), row indices on its left and column indices above it
    (:func:`draw_ticks`). A multi-channel image shows its channels side by side, channel 0
    first, each labelled above. A caption in red marks an image whose true label differs from
    its class.
    """
    from PIL import Image, ImageDraw

    C, H, W = task.channels, task.height, task.width
    N = len(ds.scenes)
    sc = _pixel_scale(task)
    grid = sc >= 6
    font, title_font, tfont = _font(13), _font(15), tick_font(sc)
    draw0 = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_size(t: str, f) -> tuple[int, int]:
        x0, y0, x1, y1 = draw0.textbbox((0, 0), t, font=f)
        return x1 - x0, y1 - y0

    captions = []
    for k in range(N):
        name = ds.class_names[int(ds.labels[k])]
        t = int(ds.true_labels[k])
        if t != int(ds.labels[k]):
            name += " (true: " + ("none" if t < 0 else ds.class_names[t]) + ")"
        captions.append(name)
    chan_gap = 10
    img_w = C * W * sc + (C - 1) * chan_gap + 2  # 1-px frame on each side
    img_h = H * sc + 2
    tick_l, tick_t = tick_margins(H, W, sc, tfont)
    chan_h = text_size("channel 0", tfont)[1] + 5 if C > 1 else 0
    cap_h = max(text_size(c, font)[1] for c in captions + ["Ag"]) + 4
    cell_w = max([tick_l + img_w] + [text_size(c, font)[0] for c in captions]) + 12
    cell_h = chan_h + tick_t + img_h + cap_h + 12
    ncols = max(1, min(N, math.ceil(math.sqrt(N)), max(1, 1600 // cell_w)))
    nrows = math.ceil(N / ncols)
    # the default font has no Greek letters: write "delta"
    title = (f"task {task.name}: {N} images, {C}x{H}x{W}, noise {ds.noise} "
             f"(delta = {format_rational(task.noise)}), seed {ds.seed}")
    legend = (f"black = {format_rational(task.levels[0])}, white = {format_rational(task.levels[-1])}"
              + (", channels side by side" if C > 1 else "") + "; ticks: row and column indices")
    if task.parts:
        legend += "; coloured boxes: placed parts (thick: the part's extent, thin: its features)"
    if not ds.in_class.all():
        legend += f"; {int((~ds.in_class).sum())} float32 images outside G_c (a level is not a float32)"
    tw = max(text_size(title, title_font)[0], text_size(legend, font)[0])
    title_h = text_size(title, title_font)[1] + text_size(legend, font)[1] + 20
    sheet_w = max(ncols * cell_w, tw + 16) + 12
    sheet_h = title_h + nrows * cell_h + 6
    sheet = Image.new("RGB", (sheet_w, sheet_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((8, 6), title, fill=(0, 0, 0), font=title_font)
    draw.text((8, 10 + text_size(title, title_font)[1] + 2), legend, fill=(70, 70, 70), font=font)

    for k in range(N):
        r, c = divmod(k, ncols)
        x0 = 6 + c * cell_w + (cell_w - tick_l - img_w) // 2 + tick_l
        y0 = title_h + r * cell_h + 4 + chan_h + tick_t
        panel = np.full((img_h, img_w, 3), 128, dtype=np.uint8)  # frame and channel gaps
        for ch in range(C):
            big = np.kron(gray(task, ds.images[k, ch]), np.ones((sc, sc), dtype=np.uint8))
            big = np.repeat(big[:, :, None], 3, axis=2)
            if grid:
                big[::sc, :, :] = 96
                big[:, ::sc, :] = 96
            px = 1 + ch * (W * sc + chan_gap)
            panel[1 : 1 + H * sc, px : px + W * sc] = big
            if C > 1 and ch < C - 1:
                panel[:, px + W * sc : px + W * sc + chan_gap] = 255
        sheet.paste(Image.fromarray(panel, "RGB"), (x0, y0))
        for ch in range(C):
            px = x0 + 1 + ch * (W * sc + chan_gap)
            draw_ticks(draw, px, y0 + 1, H, W, sc, tfont, rows=ch == 0)
            if C > 1:
                label = channel_label(ch, W * sc + chan_gap - 2, draw, tfont)
                draw.text((px, y0 - tick_t - chan_h + 1), label, fill=(0, 0, 0), font=tfont)
        if task.parts:
            for ch in range(C):
                _mark_parts(draw, task, ds.scenes[k], x0 + 1 + ch * (W * sc + chan_gap), y0 + 1, sc)
        cap = captions[k]
        cw, _ = text_size(cap, font)
        colour = (0, 0, 0) if int(ds.true_labels[k]) == int(ds.labels[k]) else (200, 0, 0)
        draw.text((6 + c * cell_w + (cell_w - cw) // 2, y0 + img_h + 3), cap, fill=colour, font=font)
    return sheet


PART_COLOURS = ((30, 144, 255), (255, 140, 0), (50, 205, 50), (220, 20, 160), (0, 200, 200), (160, 100, 255))


def part_boxes(task: Task, scene: Scene) -> list[tuple[tuple[int, int, int, int], list[tuple[int, int, int, int]]]]:
    """For each placed part of ``scene`` (top-level placements that are parts): its extent
    ``(top, left, bottom, right)`` (exclusive) and its features' footprints ``(row, col, h, w)``:
    what the contact sheet of a hierarchical task outlines."""
    from cnnproof.constructions import parts as P

    return [(P.extent(task, p), P.boxes(task, p)) for p in scene if p.pieces]


def _mark_parts(draw, task: Task, scene: Scene, x: int, y: int, sc: int) -> None:
    """Outline each placed part on an image whose pixel (0, 0) is at screen ``(x, y)``: its
    extent thick, its features thin, one colour per part."""
    thick = 2 if sc >= 8 else 1
    for k, ((t, l, b, r), feats) in enumerate(part_boxes(task, scene)):
        colour = PART_COLOURS[k % len(PART_COLOURS)]
        for fr, fc, fh, fw in feats:
            draw.rectangle((x + fc * sc + thick, y + fr * sc + thick, x + (fc + fw) * sc - 1 - thick,
                            y + (fr + fh) * sc - 1 - thick), outline=colour, width=1)
        draw.rectangle((x + l * sc, y + t * sc, x + r * sc - 1, y + b * sc - 1), outline=colour, width=thick)


def png_bytes(task: Task, ds: Dataset) -> bytes:
    buf = io.BytesIO()
    contact_sheet(task, ds).save(buf, format="PNG")
    return buf.getvalue()


def sample_command(task: Task, args, bar=None) -> int:
    """``cnnproof sample``: write a PNG contact sheet or an .npz dataset; returns exit code 0.
    ``bar`` is the terminal's progress bar: a context manager giving the callback
    ``(i, total)`` of :func:`sample_dataset` (or None); it is closed before anything is printed."""
    from contextlib import nullcontext

    from cnnproof.verifier.network import write_atomic

    out = Path(args.output)
    ext = out.suffix.lower()
    if ext not in (".png", ".npz"):
        raise InputError(None, "-o", f"{args.output}: unknown extension {out.suffix or '(none)'!r}; "
                         "write FILE.png (contact sheet) or FILE.npz (dataset)")
    if args.n < 1:
        raise InputError(None, "-n", f"the number of images must be >= 1, found {args.n}")
    with bar or nullcontext() as progress:
        ds = sample_dataset(task, args.n, args.seed, args.noise, progress=progress)
        data = png_bytes(task, ds) if ext == ".png" else npz_bytes(ds)
    try:
        write_atomic(out, data)
    except OSError as e:
        raise InputError(str(out), "-o", f"cannot write: {e.strerror or e}") from None
    counts = ", ".join(f"{int((ds.labels == c).sum())} {n}" for c, n in enumerate(ds.class_names))
    what = "contact sheet of" if ext == ".png" else "dataset of"
    line = (f"wrote {out}: {what} {len(ds.scenes)} images of task {task.name} ({counts}), "
            f"noise {ds.noise} (δ = {format_rational(task.noise)}), seed {ds.seed}")
    notes = []
    wrong = int((ds.true_labels != ds.labels).sum())
    if wrong:
        notes.append(f"{wrong} base images whose true label is not their class (the task is not well-posed)")
    outside = int((~ds.in_class).sum())
    if outside:
        notes.append(f"{outside} float32 images outside G_c (a level has no float32 within δ)")
    print(line + ("; " + "; ".join(notes) if notes else ""))
    return 0
