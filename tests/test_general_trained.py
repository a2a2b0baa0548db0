"""Agreement on briefly trained networks (issue 9 item 3, the kind "briefly trained").

Over random small tasks (tests/randtasks.py; derandomized), a network is trained for a few
epochs on the base image of every scene of the task with examples/train_cnn.py's numpy trainer
(``--arch paper`` with a 2x2 or 3x3 kernel; ``conv3-pool-conv3`` where the canvas is at least
8x8, which the random tasks seldom are, so a 2x2-kernel variant of it is built from the same
layers), its weights rounded to multiples of 2^-3, and converted exactly to a cnnproof network.
``compositional.prove(..., fallback=False)`` must agree with the truth: for noise-free tasks the
naive enumerator's exact worst margin (PROVED only when it is true, at that margin; REFUTED only
when false), for noisy ones ``smt``. Counterexamples re-check by exact evaluation. UNKNOWN is
counted and printed per noise-free and noisy tasks, and bounded (docs/configurations.md,
"Limits").
"""

from __future__ import annotations

import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from naive import naive_min_margin
from randtasks import random_task

from cnnproof.constructions.scenes import base_image_int, enumerate_scenes
from cnnproof.verifier import compositional, smt
from cnnproof.verifier.exact import fraction_array
from cnnproof.verifier.network import Conv2d, Dense, Flatten, GlobalMaxPool, MaxPool, Network, ReLU
from cnnproof.verifier.outcome import Proved, Question, Refuted, Unknown
from cnnproof.verifier.recheck import problem

N_FAST, N_FULL = 30, 150
BITS = 3
COUNTS: dict[str, Counter] = {"fast": Counter(), "full": Counter()}


def _example():
    from cnnproof import training

    return training


def _exact(a: np.ndarray) -> np.ndarray:
    return fraction_array([Fraction(float(v)) for v in a.ravel()], a.shape)  # floats -> exact rationals


def to_network(t, p, task) -> Network:
    """The trained float32 parameters, exactly, as cnnproof layers."""
    layers = []
    for layer in p.layers:
        if isinstance(layer, t.Conv):
            layers.append(Conv2d(_exact(layer.w), _exact(layer.b)))
        elif isinstance(layer, t.Relu):
            layers.append(ReLU())
        elif isinstance(layer, t.MaxPool2):
            layers.append(MaxPool((2, 2), stride=(2, 2)))
        elif isinstance(layer, t.GlobalMaxPoolFlatten):
            layers += [GlobalMaxPool(), Flatten()]
        elif isinstance(layer, t.Gemm):
            layers.append(Dense(_exact(layer.w), _exact(layer.b)))
        else:
            raise AssertionError(layer)
    return Network((task.channels, task.height, task.width), tuple(layers), task.class_names)


def trained(task, arch: str, k: int, seed: int):
    t = _example()
    xs, ys = [], []
    for c, cls in enumerate(task.classes):
        for s in enumerate_scenes(task, cls):
            xs.append(base_image_int(task, s) / task.scale)
            ys.append(c)
    x, y = np.stack(xs).astype(np.float64), np.array(ys)
    K = len(task.classes)
    if arch == "pool":  # conv k -> relu -> maxpool 2/2 -> conv 1x1 -> relu -> global max -> gemm
        rng = np.random.default_rng(seed)
        p = t.Params("conv3-pool-conv3", [t._conv(rng, "conv1", task.channels, 3, k), t.Relu("relu1"),
                                          t.MaxPool2("maxpool"), t._conv(rng, "conv2", 3, 3, 1), t.Relu("relu2"),
                                          t.GlobalMaxPoolFlatten("pool"), t._head(rng, 3, K)])
        vel = [np.zeros_like(a) for a in p.arrays()]
        for _ in range(300):
            _, g = t.loss_and_grads(p, x, y)
            for a, v, d in zip(p.arrays(), vel, g.arrays()):
                v *= 0.9
                v -= 0.1 * d
                a += v
    else:
        p = t.train(x, y, K, filters=3, k=k, epochs=150, batch=16, seed=seed, log=None)
    return to_network(t, p.rounded(BITS), task)


def _arches(task):
    m = min(task.height, task.width)
    out = [("paper", min(3, m))]
    if m >= 4:  # (m - k + 1) >= 2 for the 2x2 pool
        out.append(("pool", min(3, m - 1)))
    return out


def agree(pair, seed: int, tier: str) -> None:
    text, task = pair
    counts = COUNTS[tier]
    counts["tasks"] += 1
    for arch, k in _arches(task):
        net = trained(task, arch, k, seed)
        q = Question("zero_error", None)
        where = (text, arch, k)
        co = compositional.prove(task, net, q, fallback=False)
        counts[(arch, co.verdict)] += 1
        if isinstance(co, Refuted):
            assert problem(task, net, q, co.counterexample) is None, (where, co)
        if task.noise == 0:
            worst = naive_min_margin(task, net.evaluate)
            truth = q.holds_for(worst)
            if isinstance(co, Proved):
                assert truth, ("SOUNDNESS: PROVED but the worst margin is", worst, where, co)
                assert co.margin is None or co.margin == worst, (where, worst, co)
            elif isinstance(co, Refuted):
                assert not truth, (where, worst, co)
        elif not isinstance(co, Unknown):  # (an UNKNOWN claims nothing to compare)
            sm = smt.prove(task, net, q, deadline=time.perf_counter() + 60)
            if isinstance(co, Proved):
                assert not isinstance(sm, Refuted), ("SOUNDNESS: PROVED but smt refutes", where, co, sm)
            elif isinstance(co, Refuted):
                assert not isinstance(sm, Proved), (where, co, sm)
        noisy = "noisy" if task.noise else "noise-free"
        counts[noisy] += 1
        if isinstance(co, Unknown):
            counts[("unknown", noisy)] += 1
            print("  unknown:", arch, noisy, co.reason)


TASKS = st.integers(0, 2).flatmap(lambda k: random_task(disjoint=k > 0))


@settings(max_examples=N_FAST, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(TASKS, st.integers(0, 3))
def test_trained_networks_agree_with_brute_force(pair, seed):
    agree(pair, seed, "fast")


@pytest.mark.slow
@settings(max_examples=N_FULL, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(TASKS, st.integers(0, 3))
def test_trained_networks_agree_with_brute_force_full(pair, seed):
    agree(pair, seed, "full")


@pytest.mark.parametrize("tier", ["fast", pytest.param("full", marks=pytest.mark.slow)])
def test_trained_counts(tier):
    c = COUNTS[tier]
    if c["tasks"] < (N_FAST if tier == "fast" else N_FULL):
        pytest.skip("the agreement test of this tier did not run in this session")
    print(f"\ntrained networks ({tier}): {c['tasks']} tasks:",
          {k: v for k, v in sorted(c.items(), key=str) if isinstance(k, tuple) and k[0] != "unknown"})
    for noisy in ("noise-free", "noisy"):
        print(f"  UNKNOWN on {noisy} tasks: {c[('unknown', noisy)]} of {c[noisy]}")
    # Measured (default tier): noise-free 1 of 16, noisy 3 of 23 (before the lower bounds counted
    # the copies of a required feature: 14 of 23); docs/configurations.md, "Limits".
    assert c[("unknown", "noise-free")] <= max(1, c["noise-free"] / 5), c
    assert c[("unknown", "noisy")] <= max(1, c["noisy"] / 4), c
    assert any(c[(a, "PROVED")] for a in ("paper", "pool")) and any(c[(a, "REFUTED")] for a in ("paper", "pool")), c
