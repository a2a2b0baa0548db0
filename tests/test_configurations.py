"""The general compositional engine (configuration lemmas, docs/configurations.md).

* networks that compute the paper's function in a deeper form (a 2x2 stride-1 max pool and an
  identity 1x1 convolution + ReLU before the global pooling; a 5x5 detector written as two
  stacked 3x3 convolutions) are PROVED by auto/compositional with the paper's margin, and
  exhaustive agrees;
* the prover's configuration ranges equal the checker's, derived by separate code;
* a certificate of the general engine is validated by ``cnnproof check``, and editing a
  configuration range or the head's SMT text is rejected;
* a mutant that breaks the network is refuted, with a counterexample that re-checks.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from cnnproof.constructions.task import load_task, task_from_toml
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier import compositional, configurations, exhaustive
from cnnproof.verifier.checker import configurations as checker_configurations
from cnnproof.verifier.checker.check import check_certificate
from cnnproof.verifier.network import (Conv2d, Dense, GlobalMaxPool, MaxPool, Network, Parallel, ReLU, save_network,
                                       with_parameter)
from cnnproof.verifier.outcome import Proved, Question, Refuted
from cnnproof.verifier.prove import prove
from cnnproof.verifier.recheck import problem

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "proofs" / "tasks"
Q = Question("zero_error", None)


def _fr(v) -> Fraction:
    return Fraction(v)


def _identity(C: int) -> Conv2d:
    w = np.array([[_fr(int(a == b)) for b in range(C)] for a in range(C)], dtype=object).reshape(C, C, 1, 1)
    return Conv2d(w, np.array([_fr(0)] * C, dtype=object))


def _doubling(C: int) -> Conv2d:
    w = np.array([[_fr(2 * int(a == b)) for b in range(C)] for a in range(C)], dtype=object).reshape(C, C, 1, 1)
    return Conv2d(w, np.array([_fr(0)] * C, dtype=object))


def before_pool(net: Network, extra, halve: bool = False) -> Network:
    """``extra(C)`` (layers for a branch of C channels) between each branch's local stack and its
    global max pooling; ``halve``: the head's first dense layer halves its weights."""
    def ext(body):
        j = next(k for k, l in enumerate(body) if isinstance(l, GlobalMaxPool))
        C = next(l for l in reversed(body[:j]) if hasattr(l, "weight")).weight.shape[0]
        return body[:j] + list(extra(C)) + body[j:]

    layers = list(net.layers)
    i = next(k for k, l in enumerate(layers) if isinstance(l, (GlobalMaxPool, Parallel)))
    if isinstance(layers[i], Parallel):
        layers[i] = Parallel(tuple(tuple(ext(list(b))) for b in layers[i].branches))
    else:
        layers = ext(layers)
    if halve:
        d = next(k for k, l in enumerate(layers) if isinstance(l, Dense))
        layers[d] = Dense(np.vectorize(lambda v: v / 2, otypes=[object])(layers[d].weight), layers[d].bias)
    return Network(net.input_shape, tuple(layers), net.class_names, net.channel_names)


def deeper(net: Network, general: bool = False) -> Network:
    """The same function with a 2x2 stride-1 max pool and an identity 1x1 conv + ReLU between
    each branch's detectors and its global max pooling (exact: max pooling windows that cover
    the map change no global maximum). The normal form (checker/normal_form.py) undoes this, so
    the paper's path decides it. ``general=True`` makes the 1x1 convolution double every channel
    and the head's first dense layer halve its weights back: the same function, but no rewrite
    applies, so the general engine (configuration lemmas) decides it."""
    return before_pool(net, lambda C: [MaxPool((2, 2)), (_doubling if general else _identity)(C), ReLU()], halve=general)


def stacked_3x3(conv: Conv2d) -> list:
    """A 5x5 convolution as two 3x3 ones with a ReLU between (exact for inputs >= 0): the first
    copies each input cell of a 3x3 block into its own channel, the second adds them up."""
    O, C, kh, kw = conv.weight.shape
    assert (kh, kw) == (5, 5)
    w1 = np.full((9 * C, C, 3, 3), _fr(0), dtype=object)
    for ch in range(C):
        for a in range(3):
            for b in range(3):
                w1[ch * 9 + a * 3 + b, ch, a, b] = _fr(1)
    w2 = np.full((O, 9 * C, 3, 3), _fr(0), dtype=object)
    for o in range(O):
        for ch in range(C):
            for r in range(5):
                for c in range(5):
                    a, cr = r - min(r, 2), min(r, 2)  # r = a + cr, a first-layer shift, cr the second's
                    b, cc = c - min(c, 2), min(c, 2)
                    w2[o, ch * 9 + a * 3 + b, cr, cc] = conv.weight[o, ch, r, c]
    return [Conv2d(w1, np.array([_fr(0)] * (9 * C), dtype=object)), ReLU(), Conv2d(w2, conv.bias)]


