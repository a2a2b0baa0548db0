"""A second, independent verifier (Marabou) agrees with cnnproof on small tasks.

Stage: cross-semantics test (MODEL.md section 4 against an outside tool). Trusted: no.
``cnnproof export-vnnlib`` (``cnnproof.verifier.vnnlib``) writes the network as ONNX (float32,
GlobalMaxPool as a whole-map MaxPool) and one VNN-LIB query per scene; Marabou reads both through
its own parsers and answers each query: ``sat`` (a violating input in the scene's box) or
``unsat`` (none). The test asserts that the answers agree with cnnproof's exact verdict:

* per scene, with δ = 0: the exact gap ``min over c' of N_c - N_c'`` on the scene's only image
  (``index.json``) decides ``sat``/``unsat``; every scene whose gap is at least ``TOL`` = 10^-3
  away from the threshold (μ, or 0 for the strict claim) must get that answer. So PROVED => every
  such scene unsat, and REFUTED => the refuting scene sat (unless it is within TOL);
* with δ > 0 (no exact per-scene gap): PROVED with worst-case margin m >= threshold + TOL =>
  every scene unsat; REFUTED => the counterexample's scene sat when its gap is below the
  threshold by TOL, and so every scene whose base image already is;
* every ``sat`` answer's input lies in the scene's box (up to 10^-6: Marabou's tolerances) and,
  evaluated exactly by cnnproof, comes within 10^-4 of violating the claim (so Marabou read the
  pixels and logits in our order).

Cases: small catalogue tasks (strict and with margins, one with two channels, one with noise and
non-float32 weights), sampled +-1 and +-3 single-parameter mutants of the paper's network on the
two small tasks of test_mutation.py (many refuted), and tiny random tasks (tests/randtasks.py,
with noise and rational levels) with the paper's network and one mutant each. The default tier
runs four catalogue cases, MUTANTS_FAST mutants per task and RANDOM_TASKS_FAST random tasks; the
slow tier (``pytest -m slow``, docs/testing.md) the other catalogue cases, MUTANTS and
RANDOM_TASKS. A query on which
Marabou hangs is killed after QUERY_LIMIT CPU seconds of solving and retried with another
bound-tightening strategy (``verifier.vnnlib.MarabouRunner``: one warm worker process).

Marabou computes in floating point (its LP solver and bound propagation use doubles; the ONNX
weights are float32). Its answers are evidence, not proof: agreement away from the threshold is
what is asserted, scenes closer than TOL are skipped and counted.

Skipped when ``maraboupy`` (with onnx and onnxruntime) is not installed: ``pip install
'.[crosscheck]'``.
"""

from __future__ import annotations

import importlib
import random
import warnings
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module("maraboupy.Marabou")
        importlib.import_module("maraboupy.MarabouNetworkONNX")  # needs onnx and onnxruntime
except ImportError as e:  # pragma: no cover - depends on the environment
    pytest.skip(f"maraboupy is not installed (pip install '.[crosscheck]'): {e}", allow_module_level=True)

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from randtasks import random_task
from test_mutation import BINARY, THREE, task_text

from cnnproof.constructions.scenes import base_image
from cnnproof.constructions.task import load_task, task_from_toml
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier.network import with_parameter
from cnnproof.verifier.outcome import Proved, Question, Refuted
from cnnproof.verifier.prove import prove
from cnnproof.verifier.vnnlib import INDEX_FILE, MarabouRunner, export, index_text, marabou_check

ROOT = Path(__file__).resolve().parent.parent

TOL = Fraction(1, 1000)  # skip scenes whose exact gap is this close to the threshold
EVAL_TOL = 1e-4  # a sat input, evaluated exactly, violates the claim up to this much
BOX_TOL = 1e-6  # a sat input lies in the box up to this much (Marabou's values are ~1e-9 off)
MUTANTS = 24  # mutated networks per mutation task (the slow tier)
MUTANTS_FAST = 6  # ... in the default tier
RANDOM_TASKS = 10  # random tasks (the slow tier)
RANDOM_TASKS_FAST = 3  # ... in the default tier
QUERY_LIMIT = 1.5  # CPU seconds of solving per Marabou query before it is killed and retried with
# another strategy (Marabou can hang and ignore its own timeout); these take at most ~0.3 s. The
# warm worker's start-up and its reading of the network are not counted (MarabouRunner)


@pytest.fixture(scope="module")
def runner():
    with MarabouRunner(limit=QUERY_LIMIT) as r:
        yield r


