"""Red-team review of issue 13 (scale): the re-encoded co-occurrence query of the fenced
checker (``verifier/checker/scenes.py: cooccur``, per (goal leaf, placed leaf) agreeing
offsets), the key-cell index of ``uncoverable_cell`` and the fewest-options branching of
``appear_together`` (``constructions/scene_search.py``), and the identity-keyed caches.

1. ``cooccur`` against the pre-issue-13 encoding (commit 075ea55, copied below as
   ``_old_cooccur``) and against brute force (tests/naive.py), on random flat tasks and on
   random hierarchical tasks (tests/levels_tasks.py), one and two goals; every scene returned is
   checked to be a scene whose base image contains the goals.
2. ``uncoverable_cell`` against the full ``cover_options`` lists and brute force.
3. ``appear_together`` against brute force.
4. Caches keyed by ``id()``: a task rebuilt by ``dataclasses.replace`` sharing Feature objects
   (another background) must not get stale answers.
5. Forged certificates: a genuine well-posedness certificate, the task changed so that a
   scene-never claim is false (sha256 recomputed by the forger), or its cell edited.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from fractions import Fraction
from pathlib import Path

import pytest
import z3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from naive import naive_contains, naive_image, naive_scenes, present_sets
from forging import accepts
from randtasks import random_task

from cnnproof.constructions import scene_search
from cnnproof.constructions.scene_search import appear_together, cover_options, uncoverable_cell
from cnnproof.constructions.scenes import base_image as c_base_image
from cnnproof.constructions.scenes import occurrences, scene_problem
from cnnproof.constructions.task import load_task, task_from_toml
from cnnproof.verifier.certificate import task_sha256
from cnnproof.verifier.checker import scenes as cs
from cnnproof.verifier.checker.check import check_certificate
from cnnproof.verifier.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "proofs" / "tasks"


# -- the reference: cooccur as of 075ea55 ------------------------------------------------------

def _old_cooccur(task, cls, goals):
    if task.parts:
        dr, dc, H, W = 0, 0, task.height, task.width
    else:
        dr, dc, H, W = cs.bounded_canvas(task, cls, goals)
    bg = task.background
    feats = {f.name: f for f in task.features}
    sup = lambda f: {(ch, a, b): v for ch, a, b, v in f.support()}  # noqa: E731
    s = z3.Solver()
    slots, placed = cs.scene_model(task, cls, s, dr, dc, H, W)
    gcons: list = []
    for gi, gname in enumerate(goals):
        t = cs._tree(task, gname, z3.Int(f"u{gi}"), z3.Int(f"v{gi}"), f"g{gi}", gcons)
        for n, U, V, _ in cs._leaves(t):
            g = feats[n]
            s.add(U >= 0, V >= 0, U <= H - g.height, V <= W - g.width)
            for (ch, a, b), need in sup(g).items():
                hits, bad = [], []
                for on, (fname, r, c, _, _), _ in placed:
                    for (fch, fa, fb), v in sup(feats[fname]).items():
                        if fch != ch or (v == need and need == bg):
                            continue
                        at = z3.And(on, U + a == r + fa, V + b == c + fb)
                        (hits if v == need else bad).append(at)
                if need != bg:
                    s.add(z3.Or(hits) if hits else z3.BoolVal(False))
                else:
                    s.add(z3.Not(z3.Or(bad)) if bad else z3.BoolVal(True))
    s.add(gcons)
    r = s.check()
    assert r != z3.unknown
    if r == z3.unsat:
        return None
    return cs.scene_of_model(s.model(), slots, dr, dc)


def _scene_contains(task, cls, scene, goals):
    """The checker's own validation of a returned scene: a scene, whose base image has the goals."""
    norm = lambda p: p[:3] if not p[3] else [*p[:3], [norm(q) for q in p[3]]]  # noqa: E731
    scene = [norm(p) for p in scene]
    assert cs.scene_errors(task, cls, scene) is None, scene
    img = cs.base_image(task, scene)
    memo: dict = {}
    for g in goals:
        assert cs.item_anchors(task, img, g, memo), (goals, scene)




