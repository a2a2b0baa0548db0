"""Cross-semantics: every prover agrees with brute force on random small tasks.

Over random small tasks (tests/randtasks.py covers every rule of MODEL.md sections 1-3): N_FAST
(derandomized: the same ones on every run) in the default tier, 200 in the slow tier (``pytest -m
slow``, docs/testing.md):

* well-posedness: exhaustive == smt == the naive enumerator of tests/naive.py;
* zero error of the paper's network or of a random one-parameter mutant of it:
  - δ = 0: exhaustive == smt == naive brute force (exact worst-case margin too);
  - δ > 0: exhaustive says it does not apply; smt agrees with a per-scene check of the noise box
    (tests/plain_smt.py, a separate encoding) on every scene, or on a sample of scenes for larger
    tasks plus the scene of smt's counterexample; falsification at the box corners never finds
    a violation that smt missed;
* every counterexample re-checks by exact evaluation.

The counts of ill-posed tasks and refuted networks are printed and asserted (>= 1/4 each), per
tier, and so are noisy tasks, well-posed ones, proved networks and mutants.
"""

from __future__ import annotations

import random
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from naive import naive_min_margin, naive_scenes, naive_wellposed
from plain_smt import scene_violation
from randtasks import random_task

from cnnproof.constructions.scenes import base_image, enumerate_scenes
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier import compositional, exhaustive, falsify, smt
from cnnproof.verifier.errors import NotApplicable
from cnnproof.verifier.network import with_parameter
from cnnproof.verifier.outcome import Proved, Question, Refuted
from cnnproof.verifier.recheck import problem

N_EXAMPLES = 200  # the slow tier
N_FAST = 20  # the default tier (about 20 s on 2 loaded cores)
COUNTS: dict[str, Counter] = {"fast": Counter(), "full": Counter()}


def _mutant(net, data):
    """The paper's network, or (half the time) one parameter changed by +-1 or set to 0."""
    if not data.draw(st.booleans(), label="mutate"):
        return net, None
    params = list(net.parameters())
    path, arr = params[data.draw(st.integers(0, len(params) - 1), label="param")]
    k = data.draw(st.integers(0, arr.size - 1), label="index")
    change = data.draw(st.sampled_from(["+1", "-1", "0"]), label="change")
    old = arr.ravel()[k]
    new = old + 1 if change == "+1" else old - 1 if change == "-1" else Fraction(0)
    return with_parameter(net, path, k, new), (path, k, change)


def _same(a, b) -> bool:
    return type(a) is type(b)


TASKS = st.integers(0, 2).flatmap(lambda k: random_task(disjoint=k > 0))


@settings(max_examples=N_FAST, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(TASKS, st.data())
def test_provers_agree_with_brute_force(pair, data):
    agree(pair, data, COUNTS["fast"])


@pytest.mark.slow
@settings(max_examples=N_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(TASKS, st.data())
def test_provers_agree_with_brute_force_full(pair, data):
    agree(pair, data, COUNTS["full"])


def agree(pair, data, counts: Counter) -> None:
    """Every prover against brute force on one random task (module docstring); tallies counts."""
    text, task = pair
    counts["tasks"] += 1
    # -- well-posedness ---------------------------------------------------------------------
    qw = Question("wellposed")
    truth = naive_wellposed(task)
    ex = exhaustive.prove(task, None, qw)
    sm = smt.prove(task, None, qw)
    co = compositional.prove(task, None, qw, fallback=False)
    assert isinstance(ex, Proved) == truth, text
    assert isinstance(sm, Proved) == truth, text
    assert co.verdict == ("PROVED" if truth else "REFUTED"), (text, co)
    for v in (ex, sm, co):
        if isinstance(v, Refuted):
            assert problem(task, None, qw, v.counterexample) is None
    counts["ill-posed" if not truth else "well-posed"] += 1

    # -- zero error -------------------------------------------------------------------------
    net, mutation = _mutant(build_network(task), data)
    margin = data.draw(st.sampled_from([None, None, Fraction(1), Fraction(1, 2)]), label="margin")
    qz = Question("zero_error", margin)
    sm = smt.prove(task, net, qz)
    assert not isinstance(sm, type(None))
    assert sm.verdict in ("PROVED", "REFUTED"), (text, sm)
    if isinstance(sm, Refuted):
        assert problem(task, net, qz, sm.counterexample) is None
    co = compositional.prove(task, net, qz)
    assert co.verdict == sm.verdict, (text, mutation, co, sm)
    if isinstance(co, Refuted):
        assert problem(task, net, qz, co.counterexample) is None
    if co.method != "compositional":
        counts["compositional fallbacks" + (" (paper's network)" if mutation is None else " (mutant)")] += 1
    if mutation is None:
        assert co.method == "compositional", (text, co.details)  # never falls back on the paper's network
    if task.noise == 0:
        worst = naive_min_margin(task, net.evaluate)
        ex = exhaustive.prove(task, net, qz)
        assert qz.holds_for(worst) == isinstance(ex, Proved), (text, mutation, worst, ex)
        assert qz.holds_for(worst) == isinstance(sm, Proved), (text, mutation, worst, sm)
        if isinstance(ex, Proved):
            assert ex.margin == worst
            if isinstance(co, Proved) and co.margin is not None:
                assert co.margin == worst
        else:
            assert problem(task, net, qz, ex.counterexample) is None
            assert ex.details["worst_margin"] == worst
    else:
        with pytest.raises(NotApplicable):
            exhaustive.prove(task, net, qz)
        counts["noisy"] += 1
        scenes = [(c, s) for c, cls in enumerate(task.classes) for s in enumerate_scenes(task, cls)]
        if len(scenes) > 24:
            rng = random.Random(len(scenes))
            scenes = rng.sample(scenes, 12)
        if isinstance(sm, Refuted):
            cex = sm.counterexample
            scenes.append((task.class_index(cex.cls), cex.scene))
        found = [scene_violation(net, base_image(task, s), c, task.noise, margin) for c, s in scenes]
        if isinstance(sm, Proved):
            assert all(f is None for f in found), (text, mutation)
        else:
            assert found[-1] is not None, (text, mutation)  # the counterexample's own scene
        corner = falsify.falsify(task, net, qz, seed=1, per_class=8)
        if corner is not None:
            assert isinstance(sm, Refuted), (text, mutation)
    counts["refuted" if isinstance(sm, Refuted) else "proved"] += 1
    counts["mutants"] += mutation is not None


def _counts(tier: str, n: int) -> None:
    counts = COUNTS[tier]
    if counts["tasks"] < n:
        pytest.skip("the agreement test of this tier did not run in this session")
    print(f"\nagreement counts ({tier}):", dict(counts))
    assert counts["ill-posed"] >= counts["tasks"] / 4, counts
    assert counts["refuted"] >= counts["tasks"] / 4, counts
    assert counts["noisy"] >= counts["tasks"] / 20, counts
    assert min(counts["well-posed"], counts["proved"], counts["mutants"]) >= 1, counts


def test_agreement_counts():
    """The random tasks of the default tier really exercised both outcomes and noise (runs after
    the test above)."""
    _counts("fast", N_FAST)


@pytest.mark.slow
def test_agreement_counts_full():
    """The same for the slow tier's 200 tasks."""
    _counts("full", N_EXAMPLES)
