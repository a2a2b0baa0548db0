"""The float32 claim (MODEL.md section 7): float32 evaluation gives the exact verdict.

Stage: verdict -> float claim. Trusted: yes. Exact rationals throughout; the bounds are rounded
*up* (errors, magnitudes) or *down* (lower ends) to 40 significant bits, never the other way.

The claim covers ``fl(x)`` for every image ``x`` of the task (each pixel rounded to the nearest
float32), IEEE binary32 with round-to-nearest, any summation order, fused multiply-add allowed,
no flush-to-zero. Two arguments:

1. **Integer argument** (dyadic form): every input value, weight and bias is a float32 number
   that is an integer multiple of 2^-k, and every partial sum in any order stays below
   2^(24-k) in magnitude; then every intermediate value is exactly representable and float32
   computes the exact network. MODEL.md's integer argument is the case k = 0.
2. **Rounding bound**: per layer, with value bounds ``X`` (interval arithmetic over all images)
   and an input error ``E``, a layer summing ``m`` terms (bias included) in any order satisfies
   ``|computed - exact| <= sum|w| E + gamma_(m+1) (sum|w| (X + E) + |b|) + m 2^-149``
   (Higham's gamma_n = n u / (1 - n u), u = 2^-24; the extra rounding covers a weight that is
   itself rounded to float32; 2^-149 per product covers underflow). ReLU and max pooling are
   1-Lipschitz and exact in float32. For the last dense layer the bound is taken on the
   difference N_c - N_c' directly (``sum |w_c - w_c'| E`` plus both roundings). The claim holds
   when the largest such bound is below the exact worst-case margin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from cnnproof.constructions.task import Task
from cnnproof.verifier.exact import format_rational
from cnnproof.verifier.network import (
    Affine,
    Conv2d,
    Dense,
    Flatten,
    GeneralConv2d,
    GlobalMaxPool,
    MaxPool,
    Network,
    Parallel,
    ReLU,
)

U = Fraction(1, 2**24)  # unit roundoff of binary32
TINY = Fraction(1, 2**149)  # the smallest subnormal: bounds one underflowing product
BITS = 40
FLT_LIMIT = Fraction(2**128) * (1 - Fraction(1, 2**25))  # magnitudes from here on round to infinity


class _Overflow(Exception):
    """A value may reach the float32 overflow threshold: no float32 claim."""


def gamma(n: int) -> Fraction:
    if n * U >= 1:
        raise ValueError("too many terms for a rounding bound")
    return n * U / (1 - n * U)


def _up(q: Fraction) -> Fraction:
    """The smallest multiple of 2^(e-BITS) >= q, where 2^e ~ |q|: q rounded up to ~40 bits."""
    if q == 0 or q.denominator == 1:
        return q
    e = q.numerator.bit_length() - q.denominator.bit_length()
    s = BITS - e
    if s <= 0:
        return Fraction(-((-q.numerator) // q.denominator))
    m = -((-q.numerator << s) // q.denominator)  # ceil(q * 2^s)
    return Fraction(m, 1 << s)


def _down(q: Fraction) -> Fraction:
    return -_up(-q)


def is_float32(q: Fraction) -> bool:
    """Is the rational a float32 number (finite, normal or subnormal)?"""
    if q == 0:
        return True
    f = np.float32(float(q))
    return bool(np.isfinite(f)) and Fraction(float(f)) == q


def _dyadic_exponent(q: Fraction) -> int | None:
    """k with q * 2^k an integer (smallest k >= 0), or None when the denominator is not a power of 2."""
    d = q.denominator
    if d & (d - 1):
        return None
    return d.bit_length() - 1


@dataclass
class _State:
    """Abstract tensor: per channel (C, H, W) or per entry (vectors) lower/upper value bounds,
    an absolute error bound, and the dyadic grid exponent (None: the integer argument fails)."""

    lo: list[Fraction]
    hi: list[Fraction]
    err: list[Fraction]
    grid: list[int | None]
    spatial: tuple[int, ...]  # (H, W) for channel tensors, () for vectors
    # set by a linear layer: sum |w| (|x| + E) + |b| per output, which bounds what a runtime that
    # folds a following constant multiply into the weights (ONNX Runtime's Conv/Mul, BatchNorm
    # fusions) rounds; None after any other layer
    summag: list[Fraction] | None = None

    def mag(self, c: int) -> Fraction:
        return max(abs(self.lo[c]), abs(self.hi[c]))


@dataclass
class FloatBound:
    """The float32 analysis of a network on a task's images."""

    integer_ok: bool
    integer_reason: str
    logit_errors: list[Fraction]
    pair_errors: dict[tuple[int, int], Fraction]
    input_error: Fraction
    notes: list[str] = field(default_factory=list)
    overflow: str | None = None  # why a value may overflow float32 (then no claim)

    @property
    def max_pair_error(self) -> Fraction:
        return max(self.pair_errors.values(), default=Fraction(0))