def _flat_agree(task, sizes=(1, 2), brute=True):
    feats = [f.name for f in task.features]
    for cls in task.classes:
        present = present_sets(task, cls) if brute else None
        for k in sizes:
            for goals in itertools.combinations(feats, k):
                new = cs.cooccur(task, cls, list(goals))
                old = _old_cooccur(task, cls, list(goals))
                assert (new is None) == (old is None), (cls.name, goals, new, old)
                if new is not None:
                    _scene_contains(task, cls, new, goals)
                if present is not None:
                    truth = any(set(goals) <= p for p in present)
                    assert (new is not None) == truth, (cls.name, goals)
                    found = appear_together(task, cls, list(goals))
                    assert (found is not None) == truth, (cls.name, goals)
                    if found is not None:
                        assert scene_problem(task, cls, found) is None
                        img = c_base_image(task, found)
                        assert all(occurrences(task, img, task.feature(g)) for g in goals)
                if k == 1:
                    _uncoverable_agrees(task, cls, goals[0], present)


def _uncoverable_agrees(task, cls, g, present=None):
    opts = cover_options(task, cls, g)
    empty = [c for c, o in opts.items() if not o]
    cell = uncoverable_cell(task, cls, g)
    if cell is None:
        assert not empty, (cls.name, g, empty)
    else:
        assert cell in empty, (cls.name, g, cell, empty)
        # the checker's own re-check accepts it, and g really never occurs
        assert cs.uncoverable(task, cls, g, list(cell)) is None
        assert cs.cooccur(task, cls, [g]) is None
        if present is not None:
            assert not any(g in p for p in present)


