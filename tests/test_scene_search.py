"""The scene lemma's search agrees with brute force: for random small tasks, every class and
every set of one or two features, ``appear_together`` finds a scene iff some enumerated scene
contains them all, and the scene it returns is a valid scene that does contain them.

Both the search and the checker's ``can_cooccur`` pose the question on a bounded canvas
(``reduced_canvas`` / ``bounded_canvas``; the proof: docs/canvas-bound.md). The tests below draw canvases larger than that bound, so that the squeezing
argument itself is tested: brute force on the full canvas, brute force on the bounded one, the
search and the checker all give the same answer."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from naive import naive_contains, naive_image, naive_scenes, present_sets
from randtasks import load_or_reject, random_task

from cnnproof.constructions.scene_search import WORK, appear_together, reduced_canvas, uncoverable_cell
from cnnproof.constructions.scenes import base_image, occurrences, scene_problem
from cnnproof.constructions.task import Anchors
from cnnproof.verifier.checker.scenes import bounded_canvas, can_cooccur




def _agree(text, task, sizes=(1, 2), checker=False) -> int:
    """Every class and goal set: search (and checker) == brute force. Returns how many
    (class, goals) questions had a canvas strictly larger than the bound."""
    feats = [f.name for f in task.features]
    squeezed = 0
    for cls in task.classes:
        present = present_sets(task, cls)
        for k in sizes:
            for goals in itertools.combinations(feats, k):
                truth = any(set(goals) <= p for p in present)
                found = appear_together(task, cls, list(goals))
                assert (found is not None) == truth, (text, cls.name, goals)
                if found is not None:
                    assert scene_problem(task, cls, found) is None
                    img = base_image(task, found)
                    for g in goals:
                        assert occurrences(task, img, task.feature(g)), (goals, found)
                if k == 1 and uncoverable_cell(task, cls, goals[0]) is not None:
                    assert not truth
                # the checker computes the same bound with its own code
                assert bounded_canvas(task, cls, list(goals)) == reduced_canvas(task, cls, goals)
                if checker:
                    assert can_cooccur(task, cls, list(goals)) == truth, (text, cls.name, goals)
                dr, dc, H, W = reduced_canvas(task, cls, goals)
                if (dr, dc, H, W) != (0, 0, task.height, task.width):
                    squeezed += 1
    return squeezed


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.one_of(random_task(), random_task(disjoint=True)))
def test_appear_together_matches_brute_force(pair):
    _agree(*pair)


def _squeeze_check(text, task, sizes=(1, 2)) -> None:
    """Brute force on the full canvas == brute force on the bounded canvas, per question."""
    feats = [f.name for f in task.features]
    for cls in task.classes:
        full = present_sets(task, cls)
        for k in sizes:
            for goals in itertools.combinations(feats, k):
                dr, dc, H, W = reduced_canvas(task, cls, goals)
                if (dr, dc, H, W) == (0, 0, task.height, task.width):
                    continue
                small = _framed(task, cls, dr, dc, H, W)
                truth = any(set(goals) <= p for p in full)
                squeezed = any(set(goals) <= p for p in present_sets(small, small.classes[task.class_index(cls.name)]))
                assert truth == squeezed, (text, cls.name, goals, (dr, dc, H, W))


def _framed(task, cls, dr, dc, H, W):
    """The task on the H x W frame whose (0, 0) is the task's (dr, dc): the class's region moved
    by (-dr, -dc) (dr, dc are multiples of the stride, so the grid is the same)."""
    r, q = cls.anchors.stride
    assert dr % r == 0 and dc % q == 0
    region = cls.anchors.region
    if region is not None:
        region = (region[0] - dr, region[1] - dc, region[2] - dr, region[3] - dc)
    moved = dataclasses.replace(cls, anchors=Anchors(cls.anchors.stride, region))
    classes = tuple(moved if c.name == cls.name else c for c in task.classes)
    return dataclasses.replace(task, height=H, width=W, classes=classes)


@st.composite
def far_region(draw):
    """A strip (1 or 2 rows, up to 14 columns) whose first class's region starts far from column
    0, so that the frame's shift (Lemma 3 of docs/canvas-bound.md) is exercised."""
    H = draw(st.integers(1, 2))
    W = draw(st.integers(7, 14))
    sym = "abc"
    feats = {}
    for k in range(draw(st.integers(2, 3))):
        w = draw(st.integers(1, 3))
        h = draw(st.integers(1, H))
        rows = ["".join(draw(st.sampled_from(sym + "*")) for _ in range(w)) for _ in range(h)]
        if all(ch == "*" for r in rows for ch in r):
            rows[0] = "b" + rows[0][1:]
        feats[f"f{k}"] = "\n".join(rows)
    names = list(feats)
    c0 = draw(st.integers(2, W - 1))
    c1 = draw(st.integers(c0, W - 1))
    stride = draw(st.integers(1, 2))
    gap = draw(st.integers(0, 1))
    req_a = draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    rest = [n for n in names if n not in req_a]
    dis = draw(st.lists(st.sampled_from(rest), max_size=1, unique=True)) if rest else []
    req_b = rest if rest else [names[0]]
    lines = ['name = "far"', "[canvas]", f"height = {H}", f"width = {W}", "[pixels]",
             "levels = [0, 1, 2]", 'symbols = { "a" = 0, "b" = 1, "c" = 2 }']
    for n, t in feats.items():
        lines += [f"[features.{n}]", f'template = "{t}"']
    lines += ["[classes.a]", f"required = {req_a!r}".replace("'", '"'),
              f"region = [0, {c0}, {H - 1}, {c1}]", f"stride = [1, {stride}]", f"gap = {gap}"]
    if dis:
        lines += [f"distractors = {dis!r}".replace("'", '"'), "max_distractors = 1"]
    lines += ["[classes.b]", f"required = {req_b!r}".replace("'", '"')]
    text = "\n".join(lines) + "\n"
    return text, load_or_reject(text)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(far_region())