def crosscheck(runner, task, net, margin, folder, every: int = 1) -> Counter:
    """Export, run Marabou on every ``every``-th scene, assert agreement; return a tally."""
    q = Question("zero_error", margin)
    thr = Fraction(0) if margin is None else margin
    ex = export(task, net, folder, margin=margin)
    v = prove(task, net, q, method="exhaustive" if task.noise == 0 else "auto")
    assert isinstance(v, (Proved, Refuted)), v
    chosen = ex.queries[::every]
    answers = {a.file: a for a in marabou_check(folder, [sq.file for sq in chosen], runner=runner)}
    by_scene = {tuple(sorted(sq.scene)): sq for sq in ex.queries}
    tally: Counter = Counter()

    expect: dict[str, str] = {}  # file -> the answer cnnproof's exact arithmetic implies
    if task.noise == 0:
        for sq in ex.queries:
            gap = sq.worst_gap
            if abs(gap - thr) < TOL:
                tally["skipped: within 1e-3 of the threshold"] += 1
                continue
            expect[sq.file] = "unsat" if q.holds_for(gap) else "sat"
        # cnnproof's own verdict is the conjunction of the per-scene gaps
        assert isinstance(v, Proved) == all(q.holds_for(sq.worst_gap) for sq in ex.queries)
    elif isinstance(v, Proved) and v.margin is not None and v.margin - thr >= TOL:
        expect = {sq.file: "unsat" for sq in ex.queries}
    else:
        for sq in ex.queries:  # a base image in the box already violates: sat
            if sq.base_gap <= thr - TOL:
                expect[sq.file] = "sat"
        tally["skipped: noisy, no exact per-scene gap"] += len(ex.queries) - len(expect)
    if isinstance(v, Refuted):
        cex = v.counterexample
        c, o = task.class_index(cex.cls), task.class_index(cex.other)
        sq = by_scene[tuple(sorted(cex.scene))]
        if cex.logits[c] - cex.logits[o] <= thr - TOL:
            assert expect.get(sq.file, "sat") == "sat"
            expect[sq.file] = "sat"
            if sq.file not in answers:  # the refuting scene is always asked
                answers.update({a.file: a for a in marabou_check(folder, [sq.file], runner=runner)})
            tally["refuting scene checked"] += 1

    for sq in ex.queries:
        a = answers.get(sq.file)
        if a is None:
            continue
        assert a.result in ("sat", "unsat"), f"Marabou answered {a.result} on {sq.file} (killed: {a.hung})"
        tally["hung, retried"] += bool(a.hung)
        tally[a.result] += 1
        if sq.file in expect:
            assert a.result == expect[sq.file], (
                f"{task.name}: Marabou says {a.result} on {sq.file} (class {task.classes[sq.cls].name}, "
                f"scene {sq.scene}), cnnproof's exact arithmetic implies {expect[sq.file]} "
                f"(base gap {sq.base_gap}, threshold {thr}, verdict {v.verdict})")
            tally["agreed"] += 1
        if a.result == "sat":
            _check_sat(task, net, q, sq, a)
    return tally


def _check_sat(task, net, q, sq, a) -> None:
    """Marabou's violating input is in the box and violates the claim on the exact network."""
    base = base_image(task, sq.scene).ravel()
    d = float(task.noise)
    assert len(a.x) == base.size
    for xi, b in zip(a.x, base):
        assert float(b) - d - BOX_TOL <= xi <= float(b) + d + BOX_TOL, (sq.file, xi, b)
    img = np.array([Fraction(xi) for xi in a.x], dtype=object).reshape(task.channels, task.height, task.width)
    logits = net.evaluate(img)
    gap = min(logits[sq.cls] - logits[o] for o in range(len(logits)) if o != sq.cls)
    thr = 0 if q.margin is None else q.margin
    assert float(gap - thr) <= EVAL_TOL, (sq.file, float(gap), a.y)


def _task(name):
    return load_task(ROOT / "proofs" / "tasks" / f"{name}.toml")


# ---------------------------------------------------------------------------------------------
# The catalogue's small tasks
# ---------------------------------------------------------------------------------------------

SLOW = pytest.mark.slow  # a case of the slow tier only (docs/testing.md)
CATALOGUE = [
    # (task, margin, every k-th scene asked, cnnproof's verdict[, marks])
    ("stride_region", None, 1, "PROVED"),
    ("stride_region", Fraction(3, 2), 1, "REFUTED"),  # margin 1 < 3/2: every scene sat
    ("contained", Fraction(1, 2), 1, "REFUTED"),  # ill-posed: ties (gap 0) on some scenes
    ("background", Fraction(1, 2), 1, "REFUTED", SLOW),
    ("distractors", None, 1, "PROVED", SLOW),
    # two channels: X_i in C,H,W order; 1 scene in 2 (by default, test_marabou_general's
    # channels cases check the order)
    ("channels", None, 2, "PROVED", SLOW),
    ("mixed_sizes", Fraction(1, 2), 1, "PROVED", SLOW),
    ("levels_noise", Fraction(1, 2), 17, "PROVED"),  # noise 1/10, non-float32 weights; 1 scene in 17
]


