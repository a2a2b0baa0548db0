"""Mutation: a verifier that cannot refute is worthless.

For small tasks, every single weight or bias of the built network is changed by +1 and by -1
(in the slow tier; by default SAMPLE parameters of each array),
and, separately, every single template cell of the task is changed (to every other level and
to '*') while the old network is kept. Each mutant gets from both provers the verdict that
brute force (tests/naive.py) gives; every counterexample re-checks by exact evaluation; and at
least one mutant per parameterised layer is refuted.
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest

from naive import naive_min_margin

from cnnproof.constructions.task import task_from_toml
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier import exhaustive, smt
from cnnproof.verifier.errors import InputError
from cnnproof.verifier.network import with_parameter
from cnnproof.verifier.outcome import Proved, Question, Refuted
from cnnproof.verifier.recheck import problem

BINARY = {"levels": "[0, 1]", "size": 5, "a": ["11", "10"], "b": ["01", "11"]}
THREE = {"levels": "[0, 1, 2]", "size": 4, "a": ["21", "1*"], "b": ["02", "20"]}


def task_text(spec, a=None, b=None) -> str:
    a = a or spec["a"]
    b = b or spec["b"]
    n = spec["size"]
    ta, tb = "\\n".join(a), "\\n".join(b)
    return f"""
[canvas]
height = {n}
width = {n}
[pixels]
levels = {spec['levels']}
[features.a]
template = "{ta}"
[features.b]
template = "{tb}"
[classes.x]
required = ["a"]
[classes.y]
required = ["b"]
"""


def _judge(task, net, q, tally, key):
    worst = naive_min_margin(task, net.evaluate)
    truth = q.holds_for(worst)
    for prover in (exhaustive, smt):
        v = prover.prove(task, net, q)
        assert isinstance(v, Proved) == truth, (key, prover.__name__, worst, v)
        if isinstance(v, Refuted):
            assert problem(task, net, q, v.counterexample) is None, key
    tally[(key, truth)] += 1
    return truth


SAMPLE = 2  # the default tier: this many parameters of each weight and bias array (+1 and -1)


def _parameter_mutants(spec, per_array: int | None) -> None:
    """Every parameter (``per_array`` None) or a fixed sample of ``per_array`` parameters of
    each array, changed by +1 and by -1; both provers against brute force on each mutant."""
    import random

    task = task_from_toml(task_text(spec))
    net = build_network(task)
    q = Question("zero_error")
    assert _judge(task, net, q, Counter(), "original")
    tally: Counter = Counter()
    for path, arr in net.parameters():
        ks = range(arr.size)
        if per_array is not None and per_array < arr.size:
            ks = sorted(random.Random(path).sample(ks, per_array))
        for k in ks:
            for delta in (1, -1):
                m = with_parameter(net, path, k, arr.ravel()[k] + delta)
                _judge(task, m, q, tally, path)
    layers = {p for p, _ in net.parameters()}
    refuted_layers = {p for (p, ok), n in tally.items() if not ok and n}
    print(f"\n{spec['levels']}: {sum(tally.values())} mutants, refuted per parameter:",
          {p: tally[(p, False)] for p in sorted(layers)})
    # every layer with parameters has a refuted mutant
    layer_of = lambda p: p.rsplit(".", 1)[0]  # noqa: E731
    assert {layer_of(p) for p in layers} == {layer_of(p) for p in refuted_layers}


@pytest.mark.parametrize("spec", [BINARY, THREE], ids=["binary", "three-levels"])
def test_sampled_parameter_mutants(spec):
    _parameter_mutants(spec, SAMPLE)


@pytest.mark.slow
@pytest.mark.parametrize("spec", [BINARY, THREE], ids=["binary", "three-levels"])
def test_every_parameter_mutant(spec):
    _parameter_mutants(spec, None)


@pytest.mark.parametrize("spec", [BINARY, THREE], ids=["binary", "three-levels"])
def test_every_template_cell_mutant(spec):
    task0 = task_from_toml(task_text(spec))
    net = build_network(task0)  # the old network is kept
    q = Question("zero_error")
    symbols = [c for c in "012"[: len(task0.levels)]] + ["*"]
    tally: Counter = Counter()
    for feat in ("a", "b"):
        rows = spec[feat]
        for r in range(len(rows)):
            for col in range(len(rows[r])):
                for s in symbols:
                    if s == rows[r][col]:
                        continue
                    new = [row[:col] + s + row[col + 1:] if i == r else row for i, row in enumerate(rows)]
                    try:
                        task = task_from_toml(task_text(spec, **{feat: new}))
                    except InputError:
                        tally["invalid"] += 1
                        continue
                    _judge(task, net, q, tally, "cell")
                    # the well-posedness verdicts agree too
                    qw = Question("wellposed")
                    v1, v2 = exhaustive.prove(task, None, qw), smt.prove(task, None, qw)
                    assert type(v1) is type(v2), (feat, new)
    print("\ntemplate-cell mutants:", dict(tally))
    assert tally[("cell", False)] > 0  # some mutants are refuted