@dataclass(frozen=True)
class FloatClaim:
    """The verdict on float32 evaluation. status: PROVED | UNKNOWN | NOT_APPLICABLE."""

    status: str
    argument: str  # "integer" | "rounding bound" | ""
    bound: Fraction | None
    margin: Fraction | None
    text: str

    def to_json(self) -> dict:
        return {
            "status": self.status,
            "argument": self.argument or None,
            "error_bound": None if self.bound is None else format_rational(self.bound),
            "error_bound_decimal": None if self.bound is None else float(self.bound),
            "margin": None if self.margin is None else format_rational(self.margin),
            "text": self.text,
        }


def _input_state(task: Task) -> tuple[_State, Fraction, list[str]]:
    levels = [Fraction(v) for v in task.levels]
    lo, hi = min(levels) - task.noise, max(levels) + task.noise
    notes = []
    exact_in = task.noise == 0 and all(is_float32(v) for v in levels)
    if exact_in:
        err = Fraction(0)
        ks = [_dyadic_exponent(v) for v in levels]
        grid = None if any(k is None for k in ks) else max(ks)
    else:
        err = _up(U * max(abs(lo), abs(hi)) + TINY)
        grid = None
        if task.noise == 0:
            notes.append("a level is not a float32 number: rounding the input is part of the bound")
    C = task.channels
    st = _State([lo] * C, [hi] * C, [err] * C, [grid] * C, (task.height, task.width))
    return st, err, notes


def _linear(st: _State, rows: list[list[tuple[int, Fraction]]], bias: list[Fraction], out_spatial,
            padded: bool, extra: int = 0) -> _State:
    """A layer whose output o is sum_t w_t x_(c_t) + b_o (rows[o] = [(c, w), ...], taps with 0
    dropped); ``padded``: zero padding may enter a window."""
    lo, hi, err, grid, summag = [], [], [], [], []
    for o, row in enumerate(rows):
        b = bias[o]
        l = h = b
        S = T = Fraction(0)
        g: int | None = _dyadic_exponent(b) if is_float32(b) else None
        for c, w in row:
            cl, ch = st.lo[c], st.hi[c]
            if padded:
                cl, ch = min(cl, Fraction(0)), max(ch, Fraction(0))
            if w > 0:
                l, h = l + w * cl, h + w * ch
            else:
                l, h = l + w * ch, h + w * cl
            aw = abs(w)
            S += aw * st.mag(c)
            T += aw * st.err[c]
            kw = _dyadic_exponent(w) if is_float32(w) else None
            if g is not None:
                g = None if (kw is None or st.grid[c] is None) else max(g, kw + st.grid[c])
        m = len(row) + (1 if b != 0 else 0)
        if g is not None and (S + abs(b)) * 2**g >= 2**24 or (g is not None and g > 149):
            g = None
        e = T + gamma(m + 1 + extra) * (S + T + abs(b)) + m * TINY if m else Fraction(0)
        if g is not None and extra == 0 and all(st.err[c] == 0 for c, _ in row):
            e = Fraction(0)  # exact: every partial sum is a float32 number
        lo.append(_down(l))
        hi.append(_up(h))
        err.append(_up(e))
        grid.append(g)
        summag.append(_up(S + T + abs(b)))
        if summag[-1] + err[-1] >= FLT_LIMIT:
            raise _Overflow(f"a sum may reach {float(summag[-1]):.3g}, beyond the float32 range")
    return _State(lo, hi, err, grid, out_spatial, summag)


def _conv_rows(weight: np.ndarray) -> list[list[tuple[int, Fraction]]]:
    O, I, kh, kw = weight.shape
    return [[(c, weight[o, c, a, b]) for c in range(I) for a in range(kh) for b in range(kw) if weight[o, c, a, b] != 0]
            for o in range(O)]


def _run(layers, st: _State, extra: dict) -> _State:
    for layer in layers:
        st = _layer(layer, st, extra)
    return st


