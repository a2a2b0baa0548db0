"""The network's shape and the window lemmas as SMT-LIB2 text. Trusted: yes (checker).

Stage: network -> per-channel window queries. Written separately from the prover: the checker
decomposes the network itself and encodes each channel exactly (ReLU as ite), so the window
lemma is re-decided over every window whose cells are within δ of a level.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from cnnproof.constructions.task import Feature, Task
from cnnproof.verifier.checker.head_query import num, relu_assert
from cnnproof.verifier.network import Conv2d, Dense, Flatten, GlobalMaxPool, Network, Parallel, ReLU


@dataclass(frozen=True)
class Branch:
    pointwise: tuple  # 1x1 Conv2d / ReLU layers
    conv: Conv2d  # the h x w detector convolution
    post_relu: bool


@dataclass(frozen=True)
class Shape:
    branches: tuple[Branch, ...]
    channels: tuple[tuple[int, int], ...]  # pooled index -> (branch, output channel)


def decompose(net: Network) -> Shape:
    """Head ∘ GlobalMax ∘ Local, or ValueError saying why ``net`` is not of that form."""
    layers = list(net.layers)
    k = next((k for k, l in enumerate(layers) if isinstance(l, (GlobalMaxPool, Parallel))), None)
    if k is None:
        raise ValueError("no global max pooling")
    if isinstance(layers[k], Parallel):
        bodies = [layers[:k] + list(b) for b in layers[k].branches]
        head = layers[k + 1:]
    else:
        bodies = [layers[:k + 2]]
        head = layers[k + 2:]
    if not head or not all(isinstance(l, (Dense, ReLU)) for l in head):
        raise ValueError("the head is not Dense and ReLU layers")
    branches = []
    for body in bodies:
        if len(body) < 3 or not isinstance(body[-2], GlobalMaxPool) or not isinstance(body[-1], Flatten):
            raise ValueError("a branch does not end with global max pooling and flatten")
        body = body[:-2]
        convs = [i for i, l in enumerate(body) if isinstance(l, Conv2d)]
        if not convs:
            raise ValueError("a branch has no convolution")
        pre, conv, post = body[:convs[-1]], body[convs[-1]], body[convs[-1] + 1:]
        for l in pre:
            if not (isinstance(l, ReLU) or (isinstance(l, Conv2d) and l.weight.shape[2:] == (1, 1))):
                raise ValueError("a layer other than 1x1 convolution or ReLU before the detector")
        if not all(isinstance(l, ReLU) for l in post):
            raise ValueError("a layer other than ReLU between the detector and the pooling")
        branches.append(Branch(tuple(pre), conv, bool(post)))
    channels = tuple((b, o) for b, br in enumerate(branches) for o in range(br.conv.weight.shape[0]))
    return Shape(tuple(branches), channels)


def _between(x: str, lo: Fraction, hi: Fraction) -> str:
    return f"(and (>= {x} {num(lo)}) (<= {x} {num(hi)}))"


def window_smtlib(task: Task, br: Branch, o: int, feature: Feature | None,
                  absent: tuple[Fraction, Fraction], present: tuple[Fraction, Fraction] | None) -> str:
    """SMT-LIB2 text, sat iff some window (cells within δ of a level) puts channel ``o`` outside
    its claimed bounds: [a1, b1] when the window contains ``feature``, [a0, b0] otherwise."""
    O, T, h, w = br.conv.weight.shape
    C, d = task.channels, task.noise
    out = ["(set-logic QF_LRA)"]
    cells = {}
    for ch in range(C):
        for a in range(h):
            for b in range(w):
                x = f"x{ch}_{a}_{b}"
                cells[(ch, a, b)] = x
                out.append(f"(declare-const {x} Real)")
                out.append("(assert (or " + " ".join(_between(x, l - d, l + d) for l in task.levels) + "))")
    # the pointwise stack, per cell
    final = {}
    for a in range(h):
        for b in range(w):
            v = [cells[(ch, a, b)] for ch in range(C)]
            for li, l in enumerate(br.pointwise):
                nv = []
                if isinstance(l, Conv2d):
                    Wp, bp = l.weight, l.bias
                    if Wp.shape[1] != len(v):
                        raise ValueError("a pointwise convolution has the wrong number of inputs")
                    for oo in range(Wp.shape[0]):
                        y = f"q{li}_{oo}_{a}_{b}"
                        terms = [f"(* {num(Wp[oo, t, 0, 0])} {v[t]})" for t in range(len(v)) if Wp[oo, t, 0, 0] != 0]
                        out.append(f"(declare-const {y} Real)")
                        out.append(f"(assert (= {y} (+ {num(bp[oo])} {' '.join(terms)})))" if terms
                                   else f"(assert (= {y} {num(bp[oo])}))")
                        nv.append(y)
                else:
                    for t, x in enumerate(v):
                        y = f"q{li}_{t}_{a}_{b}"
                        out.append(f"(declare-const {y} Real)")
                        out.append(relu_assert(y, x))
                        nv.append(y)
                v = nv
            final[(a, b)] = v
    if any(len(v) != T for v in final.values()):
        raise ValueError("the detector convolution has the wrong number of inputs")
    W = br.conv.weight
    terms = [f"(* {num(W[o, t, a, b])} {final[(a, b)][t]})" for t in range(T) for a in range(h) for b in range(w)
             if W[o, t, a, b] != 0]
    out.append("(declare-const s Real)")
    out.append(f"(assert (= s (+ {num(br.conv.bias[o])} {' '.join(terms)})))" if terms
               else f"(assert (= s {num(br.conv.bias[o])}))")
    out.append("(declare-const v Real)")
    out.append(f"(assert (= v (ite (>= s {num(Fraction(0))}) s {num(Fraction(0))})))" if br.post_relu
               else "(assert (= v s))")
    a0, b0 = absent
    outside0 = f"(or (< v {num(a0)}) (> v {num(b0)}))"
    if feature is None:
        out.append(f"(assert {outside0})")
    else:
        if feature.size != (h, w) or len(feature.template) != C:
            raise ValueError(f"feature {feature.name} has size {feature.size}, the channel's window is {(h, w)}")
        sup = [_between(cells[(ch, a, b)], t - d, t + d) for ch, a, b, t in feature.support()]
        contains = "(and " + " ".join(sup) + ")" if len(sup) > 1 else sup[0]
        a1, b1 = present
        out.append(f"(assert (or (and {contains} (or (< v {num(a1)}) (> v {num(b1)}))) "
                   f"(and (not {contains}) {outside0})))")
    out.append("(check-sat)")
    return "\n".join(out) + "\n"
