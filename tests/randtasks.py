"""Random small tasks as TOML text: a reusable hypothesis strategy for cross-semantics tests.

Stage: none (test support). Trusted: no; it only generates inputs. Every task is written as the
TOML text a user would write and is meant to be loaded with
``cnnproof.constructions.task.task_from_toml`` (so the loader's validation is exercised too).

The generator covers every rule of MODEL.md sections 1-3: canvases up to 6 x 6, one or two
channels, two to four levels (integers and fractions, in any order, sometimes a background that is
not the smallest level), optional noise with ``2δ < s``, features of mixed sizes up to 3 x 3 with
don't-care cells, two or three classes with required sets and distractors, and the scene rules
``copies``, ``max_distractors``, ``gap``, ``stride`` and ``region`` set task-wide in ``[scene]``
and/or overridden per class.

Tasks are kept small enough for brute force: for each class an upper bound on its number of
scenes (placements counted without the overlap and gap rules) is kept at or below
``max_scenes`` by lowering ``max_distractors`` (not below 1 while distractors are listed), then
``copies``, then dropping distractors, then required features; a feature that no class uses
any more is left out of the task. Before that (unless ``repair=False``), a class whose required
placements cannot all fit (a small search decides) loses required features, then copies, then
gap, and as a last resort its anchor rules are reset to every anchor. Distractors without any
allowed anchor are dropped, and a class that lists distractors gets ``max_distractors >= 1``
(the loader rejects both).

So with the default ``repair=True`` the loader accepts almost every drawn task; callers should
still skip a rejected one, e.g. with :func:`load_or_reject` or :func:`random_task`, which
filter with ``hypothesis.assume``. ``repair=False`` leaves classes that do not fit, to exercise
the loader's "has no scene" check.

Usage: ``@given(random_task_toml())`` gives TOML text; ``@given(random_task())`` gives
``(text, task)`` pairs of accepted tasks.
"""

from __future__ import annotations

from fractions import Fraction
from math import comb

from hypothesis import assume
from hypothesis import strategies as st

LEVEL_POOL = ("0", "1", "2", "3", "-1", "1/2", "1/3", "2/3", "5/2")
SYMBOLS = "abcd"  # one symbol per level, in the order the levels are written
RULE_ORDER = ("copies", "max_distractors", "gap", "stride", "region")


