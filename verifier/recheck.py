"""Re-check a counterexample by exact evaluation before it is reported.

Stage: after every prover. Trusted: yes. A prover's claimed counterexample becomes a
``Refuted`` verdict only through :func:`confirm`; if it does not re-check, the prover has a bug and
a :class:`SoundnessError` is raised (never a verdict).

:func:`for_the_file` then makes a verdict about an ONNX file whose exact network holds rational
stand-ins for irrational values (BatchNormalization) true of the file's real function: a
counterexample is re-evaluated with interval enclosures of the true values, a proof needs a
margin above the stand-ins' deviation bound; otherwise UNKNOWN.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np

from cnnproof.constructions.scenes import base_image, base_image_int, occurrences, scene_problem
from cnnproof.constructions.task import Task
from cnnproof.verifier.errors import SoundnessError
from cnnproof.verifier.exact import format_rational, fraction_array, to_scaled_ints
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
from cnnproof.verifier.outcome import Counterexample, Proved, Question, Refuted, Unknown


def problem(task: Task, net: Network | None, q: Question, cex: Counterexample) -> str | None:
    """Why ``cex`` is not a genuine counterexample, or None when it is one."""
    try:
        c = task.class_index(cex.cls)
    except KeyError:
        return f"unknown class {cex.cls!r}"
    cls = task.classes[c]
    why = scene_problem(task, cls, cex.scene)
    if why:
        return f"not a scene of class {cls.name}: {why}"
    base = base_image(task, cex.scene)
    if cex.image.shape != base.shape:
        return f"image shape {cex.image.shape} is not the canvas {base.shape}"
    for idx, v in enumerate(cex.image.ravel()):
        if not isinstance(v, (int, Fraction)) or isinstance(v, bool):
            return f"pixel {idx} is {v!r}, not exact"
    # |pixel - base| <= δ for every pixel, in integers over one denominator (no Fraction per pixel)
    ints, den = to_scaled_ints(np.asarray(cex.image, dtype=object))
    b_ints, b_den = base_image_int(task, cex.scene), task.scale
    nd = Fraction(task.noise)
    D = math.lcm(den, b_den, nd.denominator)
    far = np.abs(ints.astype(object) * (D // den) - b_ints.astype(object) * (D // b_den)) > int(nd * D)
    if far.any():
        idx = int(np.flatnonzero(far.ravel())[0])
        return f"pixel {idx} = {cex.image.ravel()[idx]} is farther than δ from its base value {base.ravel()[idx]}"
    if q.theorem == "wellposed":
        from cnnproof.constructions.parts import item_occurrences

        present = {n for n in task.items if item_occurrences(task, cex.image, n)}
        missing = [n for n in cls.required if n not in present]
        if missing:
            return f"required features {missing} not found (scene placement broken?)"
        try:
            other = task.classes[task.class_index(cex.other)]
        except KeyError:
            return f"unknown other class {cex.other!r}"
        if other.name == cls.name:
            return "the other class is the class itself"
        if not all(n in present for n in other.required):
            return f"class {other.name} is not complete on this image"
        for name, (i, j) in cex.accidental:
            if (i, j) not in item_occurrences(task, cex.image, name):
                return f"{name} does not appear at ({i}, {j})"
        return None
    if net is None:
        return "no network"
    if tuple(net.input_shape) != tuple(ints.shape):
        return f"the network reads {tuple(net.input_shape)}, the image is {tuple(ints.shape)}"
    out, d = net.evaluate_batch_int(ints.reshape((1,) + ints.shape), den)  # the image's own integers
    logits = [Fraction(int(v), d) for v in out[0]]
    if tuple(logits) != tuple(cex.logits):
        return f"claimed logits {cex.logits} differ from the exact ones {logits}"
    try:
        o = task.class_index(cex.other)
    except KeyError:
        return f"unknown other class {cex.other!r}"
    if o == c:
        return "the other class is the class itself"
    if q.holds_for(logits[c] - logits[o]):
        return f"N_c - N_c' = {logits[c] - logits[o]} satisfies the claim"
    return None


def confirm(task: Task, net: Network | None, q: Question, cex: Counterexample) -> Counterexample:
    why = problem(task, net, q, cex)
    if why is not None:
        raise SoundnessError(f"a prover's counterexample did not re-check: {why}")
    return cex


def worst_other(task: Task, q: Question, c: int, logits) -> int | None:
    """The class c' != c with the smallest N_c - N_c' if it breaks the claim, else None."""
    best = None
    for o in range(len(task.classes)):
        if o == c:
            continue
        if best is None or logits[c] - logits[o] < logits[c] - logits[best]:
            best = o
    if best is not None and not q.holds_for(logits[c] - logits[best]):
        return best
    return None


def witness_for(task: Task, c: int, scene, image, present_names: set[str]) -> Counterexample | None:
    """A well-posedness witness on this image, if another class is complete on it."""
    cls = task.classes[c]
    placed = set()
    todo = list(scene)
    while todo:  # every item a placement places, down to its features
        p = todo.pop()
        placed.add(p.feature)
        todo.extend(p.pieces)
    for o, other in enumerate(task.classes):
        if o == c or not all(n in present_names for n in other.required):
            continue
        acc = []
        for n in other.required:
            if n not in placed:
                from cnnproof.constructions.parts import item_occurrences

                occ = item_occurrences(task, image, n)
                acc.append((n, occ[0]))
        return Counterexample(cls.name, scene, image, other.name, accidental=tuple(acc))
    return None


# -- networks with irrational parameters (an ONNX BatchNormalization): the file's real function ----
#
# The exact network replaces each irrational value by a rational stand-in (onnx_import.InexactAffine).
# A verdict is about the file only once it is re-established for the true values: a proof needs a
# proven margin above the largest change the stand-ins can make to N_c - N_c' on any image of the
# task; a counterexample is re-evaluated with rational enclosures of the true values (interval
# arithmetic), refined until the sign of the gap is certain.

REFINE_BITS = (64, 128, 256, 512, 1024, 2048)
DEVIATION_BITS = 256  # enclosure precision for the deviation bound of a proof


def _frac(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=object)


def _apply(layer, x: np.ndarray) -> np.ndarray:
    """One layer on one exact tensor (Fractions, no batch axis), by the layer's own evaluation."""
    ints, den = to_scaled_ints(_frac(x))
    out, d = layer.apply(ints.reshape((1,) + ints.shape), den)
    return np.vectorize(lambda v: Fraction(int(v), d), otypes=[object])(out[0])


