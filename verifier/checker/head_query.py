"""The head lemma as SMT-LIB2 text (MODEL.md section 6, item 3). Trusted: yes (checker).

Stage: certificate obligation -> SMT-LIB2 query. The text is generated deterministically from
the network's head and the window bounds, so the prover stores it and the checker regenerates
it byte for byte, then re-solves it with z3 and cvc5. Satisfiable iff some allowed presence
vector and pooled vector break the claim for class ``c``.

>>> from fractions import Fraction
>>> num(Fraction(-3, 4))
'(- (/ 3 4))'
>>> num(Fraction(2))
'(/ 2 1)'
"""

from __future__ import annotations

from fractions import Fraction

from cnnproof.verifier.exact import parse_rational
from cnnproof.verifier.network import Dense, Flatten, Network, Parallel, ReLU


def num(v: Fraction) -> str:
    """An exact rational as an SMT-LIB term: (/ p q), or (- (/ p q)) when negative."""
    v = Fraction(v)
    t = f"(/ {abs(v.numerator)} {v.denominator})"
    return f"(- {t})" if v < 0 else t


def relu_assert(y: str, x: str) -> str:
    """``y = max(x, 0)`` as an SMT-LIB assertion."""
    return f"(assert (= {y} (ite (>= {x} {num(Fraction(0))}) {x} {num(Fraction(0))})))"


def head_layers(net: Network) -> list:
    """The Dense/ReLU layers after the last Flatten or Parallel of ``net``."""
    layers = list(net.layers)
    last = max((k for k, l in enumerate(layers) if isinstance(l, (Flatten, Parallel))), default=None)
    if last is None:
        raise ValueError("the network has no Flatten or Parallel before its head")
    head = layers[last + 1:]
    if not head or not all(isinstance(l, (Dense, ReLU)) for l in head):
        raise ValueError("the head is not made of Dense and ReLU layers")
    return head


def _lin(terms: list[tuple[Fraction, str]], const: Fraction) -> str:
    parts = [num(const)] + [f"(* {num(w)} {x})" for w, x in terms if w != 0]
    return parts[0] if len(parts) == 1 else "(+ " + " ".join(parts) + ")"


def _between(x: str, lo: Fraction, hi: Fraction) -> str:
    return f"(and (>= {x} {num(lo)}) (<= {x} {num(hi)}))"


def head_smtlib(net: Network, windows: list[dict], statuses: dict[str, str], learned: list[list[str]],
                c: int, margin: Fraction | None) -> str:
    """SMT-LIB2 text, sat iff the head lemma of class ``c`` fails (see the module docstring)."""
    head = head_layers(net)
    feats = sorted({w["feature"] for w in windows if w["feature"] is not None} | set(statuses))
    bvar = {f: f"b{k}" for k, f in enumerate(feats)}
    out = ["(set-logic QF_LRA)"]
    out += [f"; b{k} = {f} is present" for k, f in enumerate(feats)]
    for f in feats:
        out.append(f"(declare-const {bvar[f]} Bool)")
    for f in feats:
        st = statuses.get(f, "free")
        if st == "present":
            out.append(f"(assert {bvar[f]})")
        elif st == "absent":
            out.append(f"(assert (not {bvar[f]}))")
        elif st != "free":
            raise ValueError(f"status {st!r} of {f} is not present, absent or free")
    for group in learned:
        out.append("(assert (not (and " + " ".join(bvar[f] for f in sorted(group)) + ")))")
    xs = []
    for k, w in enumerate(sorted(windows, key=lambda w: w["channel"])):
        if w["channel"] != k:
            raise ValueError(f"window obligations do not number the channels 0..n-1 (found {w['channel']} at {k})")
        p = f"p{k}"
        xs.append(p)
        out.append(f"(declare-const {p} Real)")
        a0, b0 = (parse_rational(v) for v in w["absent"])
        if w["feature"] is None or w["present"] is None:
            out.append(f"(assert {_between(p, a0, b0)})")
        else:
            a1, b1 = (parse_rational(v) for v in w["present"])
            out.append(f"(assert (ite {bvar[w['feature']]} {_between(p, a1, max(b0, b1))} {_between(p, a0, b0)}))")
    for li, l in enumerate(head):
        ys = []
        if isinstance(l, Dense):
            O, I = l.weight.shape
            if I != len(xs):
                raise ValueError(f"head layer {li} expects {I} inputs, gets {len(xs)}")
            for o in range(O):
                y = f"h{li}_{o}"
                out.append(f"(declare-const {y} Real)")
                out.append(f"(assert (= {y} {_lin([(l.weight[o, k], xs[k]) for k in range(I)], l.bias[o])}))")
                ys.append(y)
        else:
            for k, x in enumerate(xs):
                y = f"h{li}_{k}"
                out.append(f"(declare-const {y} Real)")
                out.append(relu_assert(y, x))
                ys.append(y)
        xs = ys
    if not 0 <= c < len(xs):
        raise ValueError(f"class index {c} out of range")
    bad = []
    for o in range(len(xs)):
        if o != c:
            d = f"(- {xs[c]} {xs[o]})"
            bad.append(f"(<= {d} {num(Fraction(0))})" if margin is None else f"(< {d} {num(Fraction(margin))})")
    out.append("(assert " + ("(or " + " ".join(bad) + ")" if bad else "false") + ")")
    out.append("(check-sat)")
    return "\n".join(out) + "\n"
