"""Agreement of the general compositional engine (configuration lemmas) with brute force.

Issue 9 item 3. Over random small tasks (tests/randtasks.py, noise-free and noisy; derandomized:
the same ones on every run; N_FAST in the default tier, N_FULL in the slow tier), each task gets
six networks of the general form Head ∘ GlobalMax ∘ L (tests/general_nets.py):

* ``random``: random small rational weights, conv k×k -> ReLU -> [max pool] -> [conv -> ReLU];
* ``strided``: the same with a stride-2 first convolution (``GeneralConv2d``);
* ``affine``: the same with a per-channel affine layer after the first convolution;
* ``deep``: the paper's network with a 2×2 max pool and an identity 1×1 conv + ReLU inserted
  before the global pooling (the same function: checked);
* ``perturbed``: ``deep`` of the paper's network with one parameter changed by ±1 or set to 0;
* ``padded``: ``random`` with padding (a padded first convolution, SAME or one-sided, and when
  drawn a padded max pool and a padded second convolution), or the paper's network with its
  detectors padded (border windows see partial features), chosen from a seed (the task's
  text), so that the other kinds' examples are those of the other kinds alone; on noise-free
  tasks only in the default tier (its z3 references on noisy ones cost ~150 s), on all in the slow tier.

``compositional.prove(..., fallback=False)`` on each is compared with the truth:

* δ = 0: the naive enumerator (tests/naive.py) and ``exhaustive``; PROVED must be true, REFUTED
  false, a PROVED margin is the exact worst margin, ``margin_lower_bound`` is <= it;
* δ > 0: ``smt`` and a per-scene z3 check of the noise box (``general_nets.scene_violation``, a
  separate encoding): when smt proves, on every scene or a sample of 4; when it refutes, on the
  scenes of smt's and compositional's counterexamples;
* every counterexample re-checks by exact evaluation (``recheck.problem``).

UNKNOWN is allowed but counted: the counts per network kind are printed and UNKNOWN must stay
at or below 20 % of the cases (issue 9's target is 5 %: not met yet). A mutation test decides single-parameter mutants of ``deep``
networks for fixed tasks of proofs/tasks in agreement with ``exhaustive``.
"""

from __future__ import annotations

import random
import time
import zlib
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from general_nets import all_mutations, deepen, mutate, padded_seeded, perturb, random_local, scene_violation
from naive import naive_min_margin
from randtasks import random_task

from cnnproof.constructions.scenes import base_image, enumerate_scenes
from cnnproof.constructions.task import load_task
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier import compositional, exhaustive, smt
from cnnproof.verifier.configurations import local_decompose
from cnnproof.verifier.outcome import Proved, Question, Refuted, Unknown
from cnnproof.verifier.recheck import problem

N_FAST = 40  # the default tier
N_FULL = 300  # the slow tier
KINDS = ("random", "strided", "affine", "deep", "perturbed", "padded")
COUNTS: dict[str, Counter] = {"fast": Counter(), "full": Counter()}
TIMES: dict[str, Counter] = {"fast": Counter(), "full": Counter()}
UNKNOWNS: dict[str, list] = {"fast": [], "full": []}
ROOT = Path(__file__).resolve().parent.parent

TASKS = st.integers(0, 2).flatmap(lambda k: random_task(disjoint=k > 0))


def networks(data, task):
    """(kind, network, description) for the first five kinds of the module docstring."""
    paper = build_network(task)
    out = []
    for kind, kw in (("random", {}), ("strided", {"strided": True}), ("affine", {"affine": True})):
        net, desc = random_local(data, task, **kw)
        out.append((kind, net, desc))
    out.append(("deep", deepen(paper), "deepened paper's network"))
    net, mutation = perturb(data, paper)
    out.append(("perturbed", net, f"deepened mutant {mutation}"))
    return paper, out


