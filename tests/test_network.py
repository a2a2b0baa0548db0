"""Exact networks: evaluation against a literal Fraction evaluator, JSON round trips, the
layer registry's coverage, and the construction's detectors being exactly 0 or 1."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from randtasks import random_task

from cnnproof.constructions.scenes import base_image, enumerate_scenes, presence_int, base_image_int
from cnnproof.constructions.task_to_network import build_network
from cnnproof.verifier import smt
from cnnproof.verifier.exact import fraction_array
from cnnproof.verifier.network import (
    LAYER_KINDS, Conv2d, Dense, Flatten, GlobalMaxPool, Network, Parallel, ReLU,
    network_from_json, network_to_json,
)


def literal_eval(layers, x):
    """Straight from the definitions, one Fraction at a time."""
    for layer in layers:
        if isinstance(layer, Conv2d):
            O, I, kh, kw = layer.weight.shape
            C, H, W = x.shape
            out = np.empty((O, H - kh + 1, W - kw + 1), dtype=object)
            for o in range(O):
                for i in range(H - kh + 1):
                    for j in range(W - kw + 1):
                        out[o, i, j] = layer.bias[o] + sum(
                            (layer.weight[o, c, a, b] * x[c, i + a, j + b]
                             for c in range(I) for a in range(kh) for b in range(kw)), Fraction(0))
            x = out
        elif isinstance(layer, ReLU):
            x = np.vectorize(lambda v: max(v, Fraction(0)), otypes=[object])(x)
        elif isinstance(layer, GlobalMaxPool):
            x = np.array([[[max(x[c].ravel())]] for c in range(x.shape[0])], dtype=object)
        elif isinstance(layer, Flatten):
            x = x.reshape(-1)
        elif isinstance(layer, Dense):
            x = np.array([layer.bias[o] + sum((layer.weight[o, k] * x[k] for k in range(x.shape[0])), Fraction(0))
                          for o in range(layer.weight.shape[0])], dtype=object)
        elif isinstance(layer, Parallel):
            x = np.concatenate([literal_eval(b, x) for b in layer.branches], axis=0)
    return list(x)


fracs = st.fractions(min_value=-5, max_value=5, max_denominator=7)


@st.composite
def random_network(draw):
    C = draw(st.integers(1, 2))
    H = draw(st.integers(2, 5))
    W = draw(st.integers(2, 5))
    branches = []
    for _ in range(draw(st.integers(1, 2))):
        kh, kw = draw(st.integers(1, H)), draw(st.integers(1, W))
        O = draw(st.integers(1, 3))
        w = [[[[draw(fracs) for _ in range(kw)] for _ in range(kh)] for _ in range(C)] for _ in range(O)]
        b = [draw(fracs) for _ in range(O)]
        branches.append((Conv2d.from_lists(w, b), ReLU(), GlobalMaxPool(), Flatten()))
    F = sum(br[0].weight.shape[0] for br in branches)
    K = draw(st.integers(2, 3))
    head = Dense.from_lists([[draw(fracs) for _ in range(F)] for _ in range(K)], [draw(fracs) for _ in range(K)])
    layers = (Parallel(tuple(branches)),) if len(branches) > 1 else branches[0]
    net = Network((C, H, W), tuple(layers) + (head,), tuple(f"k{i}" for i in range(K)))
    img = fraction_array([draw(fracs) for _ in range(C * H * W)], (C, H, W))
    return net, img


# derandomized and without the too-slow health check: a loaded machine must not fail the run
@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(random_network())
def test_exact_evaluation_matches_literal_fractions(pair):
    net, img = pair
    assert net.evaluate(img) == literal_eval(net.layers, img)
    # and the JSON round trip keeps every weight
    again = network_from_json(network_to_json(net))
    assert again.evaluate(img) == net.evaluate(img)


def test_huge_numbers_fall_back_to_python_ints():
    big = Fraction(2**70, 3)
    net = Network((1, 1, 1), (Conv2d.from_lists([[[[big]]]], [1]), ReLU(), GlobalMaxPool(), Flatten(),
                              Dense.from_lists([[big], [-1]], [0, 0])), ("a", "b"))
    img = fraction_array([Fraction(2**65, 7)], (1, 1, 1))
    assert net.evaluate(img) == literal_eval(net.layers, img)


def test_every_layer_kind_has_every_semantics():
    """The registry's coverage: exact evaluation, JSON, and the SMT encoding of each kind."""
    for kind, cls in LAYER_KINDS.items():
        assert hasattr(cls, "apply") and hasattr(cls, "out_shape"), kind
        assert cls in smt.SMT_LAYERS, f"no SMT encoding for {kind}"
        assert cls.kind == kind


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(random_task())
def test_detectors_are_exactly_zero_or_one(pair):
    """On every base image (and its noise-box corners) each pooled detector is exactly 0 or 1
    and equals the feature's presence."""
    _, task = pair
    net = build_network(task)
    # the network up to the pooled detectors: everything before the head
    pooled = Network.__new__(Network)
    pre = net.layers[:-2]
    rng = random.Random(0)
    for cls in task.classes:
        for k, scene in enumerate(enumerate_scenes(task, cls)):
            if k >= 30:
                break
            img = base_image(task, scene)
            ints = base_image_int(task, scene)
            pres = presence_int(task, ints[None])[0]
            imgs = [img]
            if task.noise:
                imgs.append(img + np.array([rng.choice((-1, 1)) * task.noise for _ in range(img.size)],
                                           dtype=object).reshape(img.shape))
            for x in imgs:
                vals = literal_eval(pre, np.vectorize(Fraction, otypes=[object])(x))
                order = [task.feature_index(n) for n in net.channel_names]
                assert [Fraction(int(p)) for p in pres[order]] == vals, (scene, vals)
