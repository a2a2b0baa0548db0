"""The normal form (verifier/checker/normal_form.py): exact rewrites before the lemma method.

* every rewrite keeps the function: random networks with identity layers, repeated ReLUs and max
  pools inserted at random evaluate exactly as their normal form on random inputs;
* no rewrite fires where it would change the function: a pool that skips cells, a pool followed
  by a layer that is not nondecreasing per channel, a 1x1 convolution that is not the identity;
* the large28 network with a 2x2 stride-1 max pool and an identity 1x1 convolution + ReLU before
  its global pooling (issue 9's acceptance example) is PROVED by auto/compositional through the
  paper's window lemmas, with a certificate that ``cnnproof check`` validates; a certificate
  whose normal-form obligation is missing or edited is rejected.
"""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from cnnproof.constructions.task import load_task
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier.checker.check import check_certificate
from cnnproof.verifier.checker.normal_form import normal_form
from cnnproof.verifier.exact import fraction_array
from cnnproof.verifier.network import (Affine, Conv2d, Dense, Flatten, GeneralConv2d, GlobalMaxPool, MaxPool,
                                       Network, ReLU, save_network)
from cnnproof.verifier.outcome import Question

from test_configurations import deeper

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "proofs" / "tasks"
Q = Question("zero_error", None)
VALUES = [Fraction(v) for v in ("-2", "-1", "-1/2", "0", "1/3", "1", "3/2")]


def _conv(rng, O, C, k):
    w = fraction_array([rng.choice(VALUES) for _ in range(O * C * k * k)], (O, C, k, k))
    return Conv2d(w, fraction_array([rng.choice(VALUES) for _ in range(O)], (O,)))


def _identity(C):
    return Conv2d.from_lists([[[[int(a == b)]] for b in range(C)] for a in range(C)], [0] * C)


def _affine(C, scale):
    return Affine(fraction_array([Fraction(scale)] * C, (C, 1, 1)), fraction_array([Fraction(1, 2)] * C, (C, 1, 1)))


def _random_net(rng, H=7):
    """conv -> ReLU, then a random tail of identity layers, ReLUs, monotone affine maps and max pools."""
    C = rng.randint(1, 3)
    layers = [_conv(rng, C, 1, rng.randint(1, 3)), ReLU()]
    for _ in range(rng.randint(1, 5)):
        layers.append(rng.choice([
            lambda: _identity(C), ReLU, lambda: _affine(C, 1) if rng.random() < 0.5 else _affine(C, 2),
            lambda: MaxPool((2, 2)), lambda: MaxPool((2, 2), stride=(2, 2)), lambda: MaxPool((1, 1)),
            lambda: MaxPool((3, 3), stride=(2, 2), pads=(1, 1, 1, 1)),
            lambda: MaxPool((2, 2), dilation=(2, 2)), lambda: _affine(C, -1),
        ])())
        try:
            shape = Network((1, H, H), tuple(layers + [GlobalMaxPool(), Flatten(), Dense.from_lists([[1] * C], [0])]),
                            ("a",)).output_shape
        except ValueError:
            layers.pop()
    head = [Dense(fraction_array([rng.choice(VALUES) for _ in range(2 * C)], (2, C)), fraction_array([0, 1], (2,)))]
    return Network((1, H, H), tuple(layers + [GlobalMaxPool(), Flatten()] + head), ("a", "b"))


def test_every_rewrite_keeps_the_function():
    rng = random.Random(5)
    rewritten = 0
    for _ in range(150):
        net = _random_net(rng)
        norm, rules = normal_form(net)
        rewritten += bool(rules)
        for _ in range(6):
            img = fraction_array([rng.choice(VALUES) for _ in range(49)], (1, 7, 7))
            assert norm.evaluate(img) == net.evaluate(img), ([l.kind for l in net.layers], rules)
    assert rewritten >= 50  # the rules did fire


