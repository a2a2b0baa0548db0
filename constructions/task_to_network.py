"""The paper's network for a task (MODEL.md section 5), with exact rational weights.

Stage: task -> network. Trusted: no (whatever it builds, the provers verify).

Two detector designs:

* **two levels, no noise** (e.g. binary {0, 1}): one convolution per feature size; weight
  ``+1/(hi-lo)`` where the template is ``hi``, ``-1/(hi-lo)`` where it is ``lo``, ``0`` on ``*``,
  and a bias that makes an exact match give 1. Every mismatching cell costs exactly 1, so
  ``ReLU(conv)`` is 1 on a match and 0 otherwise.
* **general levels and noise**: a shared 1x1 trunk computes, per pixel and level ``l``, the
  mismatch indicator ``m_l(x) = min(1, k * ReLU(|x - l| - δ))`` with ``k = 1/(s - 2δ)`` (0 when
  ``|x - l| <= δ``, 1 when ``|x - l| >= s - δ``), as ``|x-l| = ReLU(x-l) + ReLU(l-x)`` and
  ``min(1, y) = y - ReLU(y - 1)``; then one h x w convolution per feature size outputs
  ``ReLU(1 - Σ_{support} m_{T(cell)})``.

Then global max pooling (``p_f``: is ``f`` present) and the AND head
``z_c = ReLU(Σ_{f in S_c} p_f - |S_c| + 1)``.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from cnnproof.constructions.task import Feature, Task
from cnnproof.verifier.exact import fraction_array
from cnnproof.verifier.network import (
    Conv2d,
    Dense,
    Flatten,
    GlobalMaxPool,
    Layer,
    Network,
    Parallel,
    ReLU,
)


def _groups(task: Task) -> list[tuple[tuple[int, int], list[Feature]]]:
    """Features grouped by size, in order of first appearance."""
    groups: dict[tuple[int, int], list[Feature]] = {}
    for f in task.features:
        groups.setdefault(f.size, []).append(f)
    return list(groups.items())


def _conv(weight: np.ndarray, bias: list[Fraction]) -> Conv2d:
    w = fraction_array(list(weight.ravel()), weight.shape)
    w.flags.writeable = False
    b = fraction_array(bias, (len(bias),))
    b.flags.writeable = False
    return Conv2d(w, b)


def _zeros(shape) -> np.ndarray:
    a = np.empty(shape, dtype=object)
    a[...] = Fraction(0)
    return a


def _two_level_detectors(task: Task, feats: list[Feature], size: tuple[int, int]) -> Conv2d:
    lo, hi = task.levels
    d = hi - lo
    h, w = size
    W = _zeros((len(feats), task.channels, h, w))
    bias = []
    for k, f in enumerate(feats):
        const = Fraction(0)
        for ch, a, b, v in f.support():
            sign = 1 if v == hi else -1
            W[k, ch, a, b] = Fraction(sign) / d
            const += sign * v / d
        bias.append(1 - const)
    return _conv(W, bias)


def _trunk(task: Task) -> tuple[list[Layer], dict[tuple[int, Fraction], int]]:
    """1x1 layers computing per-pixel mismatch indicators; returns layers and the index of the
    (u, v) channel pair for each (input channel, level)."""
    C = task.channels
    pairs = [(ch, l) for ch in range(C) for l in task.levels]
    n = len(pairs)
    delta = task.noise
    k = 1 / (task.min_gap - 2 * delta)
    # A: a+ = ReLU(x - l), a- = ReLU(l - x)
    WA = _zeros((2 * n, C, 1, 1))
    bA = []
    for p, (ch, l) in enumerate(pairs):
        WA[2 * p, ch, 0, 0] = Fraction(1)
        WA[2 * p + 1, ch, 0, 0] = Fraction(-1)
        bA += [-l, l]
    # B: r = ReLU(a+ + a- - δ)
    WB = _zeros((n, 2 * n, 1, 1))
    for p in range(n):
        WB[p, 2 * p, 0, 0] = WB[p, 2 * p + 1, 0, 0] = Fraction(1)
    bB = [-delta] * n
    # C: u = ReLU(k r), v = ReLU(k r - 1)
    WC = _zeros((2 * n, n, 1, 1))
    bC = []
    for p in range(n):
        WC[2 * p, p, 0, 0] = k
        WC[2 * p + 1, p, 0, 0] = k
        bC += [Fraction(0), Fraction(-1)]
    layers: list[Layer] = [_conv(WA, bA), ReLU(), _conv(WB, bB), ReLU(), _conv(WC, bC), ReLU()]
    return layers, {pair: p for p, pair in enumerate(pairs)}


def _general_detectors(task: Task, feats: list[Feature], size, index) -> Conv2d:
    h, w = size
    n = len(index)
    W = _zeros((len(feats), 2 * n, h, w))
    for k, f in enumerate(feats):
        for ch, a, b, v in f.support():
            p = index[(ch, v)]
            W[k, 2 * p, a, b] = Fraction(-1)  # - u
            W[k, 2 * p + 1, a, b] = Fraction(1)  # + v   (so -m = -(u - v))
    return _conv(W, [Fraction(1)] * len(feats))


def uses_two_level_detectors(task: Task) -> bool:
    return len(task.levels) == 2 and task.noise == 0


def build_network(task: Task) -> Network:
    """The paper's network for ``task`` (valid whether or not the task is well-posed)."""
    groups = _groups(task)
    trunk: list[Layer] = []
    index = None
    if not uses_two_level_detectors(task):
        trunk, index = _trunk(task)
    branches = []
    order: list[Feature] = []
    for size, feats in groups:
        det = (
            _two_level_detectors(task, feats, size)
            if index is None
            else _general_detectors(task, feats, size, index)
        )
        branches.append((det, ReLU(), GlobalMaxPool(), Flatten()))
        order.extend(feats)
    pooled: list[Layer] = list(branches[0]) if len(branches) == 1 else [Parallel(tuple(branches))]
    pos = {f.name: k for k, f in enumerate(order)}
    K, F = len(task.classes), len(order)
    Wh = _zeros((K, F))
    bh = []
    for c, cls in enumerate(task.classes):
        for name in cls.required:
            Wh[c, pos[name]] = Fraction(1)
        bh.append(Fraction(1 - len(cls.required)))
    head = Dense(fraction_array(list(Wh.ravel()), (K, F)), fraction_array(bh, (K,)))
    layers = tuple(trunk + pooled + [head, ReLU()])
    return Network(
        (task.channels, task.height, task.width),
        layers,
        task.class_names,
        tuple(f.name for f in order),
    )
