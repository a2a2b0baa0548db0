"""The readings of MODEL.md section 8 this project chose (docs/task-format.md, "Readings chosen
for parts"), each pinned on a tiny task by the library enumerator and by the literal reference
tests/naive_parts.py."""

from __future__ import annotations

import naive_parts
from cnnproof.constructions.scenes import enumerate_scenes
from cnnproof.constructions.task import task_from_toml


def _task(parts: str, cls: str, H: int = 4, W: int = 4) -> object:
    return task_from_toml(f"""name = "r"
[canvas]
height = {H}
width = {W}
[features.a]
template = "1"
[features.b]
template = "11"
{parts}
{cls}
[classes.y]
required = ["b"]
""", source="r.toml")


def _scenes(t, c=0) -> set:
    lib = {frozenset(_tuple(p) for p in s) for s in enumerate_scenes(t, t.classes[c])}
    ref = naive_parts.item_scenes(t, t.classes[c])
    assert lib == ref
    return lib


def _tuple(p) -> tuple:
    return (p.feature, p.row, p.col, tuple(_tuple(k) for k in p.pieces))


def test_stride_applies_to_the_part_anchor_negative_anchors_included():
    # one piece at (1, 1), jitter 1: anchors -2..2; stride 2 keeps the even ones, -2 included
    t = _task('[parts.p]\npieces = [{ item = "a", at = [1, 1] }]\njitter = 1',
              '[classes.x]\nrequired = ["p"]\nstride = [2, 2]')
    anchors = {(p[1], p[2]) for s in _scenes(t) for p in s}
    assert {r for r, _ in anchors} == {-2, 0, 2} and {c for _, c in anchors} == {-2, 0, 2}


def test_gap_does_not_apply_inside_a_placement():
    # a and b touching inside one part, with gap 1 between items
    t = _task('[parts.p]\npieces = [{ item = "a", at = [0, 0] }, { item = "b", at = [0, 1] }]',
              '[classes.x]\nrequired = ["p"]\ngap = 1', H=1, W=3)
    assert len(_scenes(t)) == 1


def test_copies_apply_to_parts():
    t = _task('[parts.p]\npieces = [{ item = "a", at = [0, 0] }]', '[classes.x]\nrequired = ["p"]\ncopies = 2', H=1, W=3)
    sc = _scenes(t)
    assert sc and all(len(s) == 2 for s in sc)
    assert len(sc) == 3  # two of the three cells


def test_scenes_differing_only_in_displacements_are_different():
    # one piece at (1, 1) with jitter 1: each of the 4x4 leaf positions is reached from 9
    # (anchor, displacement) pairs; the scenes are different though their images are equal
    t = _task('[parts.p]\npieces = [{ item = "a", at = [1, 1] }]\njitter = 1', '[classes.x]\nrequired = ["p"]')
    sc = _scenes(t)
    assert len(sc) == 16 * 9
    assert len({tuple((lf[1], lf[2]) for lf in naive_parts.leaves(next(iter(s)))) for s in sc}) == 16