SETTINGS = settings(max_examples=35, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(st.one_of(random_task(), random_task(disjoint=True)))
def test_cooccur_new_matches_old_and_brute_force(pair):
    _flat_agree(pair[1])


@settings(max_examples=20, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.one_of(random_task(max_channels=2, max_features=5, max_feature_side=3, max_scenes=300),
                 random_task(max_height=8, max_width=8, max_features=4, max_scenes=400, disjoint=True)))
def test_cooccur_new_matches_old_more_features(pair):
    _flat_agree(pair[1], brute=True)


def _hier_tasks(seed, n):
    from levels_tasks import tasks

    return list(tasks(seed, n, structured=True, max_scenes=3000))


@pytest.mark.parametrize("seed", [0, 1])
def test_cooccur_new_matches_old_on_hierarchical_tasks(seed):
    for _, t in _hier_tasks(seed, 4):
        items = list(t.items)
        for cls in t.classes:
            for k in (1, 2):
                for goals in itertools.combinations(items, k):
                    new = cs.cooccur(t, cls, list(goals))
                    old = _old_cooccur(t, cls, list(goals))
                    assert (new is None) == (old is None), (t.name, cls.name, goals)
                    if new is not None:
                        _scene_contains(t, cls, new, goals)


# -- hand-written corner cases -------------------------------------------------------------------

WILD = """
name = "wild"
[canvas]
height = 5
width = 6
channels = 2
[pixels]
levels = [0, 1, 2]
symbols = { "." = 0, "#" = 1, "o" = 2 }
background = 1
[scene]
max_distractors = 1
[features.a]
template = ['''
#o*
.*o
''', '''
*.#
o##
''']
[features.b]
template = ['''
o
#
''', '''
*
.
''']
[features.c]
template = ['''
o*o
''', '''
#.#
''']
[features.d]
template = ['''
#
''', '''
o
''']
[classes.x]
required = ["a"]
distractors = ["b", "d"]
[classes.y]
required = ["c"]
distractors = ["b"]
"""


def _try_load(text):
    try:
        return task_from_toml(text, source="t.toml")
    except InputError:
        return None


def test_corner_tasks_agree():
    """Multi-channel, wildcards, a background that is not the smallest level, background-valued
    template cells: new == old == brute force."""
    t = _try_load(WILD)
    if t is None:
        pytest.skip("the hand-written task is not in the accepted format")
    _flat_agree(t)


def test_rebuilt_task_with_another_background_gets_fresh_answers():
    """Caches keyed by id(): a task rebuilt with dataclasses.replace shares its Feature objects.
    With another background the agreeing offsets differ ('*' cells write the background)."""
    for path in sorted(TASKS.glob("*.toml")):
        t = load_task(path)
        if t.parts or len(t.levels) < 2 or t.height * t.width > 36:
            continue
        for bg in t.levels:
            t2 = dataclasses.replace(t, background=bg)
            for tt in (t, t2, t):
                for cls in tt.classes:
                    for f in tt.features:
                        new = cs.cooccur(tt, cls, [f.name])
                        old = _old_cooccur(tt, cls, [f.name])
                        assert (new is None) == (old is None), (path.name, bg, tt.background, cls.name, f.name)
                        cell = uncoverable_cell(tt, cls, f.name)
                        empty = [c for c, o in cover_options(tt, cls, f.name).items() if not o]
                        assert (cell is None) == (not empty), (path.name, bg, cls.name, f.name)


def test_agreeing_cache_is_not_fooled_by_a_rebuilt_task():
    """_agreeing keyed by (id(g), id(f), background, levels, channels): compute it for one task,
    then for the same features under another background, then back."""
    t = load_task(TASKS / "background.toml") if (TASKS / "background.toml").exists() else load_task(TASKS / "faces.toml")
    f0, f1 = t.features[0], t.features[-1]
    a = cs._agreeing(t, f0, f1)
    others = [v for v in t.levels if v != t.background]
    for bg in others:
        t2 = dataclasses.replace(t, background=bg)
        b = cs._agreeing(t2, f0, f1)
        cs._AGREE.clear()
        assert b == cs._agreeing(t2, f0, f1)
        assert a == cs._agreeing(t, f0, f1)


# -- forged certificates ---------------------------------------------------------------------------

_accepts = accepts


DISTRACTORS = (TASKS / "distractors.toml").read_text()


@pytest.fixture(scope="module")
def dist_cert(tmp_path_factory):
    from cnnproof import api

    d = tmp_path_factory.mktemp("c13")
    (d / "distractors.toml").write_text(DISTRACTORS)
    assert api.check_task(d / "distractors.toml", certificate=d / "wp.json").verdict == "PROVED"
    return d, json.loads((d / "wp.json").read_text())


def _never(cert):
    return [o for o in cert.get("obligations", []) if o.get("kind") == "scene-never"]


def test_genuine_certificate_accepted(dist_cert, tmp_path):
    d, c = dist_cert
    (tmp_path / "distractors.toml").write_text(DISTRACTORS)
    assert _accepts(c, tmp_path)
    assert _never(c), "expected scene-never obligations"


# the ear becomes the snout: a dog's snout appears in a cat (one ear distractor)
EAR_IS_SNOUT = DISTRACTORS.replace('[features.ear]\ntemplate = """\n#\n#\n"""',
                                   '[features.ear]\ntemplate = """\n###\n.#.\n"""')
# the ear becomes the whiskers with an extra cell: whiskers appear in a dog
EAR_HAS_WHISKERS = DISTRACTORS.replace('[features.ear]\ntemplate = """\n#\n#\n"""',
                                       '[features.ear]\ntemplate = """\n#.#\n#.#\n#..\n"""')


@pytest.mark.parametrize("text", [EAR_IS_SNOUT, EAR_HAS_WHISKERS], ids=["snout", "whiskers"])
def test_forged_task_rejected(dist_cert, tmp_path, text):
    d, c = dist_cert
    assert text != DISTRACTORS
    (tmp_path / "distractors.toml").write_text(text)
    c = json.loads(json.dumps(c))
    c["task"]["sha256"] = task_sha256(load_task(tmp_path / "distractors.toml"))
    assert not _accepts(c, tmp_path)
    # and every procedure for the now-false claims is rejected too
    for proc in ("scene-search", "local-configuration"):
        c2 = json.loads(json.dumps(c))
        for o in _never(c2):
            o["discharged_by"] = {"procedure": proc}
        assert not _accepts(c2, tmp_path)


def test_edited_scene_never_cells_rejected(dist_cert, tmp_path):
    d, c = dist_cert
    (tmp_path / "distractors.toml").write_text(DISTRACTORS)
    t = load_task(tmp_path / "distractors.toml")
    for k, o in enumerate(_never(c)):
        g = t.feature(o["feature"])
        for ch, a, b, v in g.support():
            c2 = json.loads(json.dumps(c))
            ob = _never(c2)[k]
            ob["discharged_by"] = {"procedure": "uncoverable-cell", "cell": [ch, a, b]}
            cls = t.classes[t.class_index(ob["class"])]
            truly = cs.uncoverable(t, cls, g.name, [ch, a, b]) is None
            assert _accepts(c2, tmp_path) == truly, (ob, truly)


# -- the long tier: bigger sweeps of the same comparisons ----------------------------------------

@pytest.mark.slow
@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.one_of(random_task(), random_task(disjoint=True),
                 random_task(max_channels=2, max_features=5, max_scenes=300),
                 random_task(max_height=2, max_width=12, max_features=3, max_feature_side=2, max_scenes=800)))
def test_slow_cooccur_sweep(pair):
    _flat_agree(pair[1])


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 15))
def test_slow_hierarchical_sweep(seed):
    test_cooccur_new_matches_old_on_hierarchical_tasks(seed)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(random_task(max_height=10, max_width=10, max_features=6, max_feature_side=3, max_scenes=10**9))