@pytest.mark.parametrize("name,margin,every,verdict", [pytest.param(*c[:4], marks=c[4:]) for c in CATALOGUE],
                         ids=[f"{c[0]}-{'strict' if c[1] is None else c[1]}" for c in CATALOGUE])
def test_catalogue_agrees(runner, tmp_path, name, margin, every, verdict):
    task = _task(name)
    tally = crosscheck(runner, task, build_network(task), margin, tmp_path / "x", every)
    print(f"\n{name}: {dict(tally)}")
    assert tally["agreed"] > 0
    if verdict == "REFUTED":
        assert tally["sat"] > 0 and tally["refuting scene checked"] == 1
    else:
        assert tally["sat"] == 0


# ---------------------------------------------------------------------------------------------
# Mutated networks that cnnproof refutes (and some it proves)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [BINARY, THREE], ids=["binary", "three-levels"])
def test_mutants_agree(runner, tmp_path, spec):
    _mutants_agree(runner, tmp_path, spec, MUTANTS_FAST)


@pytest.mark.slow
@pytest.mark.parametrize("spec", [BINARY, THREE], ids=["binary", "three-levels"])
def test_mutants_agree_full(runner, tmp_path, spec):
    _mutants_agree(runner, tmp_path, spec, MUTANTS)


def _mutants_agree(runner, tmp_path, spec, n: int) -> None:
    """``n`` sampled +-1 and +-3 mutants of the paper's network on the task ``spec``."""
    task = task_from_toml(task_text(spec))
    net = build_network(task)
    q = Question("zero_error")
    total: Counter = Counter()
    # +-1 mostly makes ties (gap 0: skipped), +-3 makes strict errors; a fixed sample of
    # n of them, half of each (every parameter of the three-level network would take a minute)
    chosen = []
    for ds in ((1, -1), (3, -3)):
        every = [(path, i, d) for path, arr in net.parameters() for i in range(arr.size) for d in ds]
        chosen += random.Random(0).sample(every, min(n // 2, len(every)))
    refuted = 0
    for k, (path, i, d) in enumerate(chosen):
        old = dict(net.parameters())[path].ravel()[i]
        m = with_parameter(net, path, i, old + d)
        v = prove(task, m, q, method="exhaustive")
        refuted += isinstance(v, Refuted)
        total += crosscheck(runner, task, m, None, tmp_path / f"m{k}")
    print(f"\n{spec['levels']}: {len(chosen)} mutants, {refuted} refuted: {dict(total)}")
    assert refuted > 0 and total["refuting scene checked"] > 0 and total["sat"] > 0


# ---------------------------------------------------------------------------------------------
# Tiny random tasks, the paper's network and one mutant each
# ---------------------------------------------------------------------------------------------


def _random_case_settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    phases=(Phase.explicit, Phase.generate),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


RANDOM_CASE = dict(
    pair=random_task(max_height=5, max_width=5, max_features=3, max_feature_side=2, max_scenes=40, disjoint=True),
    pick=st.integers(0, 10_000), delta=st.sampled_from([1, -1, Fraction(1, 2)]),
    margin=st.sampled_from([None, Fraction(1, 2)]))


@_random_case_settings(RANDOM_TASKS_FAST)
@given(**RANDOM_CASE)
def test_random_tasks_agree(runner, tmp_path_factory, pair, pick, delta, margin):
    _random_task_agrees(runner, tmp_path_factory, pair, pick, delta, margin)


@pytest.mark.slow
@_random_case_settings(RANDOM_TASKS)
@given(**RANDOM_CASE)
def test_random_tasks_agree_full(runner, tmp_path_factory, pair, pick, delta, margin):
    _random_task_agrees(runner, tmp_path_factory, pair, pick, delta, margin)


def _random_task_agrees(runner, tmp_path_factory, pair, pick, delta, margin) -> None:
    """A random task: the paper's network and one mutant of it."""
    _, task = pair
    net = build_network(task)
    crosscheck(runner, task, net, margin, tmp_path_factory.mktemp("r"))
    params = list(net.parameters())
    path, arr = params[pick % len(params)]
    i = (pick // len(params)) % arr.size
    mutant = with_parameter(net, path, i, arr.ravel()[i] + delta)
    crosscheck(runner, task, mutant, margin, tmp_path_factory.mktemp("r"))


def test_index_lists_every_query(tmp_path):
    """The index names the ONNX file and one query per scene, with the exact gap (δ = 0)."""
    import json

    task = _task("stride_region")
    ex = export(task, build_network(task), tmp_path / "x")
    idx = json.loads((tmp_path / "x" / INDEX_FILE).read_text())
    assert idx == json.loads(index_text(ex.index))
    assert len(idx["scenes"]) == idx["scenes_total"] == 98
    assert all((tmp_path / "x" / e["vnnlib"]).is_file() and e["worst_gap"] == "1" for e in idx["scenes"])
    assert (tmp_path / "x" / idx["onnx"]).is_file()
