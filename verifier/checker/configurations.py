"""Configuration lemmas, re-derived (MODEL.md section 6 generalised; docs/configurations.md).
Trusted: yes (checker). Stage: certificate obligation -> re-derived channel ranges.

For a network Head ∘ GlobalMax ∘ L, L a stack of convolutions, ReLUs, max pooling (padded or
not) and per-channel affine maps, the checker enumerates, with its own code, every local
configuration of a class in the crop of each group of output positions (``_crops``) (placements that meet the window,
pairwise apart by the gap, within the class's counts), evaluates the stack on each window
exactly (with noise: interval bounds over the noise box, from the layers' own exact evaluation
of the positive and negative weights), and derives for each channel the range [lo, hi] of the
pooled value over every image of the class. The prover's claimed ranges must equal these.
"""

from __future__ import annotations

import dataclasses
import itertools
from fractions import Fraction

import numpy as np

from cnnproof.constructions.task import Task
from cnnproof.verifier.exact import fraction_array, to_scaled_ints
from cnnproof.verifier.network import (Affine, Conv2d, Dense, Flatten, GeneralConv2d, GlobalMaxPool, MaxPool,
                                       Network, Parallel, ReLU)


def _geo(l):
    """(kernel, stride, dilation, pads) of a spatial layer, None for a pointwise one."""
    if isinstance(l, ReLU):
        return None
    if isinstance(l, Affine):
        if l.scale.ndim != 3 or l.scale.shape[1:] != (1, 1) or l.shift.shape[1:] != (1, 1):
            raise ValueError("an affine layer that is not per channel")
        return None
    if isinstance(l, Conv2d):
        return l.weight.shape[2:], (1, 1), (1, 1), (0, 0, 0, 0)
    if isinstance(l, (GeneralConv2d, MaxPool)):
        return (l.weight.shape[2:] if isinstance(l, GeneralConv2d) else l.kernel), l.stride, l.dilation, l.pads
    raise ValueError(f"a {l.kind} layer in the local stack")


def local_shape(net: Network) -> list[tuple[list, tuple[int, int], tuple[int, int], int]]:
    """Per branch: (local layers, window F, stride S, channels). ValueError when not of the form."""
    layers = list(net.layers)
    at = next((k for k, l in enumerate(layers) if isinstance(l, (GlobalMaxPool, Parallel))), None)
    if at is None:
        raise ValueError("no global max pooling")
    if isinstance(layers[at], Parallel):
        bodies = [layers[:at] + list(b) for b in layers[at].branches]
        head = layers[at + 1:]
    else:
        bodies, head = [layers[:at + 2]], layers[at + 2:]
    if not head or not all(isinstance(l, (Dense, ReLU)) for l in head):
        raise ValueError("the head is not dense and ReLU layers")
    out = []
    for body in bodies:
        if len(body) < 3 or not isinstance(body[-2], GlobalMaxPool) or not isinstance(body[-1], Flatten):
            raise ValueError("a branch does not end with global max pooling and flatten")
        F, S, C = [1, 1], [1, 1], net.input_shape[0]
        for l in body[:-2]:
            g = _geo(l)
            if g is None:
                continue
            k, st, dil, _ = g
            for a in (0, 1):
                F[a] += (k[a] - 1) * dil[a] * S[a]
                S[a] *= st[a]
            if isinstance(l, (Conv2d, GeneralConv2d)):
                C = l.weight.shape[0]
        out.append((body[:-2], (F[0], F[1]), (S[0], S[1]), C))
    return out


