"""The scene lemma's search agrees with brute force: for random small tasks, every class and
every set of one or two features, ``appear_together`` finds a scene iff some enumerated scene
contains them all, and the scene it returns is a valid scene that does contain them."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from naive import naive_contains, naive_image, naive_scenes
from randtasks import random_task

from cnnproof.constructions.scene_search import appear_together, uncoverable_cell
from cnnproof.constructions.scenes import base_image, occurrences, scene_problem


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.one_of(random_task(), random_task(disjoint=True)))
def test_appear_together_matches_brute_force(pair):
    text, task = pair
    feats = [f.name for f in task.features]
    for cls in task.classes:
        present_sets = []
        for scene in naive_scenes(task, cls):
            img = naive_image(task, scene)
            present_sets.append({f.name for f in task.features if naive_contains(task, img, f)})
        for k in (1, 2):
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