def _with_weights(layer, weight, bias):
    return dataclasses.replace(layer, weight=weight, bias=bias)


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos = np.vectorize(lambda v: v if v > 0 else Fraction(0), otypes=[object])(a)
    neg = np.vectorize(lambda v: v if v < 0 else Fraction(0), otypes=[object])(a)
    return pos, neg


def _zero_bias(layer) -> np.ndarray:
    return fraction_array([0] * layer.bias.shape[0], layer.bias.shape)


def _intervals(layers, lo: np.ndarray, hi: np.ndarray, enclosures: dict) -> tuple[np.ndarray, np.ndarray]:
    """Sound bounds [lo, hi] on the output of ``layers`` for every input in [lo, hi] and every
    value of each inexact layer's parameters in its enclosure (``enclosures``: id(layer) ->
    (scale_lo, scale_hi, shift_lo, shift_hi))."""
    for layer in layers:
        if isinstance(layer, (Conv2d, GeneralConv2d, Dense)):
            pos, neg = _split(layer.weight)
            zb = _zero_bias(layer)
            P, N = _with_weights(layer, pos, zb), _with_weights(layer, neg, zb)
            bias = layer.bias.reshape((-1,) + (1,) * (lo.ndim - 1)) if lo.ndim > 1 else layer.bias
            lo, hi = (_apply(P, lo) + _apply(N, hi) + bias, _apply(P, hi) + _apply(N, lo) + bias)
        elif isinstance(layer, Affine):
            if id(layer) in enclosures:
                sl, sh, bl, bh = enclosures[id(layer)]
            else:
                sl = sh = layer.scale
                bl = bh = layer.shift
            cands = [sl * lo, sl * hi, sh * lo, sh * hi]
            lo = _emin(cands) + bl
            hi = _emax(cands) + bh
        elif isinstance(layer, (ReLU, MaxPool, GlobalMaxPool, Flatten)):  # monotone in every input
            lo, hi = _apply(layer, lo), _apply(layer, hi)
        elif isinstance(layer, Parallel):
            outs = [_intervals(b, lo, hi, enclosures) for b in layer.branches]
            lo = np.concatenate([o[0] for o in outs], axis=0)
            hi = np.concatenate([o[1] for o in outs], axis=0)
        else:
            raise TypeError(f"no interval evaluation for layer kind {layer.kind}")
    return lo, hi