def _layer(layer, st: _State, extra: dict) -> _State:
    if isinstance(layer, (Conv2d, GeneralConv2d)):
        shape = layer.out_shape((len(st.lo),) + st.spatial)
        padded = isinstance(layer, GeneralConv2d) and any(layer.pads)
        return _linear(st, _conv_rows(layer.weight), list(layer.bias), shape[1:], padded, extra.get(id(layer), 0))
    if isinstance(layer, Dense):
        O, I = layer.weight.shape
        rows = [[(i, layer.weight[o, i]) for i in range(I) if layer.weight[o, i] != 0] for o in range(O)]
        return _linear(st, rows, list(layer.bias), (), False, extra.get(id(layer), 0))
    if isinstance(layer, ReLU):
        z = Fraction(0)
        return _State([max(v, z) for v in st.lo], [max(v, z) for v in st.hi], st.err, st.grid, st.spatial)
    if isinstance(layer, GlobalMaxPool):
        return _State(st.lo, st.hi, st.err, st.grid, (1, 1))
    if isinstance(layer, MaxPool):
        shape = layer.out_shape((len(st.lo),) + st.spatial)
        return _State(st.lo, st.hi, st.err, st.grid, shape[1:])
    if isinstance(layer, Flatten):
        n = 1
        for s in st.spatial:
            n *= s
        rep = lambda xs: [x for x in xs for _ in range(n)]  # noqa: E731  (channel-major, as C x H x W)
        return _State(rep(st.lo), rep(st.hi), rep(st.err), rep(st.grid), ())
    if isinstance(layer, Affine):
        return _affine(layer, st, extra.get(id(layer), 0))
    if isinstance(layer, Parallel):
        outs = [_run(b, st, extra) for b in layer.branches]
        return _State(sum((o.lo for o in outs), []), sum((o.hi for o in outs), []), sum((o.err for o in outs), []),
                      sum((o.grid for o in outs), []), outs[0].spatial)
    raise TypeError(f"no float32 model for layer kind {layer.kind}")


def _affine(layer: Affine, st: _State, extra) -> _State:
    """extra: a number of roundings, or (roundings, per-channel magnitude) for an operation
    computed in float32 from several constants (BatchNormalization)."""
    extra, mags = extra if isinstance(extra, tuple) else (extra, None)
    C = len(st.lo)
    shape = (C,) + st.spatial
    scale = np.broadcast_to(layer.scale, shape).reshape(C, -1)
    shift = np.broadcast_to(layer.shift, shape).reshape(C, -1)
    lo, hi, err, grid, summag = [], [], [], [], []
    n_spatial = scale.shape[1]
    for c in range(C):
        ls, hs, es, gs, ms = [], [], [], [], []
        pairs = {(scale[c, k], shift[c, k]) for k in range(n_spatial)}
        for s, b in pairs:
            a, z = s * st.lo[c] + b, s * st.hi[c] + b
            ls.append(min(a, z))
            hs.append(max(a, z))
            X, E = st.mag(c), st.err[c]
            if st.summag is not None:  # the multiply may be folded into the preceding weights
                X = max(X, st.summag[c])
            more = mags[c] if mags is not None else Fraction(0)
            e = abs(s) * E + gamma(2 + 1 + extra) * (abs(s) * (X + E) + abs(b) + more) + TINY
            g = None
            # (no integer argument when the multiply may be folded into the preceding weights:
            # a folded weight w * s need not be a float32 number)
            if extra == 0 and st.summag is None and st.grid[c] is not None and is_float32(s) and is_float32(b):
                ks, kb = _dyadic_exponent(s), _dyadic_exponent(b)
                g = max(ks + st.grid[c], kb)
                if (abs(s) * X + abs(b)) * 2**g >= 2**24 or g > 149:
                    g = None
            if g is not None and E == 0:
                e = Fraction(0)
            es.append(e)
            gs.append(g)
            # what a runtime that folds this multiply too (a chain of them) rounds against
            ms.append(abs(s) * X + abs(b) + more + e)
            if ms[-1] >= FLT_LIMIT:
                raise _Overflow(f"an elementwise result may reach {float(ms[-1]):.3g}, beyond the float32 range")
        lo.append(_down(min(ls)))
        hi.append(_up(max(hs)))
        err.append(_up(max(es)))
        grid.append(None if any(g is None for g in gs) else max(gs))
        summag.append(_up(max(ms)))
    return _State(lo, hi, err, grid, st.spatial, summag if st.summag is not None else None)


def analyse(task: Task, net: Network, extra_roundings: dict | None = None) -> FloatBound:
    """Bound the float32 error of every logit and of every logit difference on the task's images."""
    st, e_in, notes = _input_state(task)
    return _analyse(net, st, e_in, notes, extra_roundings or {}, task.noise != 0)


def analyse_box(net: Network, lo: Fraction, hi: Fraction, input_error: Fraction = Fraction(0),
                extra_roundings: dict | None = None) -> FloatBound:
    """The same analysis for every input in the box [lo, hi]^(C x H x W) given as float32 numbers
    (``input_error`` 0) or rounded to float32 (``input_error`` >= u max(|lo|, |hi|))."""
    C, H, W = net.input_shape
    st = _State([Fraction(lo)] * C, [Fraction(hi)] * C, [Fraction(input_error)] * C, [None] * C, (H, W))
    return _analyse(net, st, Fraction(input_error), [], extra_roundings or {}, True)


