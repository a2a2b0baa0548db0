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

At the edges of the range (docs/onnx.md, "Folded layers"): a constant that is not a float32
number is charged its exact rounding error whenever that exceeds u|w| (subnormal or zero
results); a constant that rounds to infinity, or any value, folded weight or unscaled sum that
may reach 2^128 (1 - 2^-25), gives no claim. Runtimes fold constant multiplies after a linear
layer into its weights and move a scalar multiply before a MatMul into its alpha: both are
bounded (folded weight magnitudes are tracked; a folded weight that may leave the normal range
costs 2^-149 per tap). A trailing Softmax/LogSoftmax adds ``output_slack`` to every pair bound,
so that the file's float32 outputs, not only its logits, are strictly in order. Every float
conversion is exact (``round_float32`` works on integers), so any rational is handled.
"""

from __future__ import annotations

import contextvars
import math
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

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


# what the bound of the current analysis charged beyond relative rounding errors (for the text)
_CHARGES: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("charges", default=None)


def _charged(what: str) -> None:
    got = _CHARGES.get()
    if got is not None:
        got.add(what)


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


MIN_NORMAL = Fraction(1, 2**126)  # below it float32 spacing is 2^-149: rounding errors are absolute


@lru_cache(maxsize=1 << 16)
def round_float32(q: Fraction) -> Fraction | None:
    """IEEE fl(q): the float32 nearest to the rational ``q`` (ties to an even significand), as an
    exact rational; None when it rounds to an infinity (|q| >= 2^128 (1 - 2^-25)). Integer
    arithmetic only, so any rational, however large or small, is handled."""
    q = Fraction(q)
    if q == 0:
        return Fraction(0)
    a = abs(q)
    if a >= FLT_LIMIT:
        return None
    n, d = a.numerator, a.denominator
    e = n.bit_length() - d.bit_length()  # 2^e <= a < 2^(e+2)
    if Fraction(2) ** e > a:
        e -= 1
    k = max(e, -126) - 23  # the float32 spacing near a is 2^k
    num, den = (n, d << k) if k >= 0 else (n << -k, d)
    m, r = divmod(num, den)  # a / 2^k = m + r / den
    if 2 * r > den or (2 * r == den and m & 1):
        m += 1
    out = Fraction(m) * Fraction(2) ** k
    if out >= Fraction(2**128):
        return None
    return out if q > 0 else -out


def is_float32(q: Fraction) -> bool:
    """Is the rational a float32 number (finite, normal or subnormal)?"""
    return round_float32(Fraction(q)) == q


def rounding_error(q: Fraction, what: str) -> Fraction:
    """|fl(q) - q| for a constant the file holds as float32; _Overflow when it rounds to infinity."""
    r = round_float32(Fraction(q))
    if r is None:
        raise _Overflow(f"{what} {fmt_up(abs(Fraction(q)))} rounds to infinity in float32")
    return abs(r - q)


def _digits(q: Fraction, up: bool, n: int) -> str:
    """q > 0 as n significant decimal digits, rounded up or down exactly (no float)."""
    num, den = q.numerator, q.denominator
    e = len(str(num)) - len(str(den))  # 10^(e-1) < q < 10^(e+1)
    if Fraction(10) ** e > q:
        e -= 1  # now 10^e <= q < 10^(e+1)
    shift = n - 1 - e
    scaled = q * Fraction(10) ** shift
    m = -((-scaled.numerator) // scaled.denominator) if up else scaled.numerator // scaled.denominator
    if m >= 10**n:  # rounding up carried into another digit
        m //= 10
        shift -= 1
        e += 1
        if Fraction(m) / Fraction(10) ** shift < q:
            m += 1
    d = Decimal(m).scaleb(-shift).normalize()
    if -4 <= e < 15:
        return format(d, "f")
    t = d.as_tuple()
    ds = "".join(map(str, t.digits))
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return f"{mant}e{e:+03d}"


def fmt_up(q: Fraction, n: int = 3) -> str:
    """A decimal text >= q (error bounds are printed rounded up)."""
    q = Fraction(q)
    if q == 0:
        return "0"
    return _digits(q, True, n) if q > 0 else "-" + _digits(-q, False, n)


def fmt_down(q: Fraction, n: int = 6) -> str:
    """A decimal text <= q (proven margins are printed rounded down)."""
    q = Fraction(q)
    if q == 0:
        return "0"
    return _digits(q, False, n) if q > 0 else "-" + _digits(-q, True, n)


def float_up(q: Fraction) -> float:
    """The smallest float64 >= q (inf beyond the float64 range)."""
    q = Fraction(q)
    try:
        f = float(q)
    except OverflowError:
        return math.inf if q > 0 else -sys.float_info.max
    if Fraction(f) < q:
        f = math.nextafter(f, math.inf)
    return f


def _dyadic_exponent(q: Fraction) -> int | None:
    """k with q * 2^k an integer (smallest k >= 0), or None when the denominator is not a power of 2."""
    d = q.denominator
    if d & (d - 1):
        return None
    return d.bit_length() - 1


@dataclass
class _Fold:
    """What a runtime that folds the following constant multiplies into a linear layer's weights
    (ONNX Runtime's Conv+Mul and Conv+BatchNormalization fusions) computes against, per output:
    ``mag`` = sum |w| (|x| + E) + |b|, the magnitude its roundings are relative to; ``wlo``/``whi``
    bound the nonzero (folded) weights' magnitudes (None: no taps), to detect a folded weight
    that overflows or leaves the normal range; ``xsum`` = sum over the taps of |x| + E, which
    an absolute error of 2^-149 per folded weight is multiplied by."""

    mag: list[Fraction]
    wlo: list[Fraction | None]
    whi: list[Fraction | None]
    xsum: list[Fraction]


@dataclass
class _State:
    """Abstract tensor: per channel (C, H, W) or per entry (vectors) lower/upper value bounds,
    an absolute error bound, and the dyadic grid exponent (None: the integer argument fails)."""

    lo: list[Fraction]
    hi: list[Fraction]
    err: list[Fraction]
    grid: list[int | None]
    spatial: tuple[int, ...]  # (H, W) for channel tensors, () for vectors
    # set by a linear layer (and kept through the constant multiplies after it): see _Fold;
    # None after any other layer
    fold: _Fold | None = None
    # set by a multiply by one scalar constant with no shift: (s, the state before it), since a
    # runtime may move s past a following MatMul/Gemm into its alpha (ONNX Runtime's
    # MatMulScaleFusion), which then sums the unscaled inputs
    moved: tuple[Fraction, "_State"] | None = None

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
    output_op: str | None = None  # a trailing Softmax / LogSoftmax the file applies to the logits
    output_slack: Fraction = Fraction(0)  # the logit gap that keeps its float32 outputs in order
    charges: list[str] = field(default_factory=list)  # what the bound charged beyond relative errors

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
            "error_bound_decimal": None if self.bound is None else float_up(self.bound),  # rounded up
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
    dropped); ``padded``: zero padding may enter a window. Each weight and bias is the float32
    the file holds (its rounding error charged when it is not a float32 number)."""
    lo, hi, err, grid = [], [], [], []
    mag, wlo, whi, xsum = [], [], [], []
    for o, row in enumerate(rows):
        b = bias[o]
        l = h = b
        S = T = A = X = Fraction(0)
        wl = wh = None
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
            xm = st.mag(c) + st.err[c]
            S += aw * st.mag(c)
            T += aw * st.err[c]
            X += xm
            d = rounding_error(w, "a weight")
            if d > U * aw:  # below the normal range (or zero): an absolute error, not a relative one
                A += d * xm
                _charged("absolute errors of weights below the float32 normal range")
            wl = aw if wl is None else min(wl, aw)
            wh = aw if wh is None else max(wh, aw)
            kw = _dyadic_exponent(w) if d == 0 else None
            if g is not None:
                g = None if (kw is None or st.grid[c] is None) else max(g, kw + st.grid[c])
        m = len(row) + (1 if b != 0 else 0)
        db = rounding_error(b, "a bias")
        if db > U * abs(b):
            A += db
        if g is not None and (S + abs(b)) * 2**g >= 2**24 or (g is not None and g > 149):
            g = None
        e = T + A + gamma(m + 1 + extra) * (S + T + abs(b)) + m * TINY if m else Fraction(0)
        if g is not None and extra == 0 and all(st.err[c] == 0 for c, _ in row):
            e = Fraction(0)  # exact: every partial sum is a float32 number
        lo.append(_down(l))
        hi.append(_up(h))
        err.append(_up(e))
        grid.append(g)
        mag.append(_up(S + T + abs(b)))
        wlo.append(wl)
        whi.append(wh)
        xsum.append(_up(X))
        if mag[-1] + err[-1] >= FLT_LIMIT:
            raise _Overflow(f"a sum may reach {fmt_up(mag[-1])}, beyond the float32 range")
    return _State(lo, hi, err, grid, out_spatial, _Fold(mag, wlo, whi, xsum))


def _moved(st: _State, rows, bias: list[Fraction], extra: int, normal: _State) -> _State:
    """A Dense layer after a scalar multiply s that the runtime moved into the layer's alpha:
    it computes fl(s fl(sum_t w_t x_t) + b) on the unscaled x. The result keeps the larger
    error of both evaluations; a sum of the unscaled inputs may overflow."""
    s, pre = st.moved
    alt = _linear(pre, rows, [Fraction(0)] * len(rows), (), False, extra)
    ds = rounding_error(s, "a scale moved into a matrix product's alpha")
    err = []
    for o, b in enumerate(bias):
        y = alt.fold.mag[o] + alt.err[o]
        e = abs(s) * alt.err[o] + gamma(3) * (abs(s) * y + abs(b)) + 2 * TINY + (ds * y if ds > U * abs(s) else 0)
        if alt.fold.whi[o] is not None:  # alpha applied to the weights instead: w s as float32
            top = _up(abs(s) * alt.fold.whi[o] * (1 + U) + TINY)
            if top >= FLT_LIMIT:
                raise _Overflow(f"a weight times a scale moved into its alpha may reach {fmt_up(top)}, "
                                "beyond the float32 range")
            if abs(s) * alt.fold.wlo[o] < MIN_NORMAL:
                e += alt.fold.xsum[o] * TINY
        if _up(e) > normal.err[o]:
            _charged("the unscaled sum of a MatMul/Gemm whose preceding scalar multiply a runtime moves into its alpha")
        err.append(max(normal.err[o], _up(e)))
    return _State(normal.lo, normal.hi, err, [None] * len(err), normal.spatial, normal.fold)


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
        out = _linear(st, rows, list(layer.bias), (), False, extra.get(id(layer), 0))
        if st.moved is not None:
            out = _moved(st, rows, list(layer.bias), extra.get(id(layer), 0), out)
        return out
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
    extra, mags, inner = extra if isinstance(extra, tuple) and len(extra) == 3 else \
        (*extra, None) if isinstance(extra, tuple) else (extra, None, None)
    if inner is not None and inner * (1 + U) >= FLT_LIMIT:  # e.g. BatchNormalization's var + eps
        raise _Overflow(f"a value the runtime computes from the constants (var + epsilon) may reach "
                        f"{fmt_up(inner * (1 + U))}, beyond the float32 range")
    C = len(st.lo)
    shape = (C,) + st.spatial
    scale = np.broadcast_to(layer.scale, shape).reshape(C, -1)
    shift = np.broadcast_to(layer.shift, shape).reshape(C, -1)
    fold = st.fold
    lo, hi, err, grid = [], [], [], []
    fmag, fwlo, fwhi = [], [], []
    n_spatial = scale.shape[1]
    computed = extra > 0  # the runtime computes the scale and shift in float32 (BatchNormalization)
    for c in range(C):
        ls, hs, es, gs, ms = [], [], [], [], []
        wls, whs = [], []
        pairs = {(scale[c, k], shift[c, k]) for k in range(n_spatial)}
        for s, b in pairs:
            a, z = s * st.lo[c] + b, s * st.hi[c] + b
            ls.append(min(a, z))
            hs.append(max(a, z))
            X, E = st.mag(c), st.err[c]
            # the constants as the runtime holds them: a scale or shift that rounds to infinity
            # gives no claim; one below the normal range has an absolute rounding error
            ds = rounding_error(s, "an elementwise scale")
            db = rounding_error(b, "an elementwise shift")
            A = (X + E) * (ds if ds > U * abs(s) else 0) + (db if db > U * abs(b) else 0)
            grow = 1 + gamma(extra + 1)  # a scale the runtime computes may come out this much larger
            if computed and abs(s) * grow >= FLT_LIMIT:
                raise _Overflow(f"an elementwise scale computed in float32 may reach {fmt_up(abs(s) * grow)}, "
                                "beyond the float32 range")
            if computed and abs(s) < 2 * MIN_NORMAL:
                A += (X + E) * TINY
            if computed:
                A += 4 * TINY  # the shift's products and sums near the subnormal range
            if fold is not None:  # the multiply may be folded into the preceding weights
                X = max(X, fold.mag[c])
                if fold.whi[c] is not None:
                    top = _up(abs(s) * fold.whi[c] * (1 + U) * grow + TINY)
                    if top >= FLT_LIMIT:
                        raise _Overflow(f"a weight folded with a following constant multiply may reach {fmt_up(top)}, "
                                        "beyond the float32 range")
                    low = abs(s) * fold.wlo[c]
                    if low < MIN_NORMAL:  # a folded weight may be subnormal or zero: 2^-149 per tap
                        A += fold.xsum[c] * TINY
                        _charged("absolute errors of folded weights (a weight times the constant multiply after "
                                 "it, as runtimes fold them) below the float32 normal range")
                    wls.append(max(Fraction(0), _down(low * (1 - U) - TINY)))
                    whs.append(top)
                A += TINY  # the folded bias b s
            more = mags[c] if mags is not None else Fraction(0)
            e = abs(s) * E + A + gamma(2 + 1 + extra) * (abs(s) * (X + E) + abs(b) + more) + TINY
            g = None
            # (no integer argument when the multiply may be folded into the preceding weights:
            # a folded weight w * s need not be a float32 number)
            if extra == 0 and fold is None and st.grid[c] is not None and ds == 0 and db == 0:
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
                raise _Overflow(f"an elementwise result may reach {fmt_up(ms[-1])}, beyond the float32 range")
        lo.append(_down(min(ls)))
        hi.append(_up(max(hs)))
        err.append(_up(max(es)))
        grid.append(None if any(g is None for g in gs) else max(gs))
        fmag.append(_up(max(ms)))
        fwlo.append(min(wls) if wls else None)
        fwhi.append(max(whs) if whs else None)
    new_fold = None if fold is None else _Fold(fmag, fwlo, fwhi, fold.xsum)
    out = _State(lo, hi, err, grid, st.spatial, new_fold)
    scales = {v for v in np.asarray(layer.scale, dtype=object).ravel()}
    if len(scales) == 1 and not any(v != 0 for v in np.asarray(layer.shift, dtype=object).ravel()):
        out.moved = (next(iter(scales)), st)
    return out


def analyse(task: Task, net: Network, extra_roundings: dict | None = None) -> FloatBound:
    """Bound the float32 error of every logit and of every logit difference on the task's images."""
    st, e_in, notes = _input_state(task)
    return _analyse(net, st, e_in, notes, extra_roundings or {}, task.noise != 0)


def analyse_box(net: Network, lo: Fraction, hi: Fraction, input_error: Fraction = Fraction(0),
                extra_roundings: dict | None = None) -> FloatBound:
    """The same analysis for every input in the box [lo, hi]^(C x H x W) given as float32 numbers
    (``input_error`` 0) or rounded to float32 (``input_error`` >= u max(|lo|, |hi|) + 2^-149)."""
    C, H, W = net.input_shape
    st = _State([Fraction(lo)] * C, [Fraction(hi)] * C, [Fraction(input_error)] * C, [None] * C, (H, W))
    return _analyse(net, st, Fraction(input_error), [], extra_roundings or {}, True)


def _analyse(net: Network, st: _State, e_in: Fraction, notes: list[str], extra: dict, noisy: bool) -> FloatBound:
    charges: set[str] = set()
    token = _CHARGES.set(charges)
    try:
        fb = _analyse_checked(net, st, e_in, notes, extra, noisy)
    finally:
        _CHARGES.reset(token)
    fb.charges = sorted(charges)
    return fb


def _analyse_checked(net: Network, st: _State, e_in: Fraction, notes: list[str], extra: dict, noisy: bool) -> FloatBound:
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
    if head is not None and pre.moved is not None:
        tail_relu = True  # the head may sum unscaled inputs: no pair decomposition, E_c + E_c'
    K = len(net.class_names)
    pair: dict[tuple[int, int], Fraction] = {}
    output_op = extra.get(OUTPUT_KEY)
    integer_ok = all(e == 0 for e in out.err) and output_op is None
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
    slack = Fraction(0)
    if output_op is not None:
        Z = max(max(abs(out.lo[c]), abs(out.hi[c])) + out.err[c] for c in range(K))
        slack = output_slack(output_op, K, Z)
        pair = {k: _up(v + slack) for k, v in pair.items()}
        notes = notes + [f"the file outputs {output_op} of the logits: a float32 logit gap above {fmt_up(slack)} "
                         "keeps its float32 outputs strictly in the same order (docs/onnx.md)"]
    if integer_ok:
        reason = "inputs, weights and all intermediate values are exact float32 numbers, so float32 evaluation is exact"
    elif e_in != 0:
        reason = ("the input is not exact in float32 (noise or a level that is not a float32 number)"
                  if noisy or notes else "the input is not exact in float32")
    else:
        reason = "some weight or intermediate value is not exactly representable in float32, or a sum may reach 2^24"
    return FloatBound(integer_ok, reason, [_up(e) for e in out.err], pair, e_in, notes,
                      output_op=output_op, output_slack=slack)


OUTPUT_KEY = "output_op"  # extra_roundings[OUTPUT_KEY]: "Softmax" / "LogSoftmax" when the file ends in one
EPS_EXP = Fraction(1, 2**16)  # the relative error assumed of the runtime's exp and log


def output_slack(op: str, K: int, Z: Fraction) -> Fraction:
    """A gap T such that float32 logits z (|z_i| <= Z) with z_c - z_c' > T for every c' != c give
    float32 outputs of ``op`` with output_c > output_c' (strictly), for the stable evaluation
    every runtime uses: t_i = fl(z_i - max z), e_i = exp(t_i), s = fl(sum e_i), then
    Softmax fl(e_i / s) (or e_i times fl(1/s)) and LogSoftmax fl(t_i - fl(log s)) (or
    fl(z_i - fl(max z + log s))); exp and log with relative error <= EPS_EXP, any summation
    order, gradual underflow. Derivation (docs/onnx.md): t_c = 0, t_c' <= -g(1 - u), and
    exp(-x) <= 1/(1 + x)."""
    u, eps, tiny = U, EPS_EXP, TINY
    S = K * (1 + eps + tiny) * (1 + gamma(K + 1))  # bounds s (every e_i <= 1 + eps)
    if op == "Softmax":
        # need (1-eps)(1-u)^2 - ((1+eps)/(1+g(1-u)) + 2^-149)(1+u)^2 > 2^-148 S
        R = ((1 - eps) * (1 - u) ** 2 - 2 * tiny * S) / (1 + u) ** 2 - tiny
        if R <= 1 + eps:
            return _up(((1 + eps) / R - 1) / (1 - u))
        return Fraction(0)
    if op == "LogSoftmax":
        L = S * (1 + eps) + 1 + tiny  # bounds |fl(log s)|: s lies in [1/2, S]
        return _up((u * (2 * Z + 2 * (Z + L) * (1 + u)) + tiny) / (1 - u))
    raise ValueError(f"no float32 model for a trailing {op}")


def claim(fb: FloatBound, margin: Fraction | None) -> FloatClaim:
    """The float32 claim given the exact worst-case margin (None when it is not known). Numbers
    in the text are exact or rounded the safe way: bounds up, margins down."""
    if fb.overflow:
        return FloatClaim("UNKNOWN", "", None, margin, f"UNKNOWN: {fb.overflow} (the exact proof still stands)")
    if fb.integer_ok:
        return FloatClaim("PROVED", "integer", Fraction(0), margin,
                          "PROVED by the integer argument: " + fb.integer_reason)
    E = fb.max_pair_error
    Ed = fmt_up(E)
    what = "|float32 - exact| of any N_c - N_c'"
    if fb.output_op is not None:
        what = (f"|float32 - exact| of any N_c - N_c' plus the gap {fmt_up(fb.output_slack)} that keeps the "
                f"file's float32 {fb.output_op} outputs in order")
    if margin is None:
        return FloatClaim("UNKNOWN", "rounding bound", E, None,
                          f"UNKNOWN: the rounding bound {Ed} needs the exact worst-case margin, which the method did not give")
    exact_text = format_rational(margin)
    ms = exact_text if len(exact_text) <= 12 else fmt_down(margin)
    if E < margin:
        # the printed bound (rounded up) must print below the printed margin (rounded down)
        n = 3
        while Fraction(Ed) >= Fraction(ms) and n < 60:
            n += 3
            Ed, ms = fmt_up(E, n), (exact_text if len(exact_text) <= 12 else fmt_down(margin, n + 3))
        return FloatClaim("PROVED", "rounding bound", E, margin,
                          f"PROVED by the rounding bound: {what} <= {Ed} < {ms} <= N_c - N_c' (proved)")
    because = f"; the bound includes {' and '.join(fb.charges)}" if fb.charges else ""
    return FloatClaim("UNKNOWN", "rounding bound", E, margin,
                      f"UNKNOWN: the rounding bound {Ed} ({what}) is not below the proven margin {ms}{because} "
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