def _emin(arrs):
    out = arrs[0]
    for a in arrs[1:]:
        out = np.vectorize(min, otypes=[object])(out, a)
    return out


def _emax(arrs):
    out = arrs[0]
    for a in arrs[1:]:
        out = np.vectorize(max, otypes=[object])(out, a)
    return out


def true_logits(net: Network, inexact, image: np.ndarray, bits: int) -> tuple[list[Fraction], list[Fraction]]:
    """Enclosures [lo_k, hi_k] of the real logits of the file on ``image`` (exact), with the true
    values of the inexact parameters enclosed to about 2^-bits."""
    enc = {id(i.layer): i.enclose(bits) for i in inexact}
    x = _frac(image)
    lo, hi = _intervals(net.layers, x, x, enc)
    return list(lo.ravel()), list(hi.ravel())


def deviation_bound(task: Task, net: Network, inexact, bits: int = DEVIATION_BITS) -> Fraction:
    """A bound D with |(N_c - N_c')(x) over the true values - (N_c - N_c')(x) of the exact network|
    <= D for every image x with pixels in [min level - δ, max level + δ] and every pair c, c'.

    Propagated per entry: a magnitude bound M of the exact network's value and a bound E of the
    change; linear layers E' = |W| E, an inexact affine E' = max|s*| E + max|s* - s| M + max|b* - b|,
    ReLU and max pooling E' = E (1-Lipschitz)."""
    levels = [Fraction(v) for v in task.levels]
    mag = max(abs(min(levels) - task.noise), abs(max(levels) + task.noise))
    enc = {id(i.layer): i.enclose(bits) for i in inexact}
    M = np.full(tuple(net.input_shape), mag, dtype=object)
    E = np.full(tuple(net.input_shape), Fraction(0), dtype=object)
    M, E = _deviation(net.layers, M, E, enc)
    E = list(E.ravel())
    return max((E[c] + E[d] for c in range(len(E)) for d in range(len(E)) if c != d), default=Fraction(0))


def _absarr(a):
    return np.vectorize(abs, otypes=[object])(a)


def _deviation(layers, M, E, enc):
    for layer in layers:
        if isinstance(layer, (Conv2d, GeneralConv2d, Dense)):
            aw = _absarr(layer.weight)
            A = _with_weights(layer, aw, _absarr(layer.bias))
            A0 = _with_weights(layer, aw, _zero_bias(layer))
            M, E = _apply(A, M), _apply(A0, E)
        elif isinstance(layer, Affine):
            s, b = layer.scale, layer.shift
            if id(layer) in enc:
                sl, sh, bl, bh = enc[id(layer)]
                smax = _emax([_absarr(sl), _absarr(sh)])
                ds = _emax([_absarr(sl - s), _absarr(sh - s)])
                db = _emax([_absarr(bl - b), _absarr(bh - b)])
                E = smax * E + ds * M + db
            else:
                E = _absarr(s) * E + 0 * b
            M = _absarr(s) * M + _absarr(b)
        elif isinstance(layer, (ReLU, MaxPool, GlobalMaxPool, Flatten)):
            M, E = _apply(layer, M), _apply(layer, E)
        elif isinstance(layer, Parallel):
            outs = [_deviation(b, M, E, enc) for b in layer.branches]
            M = np.concatenate([o[0] for o in outs], axis=0)
            E = np.concatenate([o[1] for o in outs], axis=0)
        else:
            raise TypeError(f"no deviation bound for layer kind {layer.kind}")
    return M, E


def for_the_file(task: Task, net: Network, inexact, q: Question, v, prove_margin=None, notes: list | None = None):
    """The verdict ``v`` (about the exact network ``net``) made true of the file's real function
    when ``inexact`` parameters stand in for irrational ones; unchanged when there are none.

    - Refuted: the counterexample image is re-evaluated with enclosures of the true values,
      refined (REFINE_BITS) until N_c - N_c' certainly breaks the claim for some c' (Refuted) or
      certainly satisfies it for every c' (Unknown: the stand-in's counterexample is not one of
      the file); Unknown too when no precision decides.
    - Proved: a proven lower bound L on every N_c - N_c' of the exact network must exceed the
      claim by the deviation bound D (``deviation_bound``): L - D > 0, or >= μ. L is the exact
      worst case, a bound the method proved, or asked of ``prove_margin(Question)`` (True when
      proved); else Unknown.
    """
    out = _for_the_file(task, net, inexact, q, v, prove_margin)
    if notes is not None and "inexact_note" in out.details:
        notes.append(out.details["inexact_note"])
    return out