def _analyse(net: Network, st: _State, e_in: Fraction, notes: list[str], extra: dict, noisy: bool) -> FloatBound:
    try:
        if max(max(map(abs, st.lo)), max(map(abs, st.hi))) + e_in >= FLT_LIMIT:
            raise _Overflow("an input value is beyond the float32 range")
        return _analyse_layers(net, st, e_in, notes, extra, noisy)
    except _Overflow as e:
        K = len(net.class_names)
        inf = Fraction(2**200)  # stands for "unbounded": never below a margin
        return FloatBound(False, str(e), [inf] * K, {(c, d): inf for c in range(K) for d in range(K) if c != d},
                          e_in, notes, overflow=str(e))


def _analyse_layers(net: Network, st: _State, e_in: Fraction, notes: list[str], extra: dict, noisy: bool) -> FloatBound:
    layers = list(net.layers)
    last = layers[-1] if layers else None
    tail_relu = False
    # the pair bound is taken through the last Dense layer (and a ReLU after it, 1-Lipschitz
    # per logit only: then fall back to E_c + E_c')
    if isinstance(last, Dense):
        body, head = layers[:-1], last
    else:
        body, head = layers, None
        tail_relu = True
    pre = _run(body, st, extra)
    out = _layer(head, pre, extra) if head is not None else pre
    K = len(net.class_names)
    pair: dict[tuple[int, int], Fraction] = {}
    integer_ok = all(e == 0 for e in out.err)
    for c in range(K):
        for d in range(K):
            if c == d:
                continue
            if head is not None and not tail_relu:
                W = head.weight
                I = W.shape[1]
                T = sum((abs(W[c, i] - W[d, i]) * pre.err[i] for i in range(I)), Fraction(0))
                own_c = out.err[c] - sum((abs(W[c, i]) * pre.err[i] for i in range(I)), Fraction(0))
                own_d = out.err[d] - sum((abs(W[d, i]) * pre.err[i] for i in range(I)), Fraction(0))
                pair[(c, d)] = _up(T + max(own_c, Fraction(0)) + max(own_d, Fraction(0)))
            else:
                pair[(c, d)] = _up(out.err[c] + out.err[d])
    if integer_ok:
        reason = "inputs, weights and all intermediate values are exact float32 numbers, so float32 evaluation is exact"
    elif e_in != 0:
        reason = ("the input is not exact in float32 (noise or a level that is not a float32 number)"
                  if noisy or notes else "the input is not exact in float32")
    else:
        reason = "some weight or intermediate value is not exactly representable in float32, or a sum may reach 2^24"
    return FloatBound(integer_ok, reason, [_up(e) for e in out.err], pair, e_in, notes)


def claim(fb: FloatBound, margin: Fraction | None) -> FloatClaim:
    """The float32 claim given the exact worst-case margin (None when it is not known)."""
    if fb.overflow:
        return FloatClaim("UNKNOWN", "", None, margin, f"UNKNOWN: {fb.overflow} (the exact proof still stands)")
    if fb.integer_ok:
        return FloatClaim("PROVED", "integer", Fraction(0), margin,
                          "PROVED by the integer argument: " + fb.integer_reason)
    E = fb.max_pair_error
    Ed = f"{float(E):.3g}"
    if margin is None:
        return FloatClaim("UNKNOWN", "rounding bound", E, None,
                          f"UNKNOWN: the rounding bound {Ed} needs the exact worst-case margin, which the method did not give")
    ms = format_rational(margin) if len(format_rational(margin)) <= 12 else f"{float(margin):.6g}"
    if E < margin:
        return FloatClaim("PROVED", "rounding bound", E, margin,
                          f"PROVED by the rounding bound: |float32 - exact| of any N_c - N_c' <= {Ed} < {ms} <= N_c - N_c' (proved)")
    return FloatClaim("UNKNOWN", "rounding bound", E, margin,
                      f"UNKNOWN: the rounding bound {Ed} is not below the proven margin {ms} "
                      "(the exact proof still stands)")


def decide(fb: FloatBound, proven: Fraction | None, exact: bool, prove_margin) -> FloatClaim:
    """The float32 claim from a proven lower bound ``proven`` on every N_c - N_c' (None: none
    known; ``exact``: it is the exact worst case, so no larger margin can be proved).

    When the rounding argument needs more than is known, ``prove_margin(m)`` is asked to prove
    N_c - N_c' >= m for a margin m just above the bound (True when proved)."""
    margin = proven
    if not (fb.integer_ok or fb.overflow or exact) and (margin is None or margin <= fb.max_pair_error):
        need = required_margin(fb)
        if prove_margin(need):
            margin = need
    return claim(fb, margin)


def required_margin(fb: FloatBound) -> Fraction:
    """A margin that, once proved, closes the float claim (strictly above the bound)."""
    E = fb.max_pair_error
    return _up(E * (1 + Fraction(1, 2**20)) + Fraction(1, 2**100))
