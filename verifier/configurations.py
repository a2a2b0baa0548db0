"""Configuration lemmas: the exact range of each pooled channel of a general local stack over
the local configurations of a class (``docs/configurations.md``).

Stage: network -> configuration lemmas (proof search side; the checker re-derives them with
its own code in ``checker/configurations.py``). Trusted: no; every range it claims is
re-derived by the checker, and a verdict that rests on it is PROVED only through the head
lemma it feeds.

For ``N = Head ∘ GlobalMax ∘ L`` with ``L`` a stack of convolutions (any kernel, stride,
dilation and padding), ReLUs, max pooling and per-channel affine maps, output
position ``u`` of a branch reads the input window ``R(u)`` = rows ``u_r·S .. u_r·S + F - 1``
(columns likewise), and its value is ``L(content of R(u))``: the stack evaluated on that crop
alone. In an image of class ``c`` the base content of a window is fixed by its **local
configuration**: the placements of the scene that meet the window, at their offsets from the
window's corner. Placements far outside, anchor rules, the border and the canvas size only
remove configurations, never add one, so the set of every configuration a class allows in a
window (placements pairwise apart by the class's gap, at most ``copies`` of each required
feature and ``max_distractors`` distractors) contains every window of every image of ``c``:

- ``hi_k(c)`` = the largest value of channel ``k`` over those configurations (over the noise
  box: interval bounds) bounds the pooled value from above;
- every scene of ``c`` places each required ``f`` at some anchor ``a``; the windows whose
  corner ``a - o`` is an output position (``o ≡ a`` mod the stride, the window inside the
  canvas) see ``f`` at offset ``o``, so the pooled value is at least
  ``L(a) = max over those o of m(f, o)``, where ``m(f, o)`` is the least value over the
  configurations with ``f`` at ``o``; with ``copies`` placements of ``f`` pairwise apart, the
  least largest ``L`` over the copies (:func:`copies_floor`) is ``lo_k(c)``.

With padding, output positions are grouped per axis by the crop that determines them
(:func:`window_types`: the interior, and each border row or column on its own); each group's
windows are its in-canvas crops at its own canvas positions, evaluated with the padding they
read, and the bounds above range over every group (docs/configurations.md, "Padding").

The paper's network is the special case that ``compositional.py`` handles by its window lemma;
this module covers every other network of the form.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from types import SimpleNamespace

import numpy as np

from cnnproof.constructions.task import ClassSpec, Task
from cnnproof.verifier.deadline import check
from cnnproof.verifier.exact import to_scaled_ints
from cnnproof.verifier.network import (Affine, Conv2d, Dense, Flatten, GeneralConv2d, GlobalMaxPool, MaxPool,
                                       Network, Parallel, ReLU, _conv_apply, _fit, _maxabs, _pad, _run)

DEFAULT_BUDGET = 1_000_000  # configurations per class and window size (about 8 s)


class ConfigurationBudgetExceeded(Exception):
    """More local configurations than the budget: the lemma is undecided (UNKNOWN), never guessed."""


# ---------------------------------------------------------------------------------------------
# The network's shape
# ---------------------------------------------------------------------------------------------


@dataclass
class WindowType:
    """Output positions of a branch whose values are one function of the canvas cells they read:
    the interior (every window inside the canvas) or one border row and/or column."""

    layers: list  # the local stack on the crop: each layer's padding on the border sides only
    window: tuple[int, int]  # the in-canvas part of the receptive field (rows, cols)
    rows: list[int]  # the canvas rows of the crop's top edge, one per output row of the type
    cols: list[int]
    border: bool  # some padding cell reaches these windows
    axis: tuple[int, int]  # (row group, column group): the indices of its groups on each axis


@dataclass
class LocalBranch:
    layers: list  # the local stack
    window: tuple[int, int]  # F: the receptive field of one output position
    stride: tuple[int, int]  # S: output positions are S apart on the input
    channels: int
    types: list = None  # the WindowTypes of the canvas (one, the interior, without padding)


@dataclass
class LocalShape:
    branches: list[LocalBranch]
    head: list
    channels: list[tuple[int, int]]  # pooled index -> (branch, output channel)


def _geometry(layer):
    """(kernel, stride, dilation) of a spatial layer; None for a pointwise one."""
    if isinstance(layer, Conv2d):
        return tuple(layer.weight.shape[2:]), (1, 1), (1, 1)
    if isinstance(layer, GeneralConv2d):
        return tuple(layer.weight.shape[2:]), layer.stride, layer.dilation
    if isinstance(layer, MaxPool):
        return layer.kernel, layer.stride, layer.dilation
    return None


def _local_reason(layer, C: int) -> str | None:
    """Why ``layer`` cannot be part of a local stack, or None."""
    if isinstance(layer, Affine):
        if layer.scale.ndim != 3 or layer.scale.shape[1:] != (1, 1) or layer.shift.shape[1:] != (1, 1):
            return "an affine layer that is not per channel"
        return None
    if isinstance(layer, (Conv2d, GeneralConv2d, MaxPool, ReLU)):
        return None
    return f"a {layer.kind} layer in the local stack"


def local_decompose(net: Network) -> LocalShape | str:
    """The Head ∘ GlobalMax ∘ L structure of ``net`` with L a general valid local stack."""
    layers = list(net.layers)
    at = next((k for k, l in enumerate(layers) if isinstance(l, (GlobalMaxPool, Parallel))), None)
    if at is None:
        return "no global max pooling"
    if isinstance(layers[at], Parallel):
        bodies = [layers[:at] + list(b) for b in layers[at].branches]
        rest = layers[at + 1:]
    else:
        if at + 1 >= len(layers) or not isinstance(layers[at + 1], Flatten):
            return "global max pooling is not followed by flatten"
        bodies = [layers[:at + 2]]
        rest = layers[at + 2:]
    branches = []
    for body in bodies:
        if len(body) < 3 or not isinstance(body[-2], GlobalMaxPool) or not isinstance(body[-1], Flatten):
            return "a branch does not end with global max pooling and flatten"
        local = body[:-2]
        F, S = [1, 1], [1, 1]
        C = net.input_shape[0]
        for l in local:
            why = _local_reason(l, C)
            if why:
                return why
            g = _geometry(l)
            if g is not None:
                (kh, kw), (sh, sw), (dh, dw) = g
                F = [F[0] + (kh - 1) * dh * S[0], F[1] + (kw - 1) * dw * S[1]]
                S = [S[0] * sh, S[1] * sw]
            if isinstance(l, (Conv2d, GeneralConv2d)):
                C = l.weight.shape[0]
        if not any(isinstance(l, (Conv2d, GeneralConv2d)) for l in local):
            return "a branch has no convolution"
        branches.append(LocalBranch(local, (F[0], F[1]), (S[0], S[1]), C, window_types(local, net.input_shape[1:])))
    if not rest or not all(isinstance(l, (Dense, ReLU)) for l in rest):
        return "the head is not dense and ReLU layers"
    channels = [(b, o) for b, br in enumerate(branches) for o in range(br.channels)]
    return LocalShape(branches, rest, channels)


def _axis_types(geoms: list, n: int) -> list[tuple[tuple, int, list[int]]]:
    """One axis of a local stack on ``n`` cells: the output positions grouped by how padding
    meets their windows. ``geoms`` per layer: (kernel, stride, dilation, pad before, pad after),
    None for a pointwise layer. Per group: (per layer the padding the crop needs on each side,
    the crop's length, the canvas position of the crop's first cell per output position)."""
    sizes = [n]
    for g in geoms:
        k, s, d, p0, p1 = g or (1, 1, 1, 0, 0)
        sizes.append((sizes[-1] + p0 + p1 - (k - 1) * d - 1) // s + 1)
    groups: dict = {}
    for u in range(sizes[-1]):
        first = last = u  # the cells of the current map that output u depends on
        plan: list = [None] * len(geoms)
        for i in reversed(range(len(geoms))):
            if geoms[i] is None:
                continue
            k, s, d, p0, p1 = geoms[i]
            a, b = first * s - p0, last * s - p0 + (k - 1) * d
            first, last = max(0, a), min(sizes[i] - 1, b)
            plan[i] = (first - a, b - last)  # padding cells read before / after the map
        groups.setdefault((tuple(plan), last - first + 1), []).append(first)
    return [(plan, h, corners) for (plan, h), corners in groups.items()]


def window_types(local: list, hw) -> list[WindowType]:
    """The WindowTypes of a local stack on an ``hw`` canvas: per axis the interior group (no
    padding reaches it) and each border row (column) on its own; their products."""
    geo = []
    for l in local:
        g = _geometry(l)
        pads = getattr(l, "pads", (0, 0, 0, 0))
        geo.append(None if g is None else tuple((g[0][a], g[1][a], g[2][a], pads[a], pads[a + 2]) for a in (0, 1)))
    axes = [_axis_types([g and g[a] for g in geo], hw[a]) for a in (0, 1)]
    out = []
    for ri, (rplan, h, rows) in enumerate(axes[0]):
        for ci, (cplan, w, cols) in enumerate(axes[1]):
            layers = []
            for l, rp, cp in zip(local, rplan, cplan):
                if isinstance(l, (GeneralConv2d, MaxPool)):
                    l = dataclasses.replace(l, pads=(rp[0], cp[0], rp[1], cp[1]))
                layers.append(l)
            border = any(any(p) for p in rplan + cplan if p is not None)
            out.append(WindowType(layers, (h, w), rows, cols, border, (ri, ci)))
    return out


# ---------------------------------------------------------------------------------------------
# Local configurations of a class in an F_h x F_w window
# ---------------------------------------------------------------------------------------------


@dataclass
class Placements:
    """Every placement of an item of the class whose footprint meets the window."""

    names: list[str]  # per placement: the feature
    offsets: np.ndarray  # (P, 2) the anchor's offset from the window's corner
    required: np.ndarray  # (P,) bool: a required feature (else a distractor)
    delta: np.ndarray  # (P, C, Fh, Fw) template minus background on the support inside the window
    compatible: np.ndarray  # (P, P) bool: the two can be in one scene (apart by the gap, counts)
    background: np.ndarray  # (C, Fh, Fw) the all-background window
    den: int
    max_items: int


def class_placements(task: Task, cls: ClassSpec, window: tuple[int, int]) -> Placements:
    Fh, Fw = window
    feats = {f.name: f for f in task.features}
    names = list(cls.required) + ([d for d in cls.distractors if d not in cls.required] if cls.max_distractors else [])
    vals, den = to_scaled_ints(np.array([task.background] + [v for n in names for *_, v in feats[n].support()],
                                        dtype=object))
    vals = [int(v) for v in vals]
    bg = vals[0]
    rows, pnames, offs, req, deltas, boxes = [], [], [], [], [], []
    k = 1
    sup = {}
    for n in names:
        sup[n] = [(ch, a, b, vals[k + i] - bg) for i, (ch, a, b, _) in enumerate(feats[n].support())]
        k += len(sup[n])
    C = task.channels
    for n in names:
        f = feats[n]
        for dr in range(-(f.height - 1), Fh):
            for dc in range(-(f.width - 1), Fw):
                d = np.zeros((C, Fh, Fw), dtype=np.int64)
                for ch, a, b, v in sup[n]:
                    if 0 <= dr + a < Fh and 0 <= dc + b < Fw:
                        d[ch, dr + a, dc + b] = v
                pnames.append(n)
                offs.append((dr, dc))
                req.append(n in cls.required)
                deltas.append(d)
                boxes.append((dr, dc, f.height, f.width))
    B = np.array(boxes, dtype=np.int64).reshape(-1, 4)
    g = cls.gap
    r0, c0, h, w = (B[:, i] for i in range(4))
    apart = ((r0[:, None] + h[:, None] - 1 + g < r0[None, :]) | (r0[None, :] + h[None, :] - 1 + g < r0[:, None])
             | (c0[:, None] + w[:, None] - 1 + g < c0[None, :]) | (c0[None, :] + w[None, :] - 1 + g < c0[:, None]))
    idx = {n: i for i, n in enumerate(names)}
    nid = np.array([idx[n] for n in pnames], dtype=np.int64)
    reqa = np.array(req, dtype=bool)
    if cls.copies == 1:  # a required feature at most once
        apart &= ~((nid[:, None] == nid[None, :]) & reqa[:, None])
    if cls.max_distractors == 1:
        apart &= ~(~reqa[:, None] & ~reqa[None, :])
    max_items = cls.copies * len(cls.required) + cls.max_distractors
    return Placements(pnames, np.array(offs, dtype=np.int64).reshape(-1, 2), reqa,
                      np.stack(deltas) if deltas else np.zeros((0, C, Fh, Fw), dtype=np.int64), apart,
                      np.full((C, Fh, Fw), bg, dtype=np.int64), den, max_items)


def _axis_groups(corners: list[int], F: int, spans: dict[str, tuple[int, range]]) -> list[dict[str, frozenset]]:
    """The window corners (canvas positions of the crop's first cell) on one axis grouped by
    which offsets each item can take there (``t + o`` an allowed anchor, the item meeting the
    crop of length ``F``); only the maximal groups (the others see a subset)."""
    sigs = set()
    for t in corners:
        sigs.add(tuple((name, frozenset(a - t for a in anchors if 1 - size <= a - t <= F - 1))
                       for name, (size, anchors) in sorted(spans.items())))
    sigs = [dict(s) for s in sigs]
    keep = []
    for s in sigs:
        if not any(o is not s and all(s[k] <= o[k] for k in s) and any(s[k] < o[k] for k in s) for o in sigs):
            if dict(s) not in keep:
                keep.append(s)
    return keep


def corner_groups(task: Task, cls: ClassSpec, pl: Placements, wt: WindowType) -> list[np.ndarray]:
    """Per maximal group of window corners of the type: the mask of the placements possible there."""
    from cnnproof.constructions.scenes import anchors_for

    feats = {f.name: f for f in task.features}
    names = sorted(set(pl.names))
    grids = {n: anchors_for(task, cls, feats[n]) for n in names}
    rows = _axis_groups(wt.rows, wt.window[0], {n: (feats[n].height, grids[n].rows) for n in names})
    cols = _axis_groups(wt.cols, wt.window[1], {n: (feats[n].width, grids[n].cols) for n in names})
    out = []
    for r in rows:
        for c in cols:
            out.append(np.array([int(o[0]) in r[n] and int(o[1]) in c[n] for n, o in zip(pl.names, pl.offsets)],
                                dtype=bool))
    return out


def configurations(pl: Placements, cls: ClassSpec, budget: int = DEFAULT_BUDGET, deadline=None, block: int = 8192,
                   mask: np.ndarray | None = None):
    """Every local configuration as a sorted tuple of placement ids (restricted to ``mask``),
    level by level (k items), in blocks: yields (k, an (n, k) int array)."""
    P = len(pl.names)
    yield 0, np.zeros((1, 0), dtype=np.int64)
    if P == 0 or pl.max_items == 0:
        return
    allowed = np.ones(P, dtype=bool) if mask is None else mask
    cur = np.flatnonzero(allowed).astype(np.int64)[:, None]
    total = 1
    nid = {n: i for i, n in enumerate(dict.fromkeys(pl.names))}
    ids = np.array([nid[n] for n in pl.names], dtype=np.int64)
    need_count = cls.copies > 1 or cls.max_distractors > 1
    k = 1
    while len(cur):
        total += len(cur)
        if total > budget:
            raise ConfigurationBudgetExceeded(f"more than {budget} local configurations of class {cls.name}")
        for s in range(0, len(cur), block):
            yield k, cur[s:s + block]
        check(deadline)
        if k >= pl.max_items:
            return
        nxt = []
        for s in range(0, len(cur), block):
            t = cur[s:s + block]
            ok = np.ones((len(t), P), dtype=bool)
            for j in range(k):
                ok &= pl.compatible[t[:, j]]
            ok &= (np.arange(P)[None, :] > t[:, -1:]) & allowed[None, :]
            a, b = np.nonzero(ok)
            ext = np.concatenate([t[a], b[:, None]], axis=1)
            if need_count and len(ext):
                keep = np.ones(len(ext), dtype=bool)
                dcount = (~pl.required[ext]).sum(axis=1)
                keep &= dcount <= cls.max_distractors
                for n, i in nid.items():
                    if n in cls.required:
                        keep &= ((ids[ext] == i) & pl.required[ext]).sum(axis=1) <= cls.copies
                ext = ext[keep]
            nxt.append(ext)
            if sum(len(e) for e in nxt) + total > budget:
                raise ConfigurationBudgetExceeded(f"more than {budget} local configurations of class {cls.name}")
        cur = np.concatenate(nxt) if nxt else np.zeros((0, k + 1), dtype=np.int64)
        k += 1


# ---------------------------------------------------------------------------------------------
# Exact values of a local stack on windows (with noise: interval bounds over the noise box)
# ---------------------------------------------------------------------------------------------


def _scale(a: np.ndarray, m: int) -> np.ndarray:
    """``a * m`` exactly (object integers when int64 could overflow)."""
    if m == 1:
        return a
    return _fit(a, max(_maxabs(a), 1) * m) * m


def _common(a: np.ndarray, da: int, b: np.ndarray, db: int):
    D = math.lcm(da, db)
    return _scale(a, D // da), _scale(b, D // db), D


def _add(a, da, b, db):
    a, b, D = _common(a, da, b, db)
    return a + b, D


def _split_layer(layer):
    """(positive part, negative part) of a convolution's weights, both without bias."""
    wi, dw, bi, db, wsum, bmax = layer._scaled
    pos = np.vectorize(lambda v: v if v > 0 else 0, otypes=[wi.dtype])(wi)
    neg = wi - pos
    zero = np.zeros_like(bi)
    mk = lambda w: SimpleNamespace(weight=layer.weight, _scaled=(w, dw, zero, 1, wsum, 0))
    return mk(pos), mk(neg)


def _geom(layer):
    return ((1, 1), (1, 1)) if isinstance(layer, Conv2d) else (layer.stride, layer.dilation)


def interval_run(layers: list, lo: np.ndarray, hi: np.ndarray, den: int):
    """Sound bounds (lo, hi, den) on ``layers`` over every input in the box [lo, hi] / den."""
    for l in layers:
        if isinstance(l, (Conv2d, GeneralConv2d)):
            P, N = _split_layer(l)
            st, dil = _geom(l)
            if isinstance(l, GeneralConv2d) and any(l.pads):  # zero padding: exact in both bounds
                lo, hi = _pad(lo, l.pads, 0), _pad(hi, l.pads, 0)
            L, DL = _add(*_conv_apply(P, lo, den, st, dil), *_conv_apply(N, hi, den, st, dil))
            U, DU = _add(*_conv_apply(P, hi, den, st, dil), *_conv_apply(N, lo, den, st, dil))
            _, _, bi, db, _, _ = l._scaled
            bias = np.asarray(bi).reshape(1, -1, 1, 1)
            L, DL = _add(L, DL, bias, db)
            U, DU = _add(U, DU, bias, db)
            lo, hi, den = _common(L, DL, U, DU)
        elif isinstance(l, Affine):
            si, ds, hs, dh, _, _ = l._scaled
            s = np.asarray(si)[None]
            bound = max(_maxabs(lo), _maxabs(hi), 1) * max(_maxabs(s), 1)
            s = _fit(s, bound)
            x1, x2 = _fit(lo, bound) * s, _fit(hi, bound) * s  # object integers when int64 could overflow
            a, b = np.minimum(x1, x2), np.maximum(x1, x2)
            sh = np.asarray(hs)[None]
            lo, D = _add(a, den * ds, sh, dh)
            hi, _ = _add(b, den * ds, sh, dh)
            den = D
        elif isinstance(l, (ReLU, MaxPool)):
            lo, _ = l.apply(lo, den)
            hi, _ = l.apply(hi, den)
        else:
            raise TypeError(f"no interval evaluation for {l.kind}")
    return lo, hi, den


def window_values(wt: WindowType, x: np.ndarray, den: int, noise: Fraction):
    """(lo, hi, den): every channel on each window of the batch ``x`` (crops of the type ``wt``,
    integers over ``den``); exact without noise, interval bounds over the noise box otherwise
    (the noise on the canvas cells; padding cells are exact)."""
    if noise == 0:
        out, d = _run(wt.layers, x, den)
        return out[:, :, 0, 0], out[:, :, 0, 0], d
    dn = Fraction(noise) * den
    xs = _scale(x, dn.denominator)
    pad = _fit(np.full(x.shape, dn.numerator, dtype=object), (max(_maxabs(xs), 1) + dn.numerator) * 2)
    xs = _fit(xs, (max(_maxabs(xs), 1) + dn.numerator) * 2)
    lo, hi, d = interval_run(wt.layers, xs - pad, xs + pad, den * dn.denominator)
    return lo[:, :, 0, 0], hi[:, :, 0, 0], d


# ---------------------------------------------------------------------------------------------
# The lemma: per class and channel, the range of the pooled value
# ---------------------------------------------------------------------------------------------


@dataclass
class ChannelRange:
    channel: int
    lo: Fraction  # every image of the class has pooled value >= lo
    hi: Fraction  # and <= hi
    argmax: int  # the content index attaining hi (for counterexample search)


@dataclass
class ClassLemmas:
    cls: str
    ranges: list[ChannelRange]
    configurations: int  # enumerated, summed over window sizes
    argmax: dict  # channel -> (window, the placements of a configuration attaining hi)


def _seen(types: list[tuple[list[int], int]], size: int, anchors) -> dict[frozenset, list[int]]:
    """For every anchor ``a`` of an item of extent ``size`` on one axis: the (type, offset) pairs
    at which some window sees the item (a corner ``t`` of type ``i``, crop length ``F``,
    ``o = a - t`` with ``1 - size <= o <= F - 1``); per distinct set, the anchors that have it."""
    out: dict[frozenset, list[int]] = {}
    for a in anchors:
        key = frozenset((i, a - t) for i, (corners, F) in enumerate(types) for t in corners if 1 - size <= a - t <= F - 1)
        out.setdefault(key, []).append(a)
    return out


def copies_floor(groups: list, copies: int, h: int, w: int, gap: int):
    """The least pooled vector that ``copies`` placements of one required h x w feature force.

    ``groups``: (anchor rows, anchor columns, v) where every anchor of the group forces the
    pooled vector >= v. A scene places the feature exactly ``copies`` times at anchors pairwise
    apart (rows or columns at least h + gap, resp. w + gap, apart), so it is >= the
    componentwise max of the copies' vectors; the floor is the least such max over the tuples of
    groups whose every pair can hold two apart anchors (a superset of the scenes' tuples: sound).
    Tuples of at most 3 copies are considered (fewer copies force less: still sound)."""
    G = len(groups)
    k = min(copies, 3 if G <= 24 else 2)
    if k <= 1:
        return np.minimum.reduce([g[2] for g in groups])

    def apart(a, b) -> bool:
        (r1, c1, _), (r2, c2, _) = groups[a], groups[b]
        return (max(r2) - min(r1) >= h + gap or max(r1) - min(r2) >= h + gap
                or max(c2) - min(c1) >= w + gap or max(c1) - min(c2) >= w + gap)

    ok = [[apart(a, b) for b in range(G)] for a in range(G)]
    best = None
    for t in itertools.combinations_with_replacement(range(G), k):
        if all(ok[a][b] for a, b in itertools.combinations(t, 2)):
            v = np.maximum.reduce([groups[a][2] for a in t])
            best = v if best is None else np.minimum(best, v)
    return best if best is not None else np.minimum.reduce([g[2] for g in groups])


class _Acc:
    """Integer arrays over one running denominator (rescaled when a block brings a new one)."""

    def __init__(self):
        self.den = None
        self.arrays: dict[str, np.ndarray] = {}

    def align(self, lo, hi, d):
        if self.den is None:
            self.den = d
        elif d != self.den:
            D = math.lcm(self.den, d)
            for k, a in self.arrays.items():
                self.arrays[k] = _scale(a, D // self.den)
            self.den = D
        return _scale(lo, self.den // d), _scale(hi, self.den // d)


def class_lemmas(task: Task, shape: LocalShape, c: int, budget: int = DEFAULT_BUDGET, deadline=None) -> ClassLemmas:
    from cnnproof.constructions.scenes import anchors_for

    cls = task.classes[c]
    feats = {f.name: f for f in task.features}
    ranges: list[ChannelRange] = []
    total = 0
    argmax: dict = {}
    for b, br in enumerate(shape.branches):
        O = br.channels
        acc = _Acc()
        A = acc.arrays
        best_t: list = [None] * O  # per channel: (type, placement ids) attaining the top
        where: dict = {}  # (type, feature, row, col) -> (type, placement id) of a required placement
        pls = []
        for ti, wt in enumerate(br.types):
            pl = class_placements(task, cls, wt.window)
            pls.append(pl)
            P = len(pl.names)
            has = np.zeros(P, dtype=bool)
            blocks = (blk for mask in corner_groups(task, cls, pl, wt)
                      for blk in configurations(pl, cls, budget, deadline, mask=mask))
            for k, t in blocks:
                x = pl.background[None] + (pl.delta[t].sum(axis=1) if k else 0)
                lo, hi = acc.align(*window_values(wt, x, pl.den, task.noise))
                total += len(t)
                hm, ha, lm = hi.max(axis=0), hi.argmax(axis=0), lo.min(axis=0)
                if "top" not in A:
                    A["top"] = hm.copy()
                    best_t = [(ti, [int(p) for p in t[ha[o]]]) for o in range(O)]
                else:
                    for o in range(O):
                        if hm[o] > A["top"][o]:
                            best_t[o] = (ti, [int(p) for p in t[ha[o]]])
                    A["top"] = np.maximum(A["top"], hm)
                fk = f"floor{ti}"  # the least value of a window of this type
                A[fk] = lm.copy() if fk not in A else np.minimum(A[fk], lm)
                if f"pmin{ti}" not in A:
                    A[f"pmin{ti}"] = np.zeros((P, O), dtype=lo.dtype)
                for j in range(k):
                    col = t[:, j]
                    keep = pl.required[col]
                    if not keep.any():
                        continue
                    col, lk = col[keep], lo[keep]
                    order = np.argsort(col, kind="stable")
                    col, lk = col[order], lk[order]
                    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
                    mins = np.minimum.reduceat(lk, starts, axis=0)
                    ps = col[starts]
                    pm = A[f"pmin{ti}"]
                    if pm.dtype != mins.dtype:
                        pm = A[f"pmin{ti}"] = pm.astype(object)
                        mins = mins.astype(object)
                    old = pm[ps]
                    pm[ps] = np.where(has[ps][:, None], np.minimum(old, mins), mins)
                    has[ps] = True
                check(deadline)
            where.update({(ti, pl.names[p], int(pl.offsets[p, 0]), int(pl.offsets[p, 1])): p
                          for p in range(P) if has[p]})
        D = acc.den
        # every image has a window of each type: the pooled value is at least each type's least value
        floor = np.max(np.stack([A[f"floor{ti}"] for ti in range(len(br.types))]), axis=0)
        best = floor.copy()
        tindex = {wt.axis: ti for ti, wt in enumerate(br.types)}
        rtypes = [(wt.rows, wt.window[0]) for wt in br.types if wt.axis[1] == 0]  # one per row group
        ctypes = [(wt.cols, wt.window[1]) for wt in br.types if wt.axis[0] == 0]
        for n in cls.required:
            f = feats[n]
            grid = anchors_for(task, cls, f)
            groups = []  # (anchor rows, anchor columns, the pooled vector each of them forces)
            for srow, rs in _seen(rtypes, f.height, grid.rows).items():
                for scol, cs in _seen(ctypes, f.width, grid.cols).items():
                    ms = [A[f"pmin{ti}"][where[key]] for (ri, r) in srow for (ci, q) in scol
                          for ti in [tindex[(ri, ci)]] for key in [(ti, n, r, q)] if key in where]
                    groups.append((rs, cs, np.max(np.stack(ms), axis=0) if ms else floor))
            worst = copies_floor(groups, cls.copies, f.height, f.width, cls.gap) if groups else None
            if worst is not None:
                best = np.maximum(best, worst)
        for o in range(O):
            kk = shape.channels.index((b, o))
            ranges.append(ChannelRange(kk, Fraction(int(best[o]), D), Fraction(int(A["top"][o]), D), -1))
            ti, ids = best_t[o]
            wt, pl = br.types[ti], pls[ti]
            items = [(pl.names[p], int(pl.offsets[p, 0]), int(pl.offsets[p, 1])) for p in ids]
            # at a window of the type: offsets from the canvas corner (the first try of _assemble)
            argmax[kk] = (br.window, [(n, r + wt.rows[0], q + wt.cols[0]) for n, r, q in items])
    ranges.sort(key=lambda r: r.channel)
    return ClassLemmas(cls.name, ranges, total, argmax)