def test_frame_shift_agrees_with_brute_force(pair):
    text, task = pair
    _agree(text, task, checker=True)
    _squeeze_check(text, task)


def test_far_regions_are_shifted():
    seen = []

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(far_region())
    def count(pair):
        text, task = pair
        for f in task.features:
            seen.append(reduced_canvas(task, task.classes[0], [f.name])[1] > 0)

    count()
    assert sum(seen) >= len(seen) // 3, (sum(seen), len(seen))


# Long strips and larger canvases with small features: the bound is below the canvas in at
# least one axis for most questions (the test asserts that it is for a good share).
STRIPS = st.one_of(
    random_task(max_height=2, max_width=12, max_features=3, max_feature_side=2, max_scenes=800),
    random_task(max_height=12, max_width=2, max_features=3, max_feature_side=2, max_scenes=800),
    random_task(max_height=8, max_width=8, max_features=3, max_feature_side=2, max_scenes=800, disjoint=True),
)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(STRIPS)
def test_bounded_canvas_agrees_with_brute_force_beyond_the_bound(pair):
    text, task = pair
    _agree(text, task, checker=True)
    _squeeze_check(text, task)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(STRIPS, far_region(), random_task(), random_task(disjoint=True),
                 random_task(max_height=10, max_width=10, max_features=3, max_feature_side=2, max_scenes=1500)))
def test_bounded_canvas_sweep(pair):
    text, task = pair
    _agree(text, task, sizes=(1, 2, 3), checker=True)
    _squeeze_check(text, task, sizes=(1, 2, 3))


def test_the_strips_do_reach_beyond_the_bound():
    """The generator of the test above is not vacuous: many questions are squeezed."""
    seen = []

    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(STRIPS)
    def count(pair):
        text, task = pair
        for cls in task.classes:
            for f in task.features:
                seen.append(reduced_canvas(task, cls, [f.name]) != (0, 0, task.height, task.width))

    count()
    assert sum(seen) >= len(seen) // 4, (sum(seen), len(seen))


def test_work_counter_counts():
    from cnnproof.constructions.task import load_task
    from pathlib import Path

    task = load_task(Path(__file__).parent.parent / "constructions" / "catalogue" / "faces.toml")
    before = dict(WORK)
    appear_together(task, task.classes[0], ["roof", "door"])
    assert WORK["searches"] == before.get("searches", 0) + 1
    assert WORK["nodes"] > before.get("nodes", 0)


def test_blank_goal_left_of_a_packed_far_region():
    """The edge of Lemma 3: the region (one anchor, at column 40) and the canvas right of it are
    full, so a goal that is all background can only occur left of the region; the frame keeps
    exactly one column there (one less and the answer would wrongly be "never")."""
    from cnnproof.constructions.task import task_from_toml

    text = """
name = "far-blank"
[canvas]
height = 1
width = 42
[pixels]
levels = [0, 1]
symbols = { "." = 0, "#" = 1 }
[features.bar]
template = "##"
[features.blank]
template = "."
[classes.a]
required = ["bar"]
region = [0, 40, 0, 40]
[classes.b]
required = ["blank"]
"""
    task = task_from_toml(text)
    cls = task.classes[0]
    dr, dc, H, W = reduced_canvas(task, cls, ["blank"])
    assert (dr, dc) == (0, 39) and (H, W) == (1, 3)
    assert bounded_canvas(task, cls, ["blank"]) == (dr, dc, H, W)
    found = appear_together(task, cls, ["blank"])
    assert found is not None and scene_problem(task, cls, found) is None
    assert [(p.feature, p.row, p.col) for p in found] == [("bar", 0, 40)]
    assert can_cooccur(task, cls, ["blank"])
    # and with the whole canvas full there is no room at all: never, on the frame and the canvas
    full = task_from_toml(text.replace("width = 42", "width = 2").replace("[0, 40, 0, 40]", "[0, 0, 0, 0]"))
    assert appear_together(full, full.classes[0], ["blank"]) is None
    assert not can_cooccur(full, full.classes[0], ["blank"])