@pytest.mark.parametrize("tail", [
    [MaxPool((1, 1), stride=(2, 2))],  # skips every other cell
    [MaxPool((2, 2), stride=(3, 3))],  # skips a column and a row
    [MaxPool((2, 2)), "negate"],  # followed by a decreasing map
    [MaxPool((2, 2)), "mix"],  # followed by a 1x1 convolution that mixes channels
    [MaxPool((2, 2)), "where"],  # followed by an affine map whose shift depends on the position
])
def test_rewrites_do_not_fire_where_they_would_change_the_function(tail):
    layers = [Conv2d.from_lists([[[[1]]], [[[-1]]]], [0, 1]), ReLU()]
    for t in tail:
        if t == "negate":
            layers.append(_affine(2, -1))
        elif t == "where":
            shift = fraction_array([Fraction(v % 3) for v in range(2 * 5 * 5)], (2, 5, 5))
            layers.append(Affine(fraction_array([1, 1], (2, 1, 1)), shift))
        elif t == "mix":
            layers.append(Conv2d.from_lists([[[[1]], [[1]]], [[[0]], [[1]]]], [0, 0]))
        else:
            layers.append(t)
    net = Network((1, 6, 6), tuple(layers + [GlobalMaxPool(), Flatten(), Dense.from_lists([[1, 0], [0, 1]], [0, 0])]),
                  ("a", "b"))
    norm, rules = normal_form(net)
    assert not any("max pool" in r for r in rules), rules


def test_identity_means_identity():
    assert normal_form(Network((2, 4, 4), (_identity(2), ReLU(), GlobalMaxPool(), Flatten(),
                                           Dense.from_lists([[1, 0]], [0])), ("a",)))[1]
    biased = Conv2d.from_lists([[[[1]], [[0]]], [[[0]], [[1]]]], [0, 1])
    strided = GeneralConv2d(_identity(2).weight, _identity(2).bias, stride=(2, 2))
    for layer in (biased, strided):
        net = Network((2, 4, 4), (layer, ReLU(), GlobalMaxPool(), Flatten(), Dense.from_lists([[1, 0]], [0])), ("a",))
        assert not any("identity" in r for r in normal_form(net)[1])


def _certify(tmp_path, name):
    from cnnproof.cli import main

    task_path = TASKS / f"{name}.toml"
    net_path, cert = tmp_path / "deep.json", tmp_path / "cert.json"
    save_network(deeper(build_network(load_task(task_path))), net_path)
    assert main(["prove", str(task_path), "--net", str(net_path), "--certificate", str(cert)]) == 0
    return task_path, net_path, cert


def test_large28_deeper_is_proved_through_the_paper_path(tmp_path):
    task_path, net_path, cert = _certify(tmp_path, "large28")
    data = json.loads(cert.read_text())
    assert data["verdict"] == "PROVED" and data["margin_lower_bound"] == "1", data["margin_lower_bound"]
    assert data["obligations"][0]["kind"] == "normal-form" and any(o["kind"] == "window" for o in data["obligations"])
    res = check_certificate(cert, task_path, net_path)
    assert res.ok and res.verdict == "PROVED", res


def test_a_certificate_must_list_the_rewrites(tmp_path):
    task_path, net_path, cert = _certify(tmp_path, "channels")
    assert check_certificate(cert, task_path, net_path).ok
    data = json.loads(cert.read_text())
    bad = tmp_path / "bad.json"
    data["obligations"][0]["rewrites"] = data["obligations"][0]["rewrites"][:-1]
    bad.write_text(json.dumps(data))
    res = check_certificate(bad, task_path, net_path)
    assert not res.ok and "normal-form" in res.reason, res
    del data["obligations"][0]
    bad.write_text(json.dumps(data))
    res = check_certificate(bad, task_path, net_path)
    assert not res.ok and "normal-form" in res.reason, res


def test_an_empty_normal_form_obligation_is_rejected(tmp_path):
    """A network already in normal form has no normal-form obligation: a vacuous one (no
    rewrites) is not one the prover writes, so the checker does not accept it."""
    from cnnproof.cli import main

    task_path = TASKS / "channels.toml"
    net_path, cert = tmp_path / "paper.json", tmp_path / "cert.json"
    save_network(build_network(load_task(task_path)), net_path)
    assert main(["prove", str(task_path), "--net", str(net_path), "--certificate", str(cert)]) == 0
    data = json.loads(cert.read_text())
    data["obligations"].insert(0, {"kind": "normal-form", "rewrites": [], "discharged_by": {"procedure": "exact-rewrites"}})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    res = check_certificate(bad, task_path, net_path)
    assert not res.ok and "normal-form" in res.reason, res


def test_progress_names_the_lemmas_of_the_normal_form():
    from cnnproof.verifier.prove import prove

    task = load_task(TASKS / "channels.toml")
    said: list[str] = []
    prove(task, deeper(build_network(task)), Q, progress=said.append)
    assert "compositional: window, scene and head lemmas" in said, said
