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

from naive import naive_contains, naive_image, naive_scenes
from randtasks import random_task

from cnnproof.constructions.scene_search import WORK, appear_together, reduced_canvas, uncoverable_cell
from cnnproof.constructions.scenes import base_image, occurrences, scene_problem
from cnnproof.verifier.checker.scenes import bounded_canvas, can_cooccur


def _present_sets(task, cls) -> list[set[str]]:
    out = []
    for scene in naive_scenes(task, cls):
        img = naive_image(task, scene)
        out.append({f.name for f in task.features if naive_contains(task, img, f)})
    return out


def _agree(text, task, sizes=(1, 2), checker=False) -> int:
    """Every class and goal set: search (and checker) == brute force. Returns how many
    (class, goals) questions had a canvas strictly larger than the bound."""
    feats = [f.name for f in task.features]
    squeezed = 0
    for cls in task.classes:
        present_sets = _present_sets(task, cls)
        for k in sizes:
            for goals in itertools.combinations(feats, k):
                truth = any(set(goals) <= p for p in present_sets)
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
                H, W = reduced_canvas(task, cls, goals)
                if (H, W) != (task.height, task.width):
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
        full = _present_sets(task, cls)
        for k in sizes:
            for goals in itertools.combinations(feats, k):
                H, W = reduced_canvas(task, cls, goals)
                if (H, W) == (task.height, task.width):
                    continue
                small = dataclasses.replace(task, height=H, width=W)
                truth = any(set(goals) <= p for p in full)
                squeezed = any(set(goals) <= p for p in _present_sets(small, small.classes[task.class_index(cls.name)]))
                assert truth == squeezed, (text, cls.name, goals, (H, W))


# Long strips and larger canvases with small features: the bound is below the canvas in at
# least one axis for most questions (the test asserts that it is for a good share).
STRIPS = st.one_of(
    random_task(max_height=2, max_width=12, max_features=3, max_feature_side=2, max_scenes=800),
    random_task(max_height=12, max_width=2, max_features=3, max_feature_side=2, max_scenes=800),
    random_task(max_height=8, max_width=8, max_features=3, max_feature_side=2, max_scenes=800, disjoint=True),
)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(STRIPS)
def test_bounded_canvas_agrees_with_brute_force_beyond_the_bound(pair):
    text, task = pair
    _agree(text, task, checker=True)
    _squeeze_check(text, task)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(STRIPS, random_task(), random_task(disjoint=True),
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
                seen.append(reduced_canvas(task, cls, [f.name]) != (task.height, task.width))

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
