"""A plain per-scene check of the noise box, for cross-checking the provers on noisy tasks.

Test support; written separately from verifier/smt.py (no bounds, no folding, no shared code
but the network's weights): for ONE fixed scene, is there noise η in [-δ, δ]^(C×H×W) with
N(base + η)_c - N(base + η)_c' below the claim for some c' != c? One z3 query, exact rationals.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import z3


def _q(v) -> z3.ArithRef:
    v = Fraction(v)
    return z3.Q(v.numerator, v.denominator)


def _apply(layers, x):
    for layer in layers:
        kind = layer.kind
        if kind == "conv2d":
            O, I, kh, kw = layer.weight.shape
            _, H, W = x.shape
            out = np.empty((O, H - kh + 1, W - kw + 1), dtype=object)
            for o in range(O):
                for i in range(H - kh + 1):
                    for j in range(W - kw + 1):
                        terms = [_q(layer.weight[o, c, a, b]) * x[c, i + a, j + b]
                                 for c in range(I) for a in range(kh) for b in range(kw)
                                 if layer.weight[o, c, a, b] != 0]
                        out[o, i, j] = z3.Sum(terms + [_q(layer.bias[o])]) if terms else _q(layer.bias[o])
            x = out
        elif kind == "relu":
            out = np.empty(x.shape, dtype=object)
            for idx in np.ndindex(x.shape):
                e = x[idx]
                out[idx] = z3.If(e > 0, e, _q(0))
            x = out
        elif kind == "global_max_pool":
            out = np.empty((x.shape[0], 1, 1), dtype=object)
            for c in range(x.shape[0]):
                vals = list(x[c].ravel())
                m = vals[0]
                for v in vals[1:]:
                    m = z3.If(v > m, v, m)
                out[c, 0, 0] = m
            x = out
        elif kind == "flatten":
            x = x.reshape(-1)
        elif kind == "dense":
            O, I = layer.weight.shape
            out = np.empty((O,), dtype=object)
            for o in range(O):
                terms = [_q(layer.weight[o, k]) * x[k] for k in range(I) if layer.weight[o, k] != 0]
                out[o] = z3.Sum(terms + [_q(layer.bias[o])])
            x = out
        elif kind == "parallel":
            x = np.concatenate([_apply(b, x) for b in layer.branches], axis=0)
        else:
            raise TypeError(kind)
    return x


def scene_violation(net, base, c: int, delta: Fraction, margin: Fraction | None, timeout_ms: int = 60000):
    """None when no noise breaks the claim for this scene; else the exact noisy image found.

    Raises RuntimeError on z3 unknown (the caller must not read it as either answer).
    """
    s = z3.Solver()
    s.set("timeout", timeout_ms)
    eta = np.empty(base.shape, dtype=object)
    x = np.empty(base.shape, dtype=object)
    for idx in np.ndindex(base.shape):
        if delta:
            e = z3.Real("eta_%d_%d_%d" % idx)
            s.add(e >= _q(-delta), e <= _q(delta))
            eta[idx] = e
            x[idx] = _q(base[idx]) + e
        else:
            x[idx] = _q(base[idx])
    logits = _apply(net.layers, x)
    viol = []
    for o in range(len(logits)):
        if o != c:
            d = logits[c] - logits[o]
            viol.append(d <= 0 if margin is None else d < _q(margin))
    s.add(z3.Or(viol))
    r = s.check()
    if r == z3.unknown:
        raise RuntimeError(f"z3 unknown: {s.reason_unknown()}")
    if r == z3.unsat:
        return None
    m = s.model()
    img = np.empty(base.shape, dtype=object)
    for idx in np.ndindex(base.shape):
        v = Fraction(base[idx])
        if delta:
            v += Fraction(m.eval(eta[idx], model_completion=True).as_fraction())
        img[idx] = v
    return img
