"""Hierarchical tasks, level by level (MODEL.md section 8, "How the proof scales").

Stage: task -> scene facts -> verdict (a special case inside the compositional method).
Trusted: no: every "never" fact it records is re-decided by the fenced checker
(``checker/scenes.cooccur``, one exact z3 query on integer anchors and displacements), and every
witness it finds is a concrete scene re-checked by exact evaluation.

Scene lemmas for items (features and parts): an item not placed by class c occurs in an image of
c only if every feature of its tree can be written there; the cheap test is the flat
"uncoverable cell" argument on the class's leaf features (a feature of the item that no leaf
feature of the class can write compatibly: the item never occurs). Otherwise one z3 query
decides exactly whether some scene of c contains the item (or, for the joint lemma, a set of
items), with a scene when it does.
"""

from __future__ import annotations

import time

from cnnproof.constructions.scene_search import uncoverable_cell
from cnnproof.constructions.scenes import Placement, Scene, base_image
from cnnproof.constructions.task import ClassSpec, Task
from cnnproof.verifier.checker.scenes import cooccur
from cnnproof.verifier.deadline import check
from cnnproof.verifier.outcome import Proved, Question, Refuted, Verdict
from cnnproof.verifier.recheck import confirm, witness_for


def leaf_features(task: Task, name: str) -> set[str]:
    if not task.is_part(name):
        return {name}
    return set().union(*(leaf_features(task, n) for n, _, _ in task.part(name).pieces))


def _flat_view(task: Task, cls: ClassSpec) -> tuple[Task, ClassSpec]:
    """The class with its items replaced by their leaf features (a relaxation: every image of
    ``cls`` is written by these features, so a cell none of them can write stays unwritten)."""
    import dataclasses

    req = sorted(set().union(*(leaf_features(task, n) for n in cls.required)))
    dis = sorted(set().union(set(), *(leaf_features(task, n) for n in cls.distractors)) - set(req))
    view = ClassSpec(cls.name, tuple(req), tuple(dis), max_distractors=cls.max_distractors if dis else 0)
    return dataclasses.replace(task, parts=(), classes=(view,)), view


def scene_of(nested) -> Scene:
    """A scene from ``checker.scenes.cooccur``'s nested [item, row, col, [pieces]] lists."""
    def one(t) -> Placement:
        n, r, c, kids = t
        return Placement(n, r, c, tuple(one(k) for k in kids))

    return tuple(sorted(one(t) for t in nested))


class ItemFacts:
    """Per class: items proved never to occur (with how), and items that occur (with a scene)."""

    def __init__(self):
        self.never: dict[str, dict] = {}
        self.occurs: dict[str, Scene] = {}


def item_facts(task: Task, c: int, items, deadline=None) -> ItemFacts:
    cls = task.classes[c]
    view, vcls = _flat_view(task, cls)
    facts = ItemFacts()
    for g in sorted(items):
        if g in cls.required:
            continue
        check(deadline)
        t0 = time.perf_counter()
        if any(uncoverable_cell(view, vcls, f) is not None for f in sorted(leaf_features(task, g))):
            facts.never[g] = {"procedure": "scene-search", "relaxation": "uncoverable-leaf",
                              "seconds": time.perf_counter() - t0}
            continue
        found = cooccur(task, cls, [g])
        if found is None:
            facts.never[g] = {"procedure": "scene-search", "seconds": time.perf_counter() - t0}
        else:
            facts.occurs[g] = scene_of(found)
    return facts


def _present(task: Task, scene: Scene) -> set[str]:
    import numpy as np

    from cnnproof.constructions.scenes import base_image_int, presence_int

    pres = presence_int(task, base_image_int(task, scene)[None])[0]
    return {n for n, p in zip(task.items, np.asarray(pres)) if p}


def wellposed(task: Task, q: Question, obligations: list[dict], deadline=None) -> Verdict:
    """Well-posedness of a hierarchical task: per pair of classes (c, c'), S_c' minus S_c is
    never complete in an image of c (some item never occurs, or they never occur together)."""
    from cnnproof.constructions.scenes import find_scene

    for c, cls in enumerate(task.classes):
        facts = None
        for o, other in enumerate(task.classes):
            if o == c:
                continue
            missing = sorted(set(other.required) - set(cls.required))
            if not missing:
                scene = find_scene(task, cls)
                return Refuted("compositional", confirm(task, None, q, witness_for(
                    task, c, scene, base_image(task, scene), _present(task, scene))))
            if facts is None:
                facts = item_facts(task, c, {g for oc in task.classes for g in oc.required}, deadline)
            never = [g for g in missing if g in facts.never]
            if never:
                g = never[0]
                how = facts.never[g]
                obligations.append({"kind": "scene-never", "class": cls.name, "feature": g,
                                    "discharged_by": {k: v for k, v in how.items() if k != "seconds"},
                                    "seconds": round(how["seconds"], 6)})
                obligations.append({"kind": "not-complete", "class": cls.name, "other": other.name,
                                    "because": {"never": g}})
                continue
            check(deadline)
            t1 = time.perf_counter()
            found = cooccur(task, cls, missing)
            if found is not None:
                scene = scene_of(found)
                return Refuted("compositional", confirm(task, None, q, witness_for(
                    task, c, scene, base_image(task, scene), _present(task, scene))))
            obligations.append({"kind": "scene-joint-never", "class": cls.name, "features": missing,
                                "discharged_by": {"procedure": "scene-search"},
                                "seconds": round(time.perf_counter() - t1, 6)})
            obligations.append({"kind": "not-complete", "class": cls.name, "other": other.name,
                                "because": {"joint": missing}})
    return Proved("compositional", None, {})