@settings(max_examples=N_FAST, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(TASKS, st.data())
def test_general_engine_agrees_with_brute_force(pair, data):
    agree(pair, data, "fast")


@pytest.mark.slow
@settings(max_examples=N_FULL, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(TASKS, st.data())
def test_general_engine_agrees_with_brute_force_full(pair, data):
    agree(pair, data, "full")


def _scenes(task):
    scenes = [(c, s) for c, cls in enumerate(task.classes) for s in enumerate_scenes(task, cls)]
    if len(scenes) > 6:
        scenes = random.Random(len(scenes)).sample(scenes, 4)
    return scenes


def agree(pair, data, tier: str) -> None:
    """Every network of every kind against brute force on one random task (module docstring)."""
    text, task = pair
    counts, times = COUNTS[tier], TIMES[tier]
    counts["tasks"] += 1
    counts["noisy tasks"] += task.noise != 0
    paper, nets = networks(data, task)
    margin = data.draw(st.sampled_from([None, None, Fraction(1), Fraction(1, 2)]), label="margin")
    # seeded from the task, not drawn: the other kinds' hypothesis draws (and examples) stay as they were
    nets.append(("padded", *padded_seeded(zlib.crc32(text.encode()), task, paper)))
    q = Question("zero_error", margin)
    paper_worst = naive_min_margin(task, paper.evaluate) if task.noise == 0 else None
    for kind, net, desc in nets:
        if kind == "padded" and task.noise and tier == "fast":
            continue  # smt and the per-scene z3 check of padded stacks cost ~150 s on the default tier's noisy tasks
        where = (text, kind, desc, q)
        assert not isinstance(local_decompose(net), str), where  # the general engine's form
        assert isinstance(compositional.decompose(net), str), where  # not the paper's special case
        t0 = time.perf_counter()
        co = compositional.prove(task, net, q, fallback=False)
        times[kind] += time.perf_counter() - t0
        assert co.method == "compositional", (where, co)
        counts[(kind, co.verdict)] += 1
        if isinstance(co, Refuted):
            assert problem(task, net, q, co.counterexample) is None, (where, co)
        if task.noise == 0:
            worst = naive_min_margin(task, net.evaluate)
            if kind == "deep":
                assert worst == paper_worst, where  # deepening keeps the function
            truth = q.holds_for(worst)
            ex = exhaustive.prove(task, net, q)
            assert isinstance(ex, Proved) == truth, (where, worst, ex)
            if isinstance(co, Proved):
                assert truth, ("SOUNDNESS: PROVED but the worst margin is", worst, where, co)
                if co.margin is not None:
                    assert co.margin == worst, (where, worst, co)
            elif isinstance(co, Refuted):
                assert not truth, (where, worst, co)
            if isinstance(co, Unknown):
                UNKNOWNS[tier].append((kind, desc, f"truth {ex.verdict}, worst margin {worst}", co.reason, text))
            lb = co.details.get("margin_lower_bound")
            if lb is not None:
                assert lb <= worst, (where, worst, co)
        else:
            sm = smt.prove(task, net, q)
            assert sm.verdict in ("PROVED", "REFUTED"), (where, sm)
            if isinstance(co, Unknown):
                UNKNOWNS[tier].append((kind, desc, f"truth (smt) {sm.verdict}", co.reason, text))
            if isinstance(sm, Refuted):
                assert problem(task, net, q, sm.counterexample) is None, (where, sm)
            if isinstance(co, Proved):
                assert isinstance(sm, Proved), ("SOUNDNESS: PROVED but smt refutes", where, co, sm)
            elif isinstance(co, Refuted):
                assert isinstance(sm, Refuted), (where, co, sm)
            # a sample of scenes when smt proves, the counterexamples' scenes when it refutes
            cexs = [v.counterexample for v in (sm, co) if isinstance(v, Refuted)]
            scenes = _scenes(task) if isinstance(sm, Proved) else [(task.class_index(x.cls), x.scene) for x in cexs]
            found = [scene_violation(net, base_image(task, s), c, task.noise, q.margin) for c, s in scenes]
            if isinstance(sm, Proved):
                assert all(f is None for f in found), (where, sm)
            else:
                assert all(f is not None for f in found), (where, sm, co)


def _report(tier: str, n: int) -> None:
    counts = COUNTS[tier]
    if counts["tasks"] < n:
        pytest.skip("the agreement test of this tier did not run in this session")
    print(f"\ngeneral engine agreement ({tier}): {counts['tasks']} tasks, {counts['noisy tasks']} noisy")
    for kind in KINDS:
        row = {v: counts[(kind, v)] for v in ("PROVED", "REFUTED", "UNKNOWN")}
        print(f"  {kind:10s} {row}  compositional {TIMES[tier][kind]:.2f} s")
    for u in UNKNOWNS[tier]:
        print("  unknown:", u[:4])
    if UNKNOWNS[tier]:
        print("the first unknown's task:\n" + UNKNOWNS[tier][0][4])
    cases = sum(counts[(k, v)] for k in KINDS for v in ("PROVED", "REFUTED", "UNKNOWN"))
    unknown = sum(counts[(k, "UNKNOWN")] for k in KINDS)
    # issue 9's target is 5 %; measured 14 % on the default tier (UNKNOWN falls on the deepened paper's
    # networks whose channels are high only in configurations that never occur together: the box head
    # lemma; docs/configurations.md, "Limits"). This bound keeps the rate from growing.
    print(f"  UNKNOWN: {unknown} of {cases} cases ({100 * unknown / max(cases, 1):.0f} %)")
    assert unknown <= cases / 5, (unknown, cases)
    assert sum(counts[(k, "PROVED")] for k in KINDS) >= 1, counts
    assert sum(counts[(k, "REFUTED")] for k in KINDS) >= 1, counts


def test_general_engine_counts():
    """Both verdicts occur and UNKNOWN stays at or below 20 % (runs after the test above; the target is 5 %)."""
    _report("fast", N_FAST)


@pytest.mark.slow
def test_general_engine_counts_full():
    _report("full", N_FULL)


# ---------------------------------------------------------------------------------------------
# Mutation: single-parameter mutants of deepened paper's networks
# ---------------------------------------------------------------------------------------------

MUTATION_TASKS = ("touching.toml", "mixed_sizes.toml", "distractors.toml", "channels.toml")
SAMPLE = 32  # mutants in the default tier (all in the slow tier)


def _mutants(sample: int | None):
    out = []
    for name in MUTATION_TASKS:
        task = load_task(ROOT / "proofs" / "tasks" / name)
        paper = build_network(task)
        muts = all_mutations(paper)
        if sample is not None:
            muts = random.Random(name).sample(muts, min(len(muts), sample // len(MUTATION_TASKS)))
        out += [(name, task, paper, m) for m in muts]
    return out


def mutation_run(sample: int | None) -> None:
    counts: Counter = Counter()
    unknown = []
    for name, task, paper, (path, k, change) in _mutants(sample):
        net = deepen(mutate(paper, path, k, change))
        where = (name, path, k, change)
        ex = exhaustive.prove(task, net, Question("zero_error"))
        co = compositional.prove(task, net, Question("zero_error"), fallback=False)
        assert co.method == "compositional", (where, co)
        counts[(ex.verdict, co.verdict)] += 1
        if isinstance(co, Unknown):
            unknown.append((where, co.reason))
            continue
        assert co.verdict == ex.verdict, (where, ex, co)
        if isinstance(co, Refuted):
            assert problem(task, net, Question("zero_error"), co.counterexample) is None, where
        if isinstance(co, Proved) and co.margin is not None:
            assert co.margin == ex.margin, (where, ex, co)
    print("\nmutants (exhaustive, compositional):", dict(counts))
    for u in unknown:
        print("  unknown:", u)
    total = sum(counts.values())
    assert len(unknown) <= total / 10, (unknown, total)
    assert sum(v for (e, _), v in counts.items() if e == "REFUTED") >= 1, counts


def test_deep_mutants_agree_with_exhaustive():
    mutation_run(SAMPLE)


@pytest.mark.slow
def test_deep_mutants_agree_with_exhaustive_full():
    mutation_run(None)