FIVE = """
name = "five"
[canvas]
height = 9
width = 9
[pixels]
symbols = { "." = 0, "#" = 1 }
[features.plus]
template = '''
..#..
..#..
#####
..#..
..#..
'''
[features.ring]
template = '''
#####
#...#
#...#
#...#
#####
'''
[classes.p]
required = ["plus"]
[classes.r]
required = ["ring"]
"""


@pytest.mark.parametrize("name", ["channels", "mixed_sizes", "stride_region", "distractors", "ink", "touching_gap1"])
@pytest.mark.parametrize("general", [False, True], ids=["normal-form", "configurations"])
def test_deeper_paper_networks_are_proved_compositionally(name, general):
    task = load_task(TASKS / f"{name}.toml")
    net = deeper(build_network(task), general=general)
    assert isinstance(compositional.decompose(net), str)  # not the paper's form as written
    record: list = []
    v = compositional.prove(task, net, Q, fallback=False, record=record)
    assert isinstance(v, Proved), v
    assert v.margin == 1  # the paper's margin, exact (a witness attains it)
    kinds = {o["kind"] for o in record}
    # the plain deeper form is rewritten back to the paper's (window lemmas); the doubled one is not
    assert ("window" in kinds) == (not general) and ("configuration" in kinds) == general, kinds
    assert ("normal-form" in kinds) == (not general)
    assert prove(task, net, Q, method="auto").method == "auto/compositional"


def test_five_by_five_detector_as_two_stacked_3x3_convolutions():
    task = task_from_toml(FIVE, "five.toml")
    paper = build_network(task)
    layers = list(paper.layers)
    k = next(i for i, l in enumerate(layers) if isinstance(l, Conv2d))
    net = Network(paper.input_shape, tuple(layers[:k] + stacked_3x3(layers[k]) + layers[k + 1:]),
                  paper.class_names, paper.channel_names)
    assert configurations.local_decompose(net).branches[0].window == (5, 5)
    v = prove(task, net, Q, method="auto")
    assert isinstance(v, Proved) and v.method == "auto/compositional" and v.margin == 1, v
    ex = exhaustive.prove(task, net, Q)
    assert isinstance(ex, Proved) and ex.margin == 1


@pytest.mark.parametrize("name", ["channels", "mixed_sizes", "ink", "levels_noise"])
def test_prover_and_checker_ranges_agree(name):
    task = load_task(TASKS / f"{name}.toml")
    net = deeper(build_network(task), general=True)
    shape = configurations.local_decompose(net)
    for c in range(len(task.classes)):
        mine = [(r.lo, r.hi) for r in configurations.class_lemmas(task, shape, c).ranges]
        assert mine == checker_configurations.class_ranges(task, net, c)


def test_certificate_round_trip_and_tampering(tmp_path):
    task_path = TASKS / "channels.toml"
    task = load_task(task_path)
    net = deeper(build_network(task), general=True)
    net_path = tmp_path / "deep.json"
    save_network(net, net_path)
    from cnnproof.cli import main

    cert = tmp_path / "cert.json"
    assert main(["prove", str(task_path), "--net", str(net_path), "--certificate", str(cert)]) == 0
    res = check_certificate(cert, task_path, net_path)
    assert res.ok and res.verdict == "PROVED", res
    data = json.loads(cert.read_text())
    kinds = {o["kind"] for o in data["obligations"]}
    assert "configuration" in kinds and "window" not in kinds
    conf = next(o for o in data["obligations"] if o["kind"] == "configuration")
    lo, hi = conf["ranges"][0]
    conf["ranges"][0] = [lo, str(Fraction(hi) + 1)]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    res = check_certificate(bad, task_path, net_path)
    assert not res.ok and "configuration range" in res.reason, res
    conf["ranges"][0] = [lo, hi]
    del data["obligations"][data["obligations"].index(conf)]
    bad.write_text(json.dumps(data))
    res = check_certificate(bad, task_path, net_path)
    assert not res.ok and "head of stop without" in res.reason, res


def test_a_broken_deeper_network_is_refuted():
    task = load_task(TASKS / "channels.toml")
    net = deeper(build_network(task), general=True)
    refuted = 0
    for path, arr in net.parameters():
        if not path.startswith("layers[0]"):
            continue
        for k in range(min(arr.size, 6)):
            m = with_parameter(net, path, k, arr.ravel()[k] + 2)
            v = compositional.prove(task, m, Q, fallback=False)
            ex = exhaustive.prove(task, m, Q)
            if v.verdict != "UNKNOWN":
                assert v.verdict == ex.verdict, (path, k, v, ex)
            if isinstance(v, Refuted):
                assert problem(task, m, Q, v.counterexample) is None
                refuted += 1
    assert refuted >= 1
