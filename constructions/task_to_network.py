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
    GeneralConv2d,
    GlobalMaxPool,
    Layer,
    MaxPool,
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
    """The paper's network for ``task`` (valid whether or not the task is well-posed); for a
    task with parts, the deep construction of MODEL.md section 8 (:func:`deep_network`)."""
    if task.parts:
        return deep_network(task)
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


# ---------------------------------------------------------------------------------------------
# The deep construction (MODEL.md section 8; docs/deep-construction.md)
# ---------------------------------------------------------------------------------------------


def presence_grid(task: Task) -> tuple[int, int, int, int]:
    """(R0, C0, R1, C1): the anchors every presence map of the deep network covers (inclusive).
    The union of every item's possible anchors and of the jitter-window centres each part's unit
    reads (a piece's anchor plus its offset, before the displacement: up to ``j`` outside the
    piece's own anchors), so that nothing the network needs falls in the zero padding."""
    from cnnproof.verifier.levels import anchor_ranges

    rng = dict(anchor_ranges(task))
    boxes = [r for r in rng.values() if r[0] <= r[2] and r[1] <= r[3]]
    for g in task.parts:
        r0, c0, r1, c1 = rng[g.name]
        if r0 <= r1 and c0 <= c1:
            boxes += [(r0 + dr, c0 + dc, r1 + dr, c1 + dc) for _, dr, dc in g.pieces]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _identity(C: int, pads=(0, 0, 0, 0)) -> GeneralConv2d:
    W = _zeros((C, C, 1, 1))
    for k in range(C):
        W[k, k, 0, 0] = Fraction(1)
    w = fraction_array(list(W.ravel()), W.shape)
    b = fraction_array([Fraction(0)] * C, (C,))
    return GeneralConv2d(w, b, pads=tuple(pads))


def deep_network(task: Task) -> Network:
    """Presence maps of every item on one grid of anchors (:func:`presence_grid`), level by
    level, then global max pooling and the AND head.

    Level 1: section 5's detector bank (a branch per feature size), each map zero-padded onto
    the grid by a 1x1 identity convolution. Level L >= 2: a parallel layer whose first branch
    carries every channel (1x1 identity), and per jitter j of the level's parts a branch
    MaxPool(2j+1, stride 1, pads j) -> the parts' AND units (a convolution with weight 1 at
    each piece's offset in its item's channel, bias -(n - 1), zero padding bottom and right so
    the grid is kept) -> ReLU. Channel order: the features by size group, then each level's
    parts by jitter (``Network.channel_names`` names every channel's item)."""
    R0, C0, R1, C1 = presence_grid(task)
    GH, GW = R1 - R0 + 1, C1 - C0 + 1
    trunk: list[Layer] = []
    index = None
    if not uses_two_level_detectors(task):
        trunk, index = _trunk(task)
    branches, chans = [], []
    for size, feats in _groups(task):
        det = _two_level_detectors(task, feats, size) if index is None else _general_detectors(task, feats, size, index)
        h, w = size
        top, left = -R0, -C0
        pads = (top, left, GH - (task.height - h + 1) - top, GW - (task.width - w + 1) - left)
        branches.append((det, ReLU(), _identity(len(feats), pads)))
        chans += [f.name for f in feats]
    layers: list[Layer] = trunk + [Parallel(tuple(branches))]
    top_level = max(task.level(g.name) for g in task.parts)
    for L in range(2, top_level + 1):
        C = len(chans)
        level_branches: list = [(_identity(C),)]
        new = []
        for j in sorted({g.jitter for g in task.parts if task.level(g.name) == L}):
            gs = [g for g in task.parts if task.level(g.name) == L and g.jitter == j]
            KH = 1 + max(r for g in gs for _, r, _ in g.pieces)
            KW = 1 + max(c for g in gs for _, _, c in g.pieces)
            W = _zeros((len(gs), C, KH, KW))
            for o, g in enumerate(gs):
                for n, r, c in set(g.pieces):  # a piece listed twice is one condition
                    W[o, chans.index(n), r, c] = Fraction(1)
            bias = [Fraction(1 - len(set(g.pieces))) for g in gs]
            and_units = GeneralConv2d(fraction_array(list(W.ravel()), W.shape), fraction_array(bias, (len(gs),)),
                                      pads=(0, 0, KH - 1, KW - 1))
            level_branches.append((MaxPool((2 * j + 1, 2 * j + 1), (1, 1), (j, j, j, j)), and_units, ReLU()))
            new += [g.name for g in gs]
        layers.append(Parallel(tuple(level_branches)))
        chans += new
    K, F = len(task.classes), len(chans)
    Wh = _zeros((K, F))
    bh = []
    for c, cls in enumerate(task.classes):
        for name in cls.required:
            Wh[c, chans.index(name)] = Fraction(1)
        bh.append(Fraction(1 - len(cls.required)))
    head = Dense(fraction_array(list(Wh.ravel()), (K, F)), fraction_array(bh, (K,)))
    layers += [GlobalMaxPool(), Flatten(), head, ReLU()]
    return Network((task.channels, task.height, task.width), tuple(layers), task.class_names, tuple(chans))