def _fmt(q: Fraction) -> str:
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def _toml_str(s: str) -> str:
    """A TOML basic string (templates contain only symbols, '*' and newlines)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _toml_value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


@st.composite
def _rules(draw, H: int, W: int, p_key: float) -> dict:
    """A table of optional scene rules; each key present with probability about ``p_key``."""
    out: dict = {}

    def maybe() -> bool:
        return draw(st.integers(0, 99)) < int(100 * p_key)

    if maybe() or maybe():  # copies and max_distractors are drawn more often: the size
        out["copies"] = draw(st.integers(1, 2))  # bound lowers them again on large canvases
    if maybe() or maybe():
        out["max_distractors"] = draw(st.integers(0, min(2, H * W)))
    if maybe():
        out["gap"] = draw(st.integers(0, 2))
    if maybe():
        out["stride"] = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    if maybe():
        r0 = draw(st.integers(0, H - 1))
        c0 = draw(st.integers(0, W - 1))
        r1 = draw(st.integers(r0, H - 1))  # an inclusive box of anchors inside the canvas
        c1 = draw(st.integers(c0, W - 1))
        out["region"] = [r0, c0, r1, c1]
    return out


def _anchor_count(H: int, W: int, h: int, w: int, rules: dict) -> int:
    """How many anchors a h x w footprint has under ``rules`` (for the size bound only)."""
    r, q = rules.get("stride", [1, 1])
    region = rules.get("region")
    n = 0
    for i in range(H - h + 1):
        for j in range(W - w + 1):
            if i % r or j % q:
                continue
            if region is not None and not (region[0] <= i <= region[2] and region[1] <= j <= region[3]):
                continue
            n += 1
    return n


def scene_bound(H: int, W: int, sizes: dict, required, distractors, rules: dict) -> int:
    """An upper bound on the number of scenes of a class (overlap and gap ignored)."""
    copies = rules.get("copies", 1)
    maxd = rules.get("max_distractors", 0)
    bound = 1
    for f in required:
        bound *= comb(_anchor_count(H, W, *sizes[f], rules), copies)
    nd = sum(_anchor_count(H, W, *sizes[f], rules) for f in distractors)
    return bound * sum(comb(nd, k) for k in range(maxd + 1))


def _apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int) -> bool:
    """Boxes (row, col, h, w) at Chebyshev distance >= gap + 1."""
    return (
        a[0] + a[2] + gap <= b[0]
        or b[0] + b[2] + gap <= a[0]
        or a[1] + a[3] + gap <= b[1]
        or b[1] + b[3] + gap <= a[1]
    )


def _required_fit(H: int, W: int, sizes: dict, required, rules: dict) -> bool:
    """Whether ``copies`` of every required feature can be placed together (a small search)."""
    r, q = rules.get("stride", [1, 1])
    region = rules.get("region")
    gap = rules.get("gap", 0)
    slots = [sizes[n] for n in required for _ in range(rules.get("copies", 1))]
    slots.sort(key=lambda hw: -hw[0] * hw[1])

    def anchors(h: int, w: int):
        for i in range(0, H - h + 1, r):
            for j in range(0, W - w + 1, q):
                if region is None or (region[0] <= i <= region[2] and region[1] <= j <= region[3]):
                    yield i, j

    boxes: list = []
    budget = [20_000]

    def rec(k: int) -> bool:
        if k == len(slots):
            return True
        h, w = slots[k]
        for i, j in anchors(h, w):
            budget[0] -= 1
            if budget[0] < 0:
                return False  # too costly to decide: treat as not fitting, and shrink
            box = (i, j, h, w)
            if all(_apart(box, b, gap) for b in boxes):
                boxes.append(box)
                if rec(k + 1):
                    return True
                boxes.pop()
        return False

    return rec(0)


@st.composite
def random_task_toml(
    draw,
    max_height: int = 6,
    max_width: int = 6,
    max_channels: int = 2,
    max_features: int = 4,
    max_feature_side: int = 3,
    max_classes: int = 3,
    max_scenes: int = 1500,
    allow_noise: bool = True,
    repair: bool = True,
    disjoint: bool = False,
) -> str:
    """The TOML text of a random small task (see the module docstring).

    With ``repair=False`` a class whose required placements cannot fit is left as drawn, so
    the loader's "has no scene" check is exercised (about half such tasks are then rejected).
    With ``disjoint=True`` the classes' required sets are disjoint and templates have fewer
    don't-care cells, so that a good share of the tasks are well-posed.
    """
    H = draw(st.integers(1, max_height))
    W = draw(st.integers(1, max_width))
    C = draw(st.integers(1, max_channels))

    # levels, background, noise ---------------------------------------------------------------
    n_levels = draw(st.integers(2, 4))
    written = draw(st.lists(st.sampled_from(LEVEL_POOL), min_size=n_levels, max_size=n_levels, unique=True))
    levels = [Fraction(v) for v in written]
    ordered = sorted(levels)
    s = min(b - a for a, b in zip(ordered, ordered[1:]))
    symbols = dict(zip(SYMBOLS, levels))
    background = draw(st.one_of(st.none(), st.sampled_from(levels)))
    noise = draw(st.sampled_from([None, Fraction(0), s / 4, s / 3])) if allow_noise else None

    # features --------------------------------------------------------------------------------
    n_classes = draw(st.integers(2, max_classes))
    n_features = draw(st.integers(n_classes if disjoint else 1, max(max_features, n_classes)))
    cell = st.sampled_from(list(symbols) + ([] if disjoint else ["*"]))
    features: dict[str, list[str]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for k in range(n_features):
        h = draw(st.integers(1, min(max_feature_side, H)))
        w = draw(st.integers(1, min(max_feature_side, W)))
        planes = [
            [[draw(cell) for _ in range(w)] for _ in range(h)] for _ in range(C)
        ]
        if all(v == "*" for p in planes for row in p for v in row):
            planes[0][draw(st.integers(0, h - 1))][draw(st.integers(0, w - 1))] = draw(
                st.sampled_from(list(symbols))
            )
        name = f"f{k}"
        features[name] = ["\n".join("".join(row) for row in p) for p in planes]
        sizes[name] = (h, w)
    names = list(features)

    # rules and classes -----------------------------------------------------------------------
    defaults = draw(_rules(H, W, 0.3))
    classes = []
    spare = names[n_classes:]
    for c in range(n_classes):
        if disjoint:
            required = [names[c]]
            if spare and draw(st.booleans()):
                required.append(spare.pop())
        else:
            required = draw(
                st.lists(st.sampled_from(names), min_size=1, max_size=min(3, len(names)), unique=True)
            )
        rest = [n for n in names if n not in required]
        distractors = (
            draw(st.lists(st.sampled_from(rest), max_size=min(2, len(rest)), unique=True)) if rest else []
        )
        overrides = draw(_rules(H, W, 0.25))
        classes.append({"name": f"c{c}", "required": required, "distractors": distractors, "rules": overrides})
    used = {n for c in classes for n in c["required"] + c["distractors"]}
    for k, n in enumerate(x for x in names if x not in used):
        classes[k % n_classes]["distractors"].append(n)

    # make the rules consistent and every class small enough for brute force ------------------
    for c in classes:
        eff = {**defaults, **c["rules"]}
        # a distractor must have an anchor, and listed distractors need max_distractors >= 1
        c["distractors"] = [
            n for n in c["distractors"] if _anchor_count(H, W, *sizes[n], eff) > 0
        ]
        if c["distractors"] and eff.get("max_distractors", 0) == 0:
            c["rules"]["max_distractors"] = 1
        while repair and not _required_fit(H, W, sizes, c["required"], {**defaults, **c["rules"]}):
            eff = {**defaults, **c["rules"]}
            if len(c["required"]) > 1:
                c["required"].pop()
            elif eff.get("copies", 1) > 1:
                c["rules"]["copies"] = eff["copies"] - 1
            elif eff.get("gap", 0) > 0:
                c["rules"]["gap"] = eff["gap"] - 1
            else:  # one copy of one feature that has no anchor: free the anchors
                c["rules"]["stride"] = [1, 1]
                c["rules"]["region"] = [0, 0, H - 1, W - 1]
        while True:
            eff = {**defaults, **c["rules"]}
            if scene_bound(H, W, sizes, c["required"], c["distractors"], eff) <= max_scenes:
                break
            if c["distractors"] and eff.get("max_distractors", 0) > 1:
                c["rules"]["max_distractors"] = eff["max_distractors"] - 1
            elif eff.get("copies", 1) > 1:
                c["rules"]["copies"] = eff["copies"] - 1
            elif c["distractors"]:
                c["distractors"].pop()
            elif len(c["required"]) > 1:
                c["required"].pop()
            else:
                break  # one required feature, one copy: at most H * W scenes
    used = {n for c in classes for n in c["required"] + c["distractors"]}
    names = [n for n in names if n in used]  # a feature the reductions freed is left out

    # the TOML text ---------------------------------------------------------------------------
    lines = ['name = "random"', "", "[canvas]"]
    if C != 1 or draw(st.booleans()):
        lines.append(f"channels = {C}")
    lines += [f"height = {H}", f"width = {W}", "", "[pixels]"]
    lines.append("levels = [" + ", ".join(_toml_str(v) for v in written) + "]")
    if background is not None:
        lines.append(f"background = {_toml_str(_fmt(background))}")
    if noise is not None:
        lines.append(f"noise = {_toml_str(_fmt(noise))}")
    lines.append(
        "symbols = { " + ", ".join(f"{_toml_str(k)} = {_toml_str(_fmt(v))}" for k, v in symbols.items()) + " }"
    )
    if defaults:
        lines += ["", "[scene]"]
        lines += [f"{k} = {_toml_value(defaults[k])}" for k in RULE_ORDER if k in defaults]
    for name in names:
        planes = features[name]
        value = _toml_str(planes[0]) if C == 1 else "[" + ", ".join(_toml_str(p) for p in planes) + "]"
        lines += ["", f"[features.{name}]", f"template = {value}"]
    for c in classes:
        lines += ["", f"[classes.{c['name']}]"]
        lines.append("required = [" + ", ".join(_toml_str(n) for n in c["required"]) + "]")
        if c["distractors"]:
            lines.append("distractors = [" + ", ".join(_toml_str(n) for n in c["distractors"]) + "]")
        lines += [f"{k} = {_toml_value(c['rules'][k])}" for k in RULE_ORDER if k in c["rules"]]
    return "\n".join(lines) + "\n"


def load_or_reject(text: str):
    """Load a task; reject the hypothesis example (``assume``) when the loader refuses it."""
    from cnnproof.constructions.task import task_from_toml
    from cnnproof.verifier.errors import InputError

    try:
        return task_from_toml(text, source="<random>")
    except InputError:
        assume(False)


@st.composite
def random_task(draw, **kwargs):
    """``(toml_text, Task)`` for a random task the loader accepts (others are rejected)."""
    text = draw(random_task_toml(**kwargs))
    return text, load_or_reject(text)