def _layer_ids(layers) -> set[int]:
    ids = set()
    for layer in layers:
        ids.add(id(layer))
        if isinstance(layer, Parallel):
            for b in layer.branches:
                ids |= _layer_ids(b)
    return ids


def _for_the_file(task, net, inexact, q, v, prove_margin):
    if not inexact or q.theorem != "zero_error":
        return v
    missing = [i.node for i in inexact if id(i.layer) not in _layer_ids(net.layers)]
    if missing:  # a stand-in was rewritten after import: its enclosure no longer names a layer
        return Unknown(v.method, f"internal error: the stand-in of BatchNormalization {missing} is not a layer of the "
                       "network, so the verdict cannot be re-established for the file's true values")
    names = ", ".join(sorted({repr(i.node) for i in inexact}))
    what = f"BatchNormalization {names} {'has an irrational scale' if len(inexact) == 1 else 'have irrational scales'} 1/sqrt(var + eps)"
    if isinstance(v, Refuted):
        return _real_refutation(task, net, inexact, q, v, what)
    if isinstance(v, Proved):
        D = deviation_bound(task, net, inexact)
        need = D + (q.margin if q.margin is not None else 0)
        known = [m for m in (v.margin, v.details.get("margin_lower_bound")) if m is not None]
        L = max(known) if known else None
        ok = L is not None and (L > need if q.margin is None else L >= need)
        if not ok and prove_margin is not None and v.margin is None:
            target = need + (D / 2**20 if D else 0) + Fraction(1, 2**400) if q.margin is None else need
            if prove_margin(Question("zero_error", target)):
                L, ok = target, True
        if not ok:
            return Unknown(v.method, f"the exact network is proved, but {what}: the rational stand-ins may change "
                           f"N_c - N_c' by up to {float(D):.3g}, and no margin above that is proved "
                           f"(proved {'none' if L is None else format_rational(L) if len(format_rational(L)) < 20 else f'{float(L):.6g}'})",
                           dict(v.details, inexact_deviation=D))
        return dataclasses.replace(v, details=dict(v.details, inexact_deviation=D,
                                                   inexact_note=f"{what}; the proof covers the true values: the stand-ins "
                                                   f"change N_c - N_c' by at most {float(D):.3g}, below the proven margin"))
    return v


def _real_refutation(task, net, inexact, q, v, what):
    cex = v.counterexample
    c = task.class_index(cex.cls)
    others = [task.class_index(cex.other)] + [o for o in range(len(task.classes)) if o not in (c, task.class_index(cex.other))]
    gaps = None
    for bits in REFINE_BITS:
        lo, hi = true_logits(net, inexact, cex.image, bits)
        gaps = [(o, lo[c] - hi[o], hi[c] - lo[o]) for o in others]
        for o, g_lo, g_hi in gaps:
            if not q.holds_for(g_hi):  # every value in the enclosure breaks the claim: true of the file
                real = dataclasses.replace(cex, other=task.classes[o].name)
                return dataclasses.replace(v, counterexample=real, details=dict(
                    v.details, inexact_note=f"{what}; re-evaluated with the true values enclosed to 2^-{bits}: "
                    f"N_c - N_c' <= {float(g_hi):.6g} (the logits shown are the rational stand-in's)",
                    true_gap=(g_lo, g_hi)))
        if all(q.holds_for(g_lo) for _, g_lo, _ in gaps):
            o, g_lo, g_hi = gaps[0]
            return Unknown(v.method, f"the exact network's counterexample is not one of the file: {what}, and with the "
                           f"true values N_c - N_c' lies in [{float(g_lo):.6g}, {float(g_hi):.6g}] on that image, "
                           "which satisfies the claim (the rational stand-in alone gave "
                           f"{float(cex.logits[c] - cex.logits[o]):.6g}); the search for a real counterexample did not continue",
                           dict(v.details, true_gap=(g_lo, g_hi)))
    o, g_lo, g_hi = gaps[0]
    return Unknown(v.method, f"{what}: on the counterexample image N_c - N_c' lies in [{float(g_lo):.6g}, "
                   f"{float(g_hi):.6g}] with the true values enclosed to 2^-{REFINE_BITS[-1]}; whether it breaks "
                   "the claim is not decided", dict(v.details, true_gap=(g_lo, g_hi)))