def test_slow_cooccur_old_vs_new_large(pair):
    _flat_agree(pair[1], sizes=(1, 2), brute=False)


def test_head_rows_cache_sees_mutated_networks():
    """compositional's _interval_head caches the Dense rows by layer identity: after proving
    with one network, every single-weight mutation of the head (a new network by
    with_parameter) must get the verdict exhaustive enumeration gives."""
    from cnnproof.constructions.task_to_network import build_network
    from cnnproof.verifier import compositional, exhaustive
    from cnnproof.verifier.network import with_parameter
    from cnnproof.verifier.outcome import Question

    t = load_task(TASKS / "distractors.toml")
    net = build_network(t)
    Q = Question("zero_error")
    assert compositional.prove(t, net, Q).verdict == "PROVED"
    W = dict(net.parameters())["layers[1].weight"]
    seen = set()
    for k in range(W.size):
        for new in (Fraction(0), -W.ravel()[k], W.ravel()[k] + 5):
            m = with_parameter(net, "layers[1].weight", k, new)
            a = compositional.prove(t, m, Q).verdict
            b = exhaustive.prove(t, m, Q).verdict
            assert a in (b, "UNKNOWN"), (k, new, a, b)
            seen.add(b)
            assert compositional.prove(t, net, Q).verdict == "PROVED"  # and back: no stale rows
    assert "REFUTED" in seen


@pytest.fixture(scope="module")
def large_cert(tmp_path_factory):
    """A genuine certificate of a 12-class 28 x 28 bench/gen_tasks.py task (386 uncoverable
    cells, 8 local-configuration claims, one joint claim)."""
    import subprocess
    import sys

    d = tmp_path_factory.mktemp("c13large")
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_tasks.py"), "--classes", "12", "--size", "28",
                    "--seed", "0", "-o", str(d / "x.toml")], check=True, capture_output=True, timeout=120)
    r = subprocess.run([sys.executable, "-m", "cnnproof", "prove", str(d / "x.toml"), "--certificate", str(d / "C.json")],
                       capture_output=True, text=True, timeout=170)
    assert r.returncode == 0, r.stdout + r.stderr
    return d, json.loads((d / "C.json").read_text()), (d / "x.toml").read_text()


def _reason(cert, where):
    p = where / "forged.json"
    p.write_text(json.dumps(cert))
    try:
        r = check_certificate(p)
    except InputError as e:
        return False, str(e)
    return r.ok, r.reason


def test_large_certificate_claims_hold_under_the_old_encoding(large_cert, tmp_path):
    d, c, text = large_cert
    (tmp_path / "x.toml").write_text(text)
    ok, why = _reason(c, tmp_path)
    assert ok, why
    t = load_task(tmp_path / "x.toml")
    for o in c["obligations"]:
        cls = t.classes[t.class_index(o["class"])] if "class" in o and o["class"] else None
        if o["kind"] == "scene-never" and o["discharged_by"]["procedure"] != "uncoverable-cell":
            assert _old_cooccur(t, cls, [o["feature"]]) is None
        elif o["kind"] == "scene-joint-never":
            assert _old_cooccur(t, cls, o["features"]) is None


@pytest.mark.parametrize("edit", ["k4_shows_g2", "k1_shows_f16", "k9_shows_g1"])
def test_large_certificate_forged_task_rejected(large_cert, tmp_path, edit):
    """The task edited so that one local-configuration scene-never claim is false, its sha256
    recomputed: the checker must reject on that claim."""
    d, c, text = large_cert
    cls, feat = {"k4_shows_g2": ("k4", "g2"), "k1_shows_f16": ("k1", "f16"), "k9_shows_g1": ("k9", "g1")}[edit]
    head = f'[classes.{cls}]\nrequired = '
    assert head in text
    start = text.index(head)
    end = text.find("\n\n", start)
    end = len(text) if end < 0 else end
    block = text[start:end]
    if "distractors = [" in block:
        nb = block.replace('distractors = ["', f'distractors = ["{feat}", "')
    else:
        nb = block + f'\ndistractors = ["{feat}"]\nmax_distractors = 1'
    forged = text[:start] + nb + text[end:]
    (tmp_path / "x.toml").write_text(forged)
    t = load_task(tmp_path / "x.toml")
    k = t.classes[t.class_index(cls)]
    assert cs.can_cooccur(t, k, [feat]) and _old_cooccur(t, k, [feat]) is not None
    c2 = json.loads(json.dumps(c))
    c2["task"]["sha256"] = task_sha256(t)
    ok, why = _reason(c2, tmp_path)
    assert not ok
    assert "scene-never" in why and feat in why, why
