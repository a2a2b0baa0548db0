"""Networks outside the compositional form (what ONNX import produces: padded or strided
convolutions, max pooling with a window, elementwise affine layers) are decided by the
general provers, and the provers agree with brute force.

Random small tasks (tests/randtasks.py); the paper's network is rewritten with the new layer
kinds (zero padding, an affine map after a ReLU, a windowed max pool before the global one) and
sometimes mutated. Brute force (tests/naive.py over exact evaluation), ``exhaustive`` and
``smt`` (an independent z3 encoding of every layer kind) must agree, the exact worst-case
margin included; ``auto`` must not claim the compositional form; every counterexample
re-checks. The JSON format round-trips each network. FAST_EXAMPLES tasks by default,
SLOW_EXAMPLES in the slow tier (docs/testing.md).
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from naive import naive_min_margin
from randtasks import random_task

from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier import compositional, exhaustive, smt
from cnnproof.verifier.exact import fraction_array
from cnnproof.verifier.network import (
    Affine,
    Conv2d,
    GeneralConv2d,
    GlobalMaxPool,
    MaxPool,
    Network,
    Parallel,
    ReLU,
    network_from_json,
    network_to_json,
    with_parameter,
)
from cnnproof.verifier.outcome import Proved, Question, Refuted
from cnnproof.verifier.prove import prove
from cnnproof.verifier.recheck import problem

COUNTS: dict[str, Counter] = {"fast": Counter(), "full": Counter()}  # per tier


def _rewrite(layers, data, shape):
    out = []
    for layer in layers:
        if isinstance(layer, Conv2d) and data.draw(st.booleans(), label="pad"):
            p = data.draw(st.integers(0, 1), label="pads")
            layer = GeneralConv2d(layer.weight, layer.bias, (1, 1), (p, 0, 0, p), (1, 1))
        elif isinstance(layer, GlobalMaxPool) and len(shape) == 3 and min(shape[1:]) >= 2 and data.draw(st.booleans(), label="mp"):
            mp = MaxPool((2, 2), (1, 1), (0, 0, 0, 0), (1, 1))
            out.append(mp)
            shape = mp.out_shape(shape)
        elif isinstance(layer, Parallel):
            layer = Parallel(tuple(_rewrite(b, data, shape) for b in layer.branches))
        out.append(layer)
        shape = layer.out_shape(shape)
        if isinstance(layer, ReLU) and len(shape) == 3 and data.draw(st.booleans(), label="affine"):
            s = data.draw(st.sampled_from([Fraction(2), Fraction(1, 2), Fraction(3)]), label="scale")
            h = data.draw(st.sampled_from([Fraction(0), Fraction(-1, 2), Fraction(1, 3)]), label="shift")
            C = shape[0]
            out.append(Affine(fraction_array([s] * C, (C, 1, 1)), fraction_array([h] * C, (C, 1, 1))))
    return tuple(out)


FAST_EXAMPLES = 30  # the default tier
SLOW_EXAMPLES = 80  # the slow tier (docs/testing.md)


@settings(max_examples=FAST_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(random_task(disjoint=True), st.data())
def test_general_layers_agree_with_brute_force(pair, data):
    _agree(pair, data, COUNTS["fast"])


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(random_task(disjoint=True), st.data())
def test_general_layers_agree_with_brute_force_full(pair, data):
    _agree(pair, data, COUNTS["full"])


def _agree(pair, data, counts: Counter) -> None:
    """One random task with a rewritten (and maybe mutated) network: every prover against brute
    force (module docstring); tallies counts."""
    text, task = pair
    counts["tasks"] += 1
    paper = build_network(task)
    net = Network(paper.input_shape, _rewrite(paper.layers, data, tuple(paper.input_shape)), paper.class_names)
    if data.draw(st.booleans(), label="mutate"):
        params = list(net.parameters())
        path, arr = params[data.draw(st.integers(0, len(params) - 1), label="param")]
        k = data.draw(st.integers(0, arr.size - 1), label="index")
        net = with_parameter(net, path, k, arr.ravel()[k] + data.draw(st.sampled_from([1, -1]), label="d"))
        counts["mutants"] += 1
    assert network_to_json(network_from_json(network_to_json(net))) == network_to_json(net)
    kinds = {l.kind for l in net.layers} | {l.kind for p in net.layers if isinstance(p, Parallel) for b in p.branches for l in b}
    general = bool(kinds & {"conv2d_general", "max_pool", "affine"})
    if general:
        assert isinstance(compositional.decompose(net), str)  # the compositional form is not claimed
    q = Question("zero_error")
    sm = smt.prove(task, net, q)
    assert sm.verdict in ("PROVED", "REFUTED"), sm
    if isinstance(sm, Refuted):
        assert problem(task, net, q, sm.counterexample) is None
    if task.noise == 0:
        worst = naive_min_margin(task, net.evaluate)
        ex = exhaustive.prove(task, net, q)
        assert isinstance(ex, Proved) == q.holds_for(worst) == isinstance(sm, Proved), (text, worst, ex, sm)
        if isinstance(ex, Proved):
            assert ex.margin == worst
        else:
            assert ex.details["worst_margin"] == worst
            assert problem(task, net, q, ex.counterexample) is None
        au = prove(task, net, q, method="auto")
        assert au.verdict == ex.verdict
        counts["brute force"] += 1
    counts["general" if general else "compositional form"] += 1
    counts[sm.verdict] += 1


def _counts(counts: Counter, n: int) -> None:
    if counts["tasks"] < n:
        pytest.skip("the random rewrites of this tier did not run in this session")
    print(f"\n{dict(counts)}")
    assert counts["general"] >= n / 8 and counts["brute force"] >= n / 14, counts
    assert counts["REFUTED"] >= 3 and counts["PROVED"] >= 3, counts


def test_general_layer_counts():
    """The random rewrites did exercise the new kinds, both verdicts and brute force."""
    _counts(COUNTS["fast"], FAST_EXAMPLES)


@pytest.mark.slow
def test_general_layer_counts_full():
    _counts(COUNTS["full"], SLOW_EXAMPLES)


def _doc(layers, shape=(1, 3, 3)):
    return {"format": "cnnproof-network", "version": 1,
            "input": {"channels": shape[0], "height": shape[1], "width": shape[2]},
            "classes": ["a", "b"], "layers": layers}


def test_general_layer_json_errors_name_the_key():
    import pytest

    from cnnproof.verifier.errors import InputError

    conv = {"type": "conv2d_general", "weight": [[[[1]]]], "bias": [0], "stride": [0, 1]}
    tail = [{"type": "global_max_pool"}, {"type": "flatten"}, {"type": "dense", "weight": [[1], [0]], "bias": [0, 0]}]
    with pytest.raises(InputError, match=r"layers\[0\]\.stride: must be an array of 2 integers >= 1"):
        network_from_json(_doc([conv] + tail), "n.json")
    with pytest.raises(InputError, match=r"layers\[0\]\.kernel: missing"):
        network_from_json(_doc([{"type": "max_pool"}] + tail), "n.json")
    with pytest.raises(InputError, match=r"layers\[0\]: max_pool: padding must be smaller than the kernel"):
        network_from_json(_doc([{"type": "max_pool", "kernel": [2, 2], "pads": [2, 0, 0, 0]}] + tail), "n.json")
    with pytest.raises(InputError, match=r"layers\[0\].*do not broadcast"):
        network_from_json(_doc([{"type": "affine", "scale": [[[1, 2]]], "shift": [[[0]]]}] + tail), "n.json")
    ok = network_from_json(_doc([{"type": "affine", "scale": [[["1/2"]]], "shift": [[[1]]]},
                                 {"type": "max_pool", "kernel": [2, 2], "stride": [1, 1], "pads": [1, 1, 0, 0]}] + tail))
    from cnnproof.verifier.exact import fraction_array as fa

    assert ok.evaluate(fa([0, 2, 4, 6, 8, 10, 12, 14, 16], (1, 3, 3))) == [Fraction(9), Fraction(0)]