def _crops(layers, n: int, a: int) -> list[tuple[list, int, list]]:
    """Axis ``a`` (0 rows, 1 columns) of ``layers`` on ``n`` cells: the output positions grouped
    by the crop that determines them. Per group: (per layer the padding (before, after) that the
    crop reads, None for a pointwise layer; the crop's length; its first canvas cell per position)."""
    geo = [_geo(l) for l in layers]
    sizes = [n]
    for g in geo:
        if g is None:
            sizes.append(sizes[-1])
        else:
            k, st, dil, p = g
            sizes.append((sizes[-1] + p[a] + p[a + 2] - (k[a] - 1) * dil[a] - 1) // st[a] + 1)
    out: dict = {}
    for u in range(sizes[-1]):
        lo, hi, need = u, u, []
        for i in range(len(layers) - 1, -1, -1):
            if geo[i] is None:
                need.append(None)
                continue
            k, st, dil, p = geo[i]
            r0, r1 = lo * st[a] - p[a], hi * st[a] - p[a] + (k[a] - 1) * dil[a]  # cells read, padding too
            lo, hi = max(r0, 0), min(r1, sizes[i] - 1)
            need.append((lo - r0, r1 - hi))
        out.setdefault((tuple(reversed(need)), hi - lo + 1), []).append(lo)
    return [(list(need), h, firsts) for (need, h), firsts in out.items()]


def _groups(corners, F: int, spans: dict) -> list[dict]:
    """Per maximal group of window corners (the crop's first canvas cell) on one axis: the
    offsets each item can take there (its anchor ``t + o`` allowed, the item meeting the crop of
    length F); dominated groups see a subset."""
    sigs = []
    for t in corners:
        sig = {name: frozenset(a - t for a in anchors if 1 - size <= a - t <= F - 1)
               for name, (size, anchors) in spans.items()}
        if sig not in sigs:
            sigs.append(sig)
    return [s for s in sigs if not any(o != s and all(s[k] <= o[k] for k in s) for o in sigs)]


def _allowed(task: Task, cls, f) -> tuple[set, set]:
    ok = [(i, j) for i in range(task.height - f.height + 1) for j in range(task.width - f.width + 1)
          if cls.anchors.allows(i, j)]
    return {i for i, _ in ok}, {j for _, j in ok}


def _configs(task: Task, cls, F, rows_at, cols_at):
    """Every local configuration of ``cls`` in an F crop whose first cell is one of the corners
    ``rows_at`` x ``cols_at``: tuples of (feature, row, col) offsets, each once."""
    feats = {f.name: f for f in task.features}
    items = list(cls.required) + (list(cls.distractors) if cls.max_distractors else [])
    allowed = {n: _allowed(task, cls, feats[n]) for n in items}
    rows = _groups(rows_at, F[0], {n: (feats[n].height, allowed[n][0]) for n in items})
    cols = _groups(cols_at, F[1], {n: (feats[n].width, allowed[n][1]) for n in items})
    seen = set()
    for rg in rows:
        for cg in cols:
            cands = [(n, r, c) for n in items for r in sorted(rg[n]) for c in sorted(cg[n])]
            for conf in _grow(cls, feats, cands):
                key = tuple(sorted(conf))
                if key not in seen:
                    seen.add(key)
                    yield key


def _grow(cls, feats, cands):

    def apart(p, q) -> bool:
        fp, fq = feats[p[0]], feats[q[0]]
        g = cls.gap
        return (p[1] + fp.height - 1 + g < q[1] or q[1] + fq.height - 1 + g < p[1]
                or p[2] + fp.width - 1 + g < q[2] or q[2] + fq.width - 1 + g < p[2])

    def grow(start, chosen):
        yield list(chosen)
        for i in range(start, len(cands)):
            p = cands[i]
            n = p[0]
            if n in cls.required:
                if sum(q[0] == n for q in chosen) >= cls.copies:
                    continue
            elif sum(q[0] not in cls.required for q in chosen) >= cls.max_distractors:
                continue
            if all(apart(p, q) for q in chosen):
                chosen.append(p)
                yield from grow(i + 1, chosen)
                chosen.pop()

    yield from grow(0, [])


def _ints(task: Task, vals) -> tuple[dict, int]:
    den = 1
    for v in vals:
        den = den * v.denominator // __import__("math").gcd(den, v.denominator)
    return {v: int(v * den) for v in vals}, den


def _windows(task: Task, confs, F) -> tuple[np.ndarray, int]:
    """The configurations' base windows as integers over one denominator."""
    vals = {task.background} | {v for f in task.features for *_, v in f.support()}
    scaled, den = _ints(task, vals)
    out = np.full((len(confs), task.channels, F[0], F[1]), scaled[task.background], dtype=np.int64)
    sup = {f.name: [(ch, a, b, scaled[v]) for ch, a, b, v in f.support()] for f in task.features}
    for k, conf in enumerate(confs):
        for n, r, c in conf:
            for ch, a, b, v in sup[n]:
                if 0 <= r + a < F[0] and 0 <= c + b < F[1]:
                    out[k, ch, r + a, c + b] = v
    return out, den


def _lcm(a: int, b: int) -> int:
    return a * b // __import__("math").gcd(a, b)


def _on(a: np.ndarray, da: int, D: int) -> np.ndarray:
    m = D // da
    return a if m == 1 else a.astype(object) * m


def _run(layers, x: np.ndarray, den: int):
    for l in layers:
        x, den = l.apply(x, den)
    return x, den


def _bounds(layers, lo: np.ndarray, hi: np.ndarray, den: int):
    """Interval bounds (lo, hi, den) of ``layers`` over the integer box [lo, hi] / den."""
    for l in layers:
        if isinstance(l, (Conv2d, GeneralConv2d)):
            w = l.weight
            pos = fraction_array([v if v > 0 else 0 for v in w.ravel()], w.shape)
            neg = fraction_array([v if v < 0 else 0 for v in w.ravel()], w.shape)
            zero = fraction_array([0] * len(l.bias), l.bias.shape)
            P, N = dataclasses.replace(l, weight=pos, bias=zero), dataclasses.replace(l, weight=neg, bias=zero)
            parts = [P.apply(lo, den), N.apply(hi, den), P.apply(hi, den), N.apply(lo, den)]
            bi, db = to_scaled_ints(l.bias)
            D = db
            for _, d in parts:
                D = _lcm(D, d)
            b = _on(np.asarray(bi).reshape(1, -1, 1, 1), db, D)
            (a1, d1), (a2, d2), (a3, d3), (a4, d4) = parts
            lo, hi, den = _on(a1, d1, D) + _on(a2, d2, D) + b, _on(a3, d3, D) + _on(a4, d4, D) + b, D
        elif isinstance(l, Affine):
            si, ds = to_scaled_ints(l.scale)
            ti, dt = to_scaled_ints(l.shift)
            D = _lcm(den * ds, dt)
            s = np.asarray(si, dtype=object)[None]  # Python integers: no overflow
            lo, hi = np.asarray(lo, dtype=object), np.asarray(hi, dtype=object)
            a, b = _on(lo * s, den * ds, D), _on(hi * s, den * ds, D)
            t = _on(np.asarray(ti)[None], dt, D)
            lo, hi, den = np.where(s >= 0, a, b) + t, np.where(s >= 0, b, a) + t, D
        else:  # ReLU and MaxPool are monotone
            lo, _ = l.apply(lo, den)
            hi, den = l.apply(hi, den)
    return lo, hi, den


def _padded(layers, rneed, cneed) -> list:
    """``layers`` with each spatial layer's padding reduced to what the crop reads."""
    out = []
    for l, r, c in zip(layers, rneed, cneed):
        if isinstance(l, (GeneralConv2d, MaxPool)):
            l = dataclasses.replace(l, pads=(r[0], c[0], r[1], c[1]))
        out.append(l)
    return out


def _sees(crops, size, a) -> frozenset:
    """The (crop group, offset) pairs at which some window sees an item anchored at ``a`` on one axis."""
    return frozenset((g, a - t) for g, (_, F, firsts) in enumerate(crops) for t in firsts if 1 - size <= a - t <= F - 1)


def class_ranges(task: Task, net: Network, c: int) -> list[tuple[Fraction, Fraction]]:
    """Per pooled channel: [lo, hi] bounds on its value over every image of class ``c``. The
    output positions are grouped per axis by the crop that determines them (the interior, and
    each row or column that padding reaches); a window's value is the stack on its in-canvas
    crop with the padding the crop reads, and its configurations are those of the crop."""
    cls = task.classes[c]
    out = []
    for layers, _, _, O in local_shape(net):
        rows, cols = _crops(layers, task.height, 0), _crops(layers, task.width, 1)
        least: dict = {}  # (row group, col group, feature, row, col) -> least value of the configurations holding it
        top = floor = None
        for gr, (rneed, h, rfirst) in enumerate(rows):
            for gc, (cneed, w, cfirst) in enumerate(cols):
                confs = list(_configs(task, cls, (h, w), rfirst, cfirst))
                wins, den = _windows(task, confs, (h, w))
                crop = _padded(layers, rneed, cneed)
                d = Fraction(task.noise) * den
                if d == 0:
                    lo, D = _run(crop, wins, den)
                    hi = lo
                else:
                    x = wins.astype(object) * d.denominator  # Python integers: no overflow
                    lo, hi, D = _bounds(crop, x - d.numerator, x + d.numerator, den * d.denominator)
                lo, hi = lo.reshape(len(confs), -1), hi.reshape(len(confs), -1)
                holding: dict = {}  # a required placement -> the configurations holding it
                for k, cf in enumerate(confs):
                    for p in cf:
                        if p[0] in cls.required:
                            holding.setdefault((gr, gc) + p, []).append(k)
                least.update({p: [Fraction(int(v), D) for v in lo[ks].min(axis=0)] for p, ks in holding.items()})
                lmin = [Fraction(int(x), D) for x in lo.min(axis=0)]
                hmax = [Fraction(int(x), D) for x in hi.max(axis=0)]
                floor = lmin if floor is None else [max(a, b) for a, b in zip(floor, lmin)]  # each type occurs
                top = hmax if top is None else [max(a, b) for a, b in zip(top, hmax)]
        best = list(floor)
        for n in cls.required:
            f = task.feature(n)
            ok = [(i, j) for i in range(task.height - f.height + 1) for j in range(task.width - f.width + 1)
                  if cls.anchors.allows(i, j)]
            groups: dict = {}  # (row (group, offset) pairs, column pairs) -> its anchors
            rk = {i: _sees(rows, f.height, i) for i in {i for i, _ in ok}}
            ck = {j: _sees(cols, f.width, j) for j in {j for _, j in ok}}
            for i, j in ok:
                groups.setdefault((rk[i], ck[j]), []).append((i, j))
            forced = []  # (anchors, the vector every one of them forces)
            for (sr, sc), anchors in groups.items():
                vals = [least[(g, q, n, r, s)] for g, r in sr for q, s in sc if (g, q, n, r, s) in least]
                forced.append((anchors, [max(v[o] for v in vals) for o in range(O)] if vals else floor))
            worst = _copies_floor(forced, cls.copies, f.height + cls.gap, f.width + cls.gap) if forced else None
            if worst is not None:
                best = [max(a, b) for a, b in zip(best, worst)]
        out += [(best[o], top[o]) for o in range(O)]
    return out


def _copies_floor(forced: list, copies: int, dr: int, dc: int) -> list:
    """The least componentwise max of the vectors of ``copies`` groups (at most 3) any two of
    which hold anchors at least ``dr`` rows or ``dc`` columns apart (each copy of a required
    feature forces its group's vector; the copies of a scene are that far apart)."""
    ext = [(min(r for r, _ in g), max(r for r, _ in g), min(c for _, c in g), max(c for _, c in g)) for g, _ in forced]

    def apart(a, b) -> bool:  # some anchor of a and some anchor of b that far apart
        (r0, r1, c0, c1), (s0, s1, d0, d1) = ext[a], ext[b]
        return max(r1 - s0, s1 - r0) >= dr or max(c1 - d0, d1 - c0) >= dc

    k = min(copies, 3 if len(forced) <= 24 else 2)
    best = None
    for t in itertools.combinations_with_replacement(range(len(forced)), k):
        if all(apart(a, b) for a, b in itertools.combinations(t, 2)):
            v = [max(forced[a][1][o] for a in t) for o in range(len(forced[0][1]))]
            best = v if best is None else [min(x, y) for x, y in zip(best, v)]
    return best if best is not None else [min(f[1][o] for f in forced) for o in range(len(forced[0][1]))]
