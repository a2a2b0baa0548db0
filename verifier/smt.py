"""The monolithic SMT prover: one z3 query per class over the whole canvas.

Stage: network -> verdict. Trusted: the encoding is (z3's ``unsat`` is taken as PROVED); every
``sat`` answer is decoded into a scene and an image and re-checked by exact evaluation
(``recheck.confirm``) before it is reported; ``unknown`` or a timeout is UNKNOWN.

Encoding for class c (MODEL.md section 3):

* one Boolean ``b[s, f, a]`` per slot s, feature f and allowed anchor a. A required slot picks
  exactly one anchor of its feature; a distractor slot picks at most one (feature, anchor);
  slots of one feature are ordered by anchor index (a scene is a set); pairs of candidates whose
  footprints are closer than ``gap + 1`` (Chebyshev) exclude each other;
* a base pixel is ``background + Σ If(b, T - background, 0)`` over the candidates whose support
  covers it (footprints never overlap, so at most one does); the image adds a noise variable in
  ``[-δ, δ]`` per pixel;
* the network as exact linear real arithmetic: affine layers as linear terms, ReLU as
  ``y = If(e > 0, e, 0)``, max as ``m >= e_k`` and ``Or(m == e_k)``. Interval bounds (exact
  rationals) fold ReLUs whose sign is known and drop max candidates that cannot win;
* the negated claim: some c' != c with ``N_c - N_c' < μ`` (``<= 0`` for the strict claim). For
  well-posedness: some other class whose required features all appear (as an Or over every
  anchor of an And over the support cells) in the base image.

Tasks with parts (MODEL.md section 8) use the placement trees of ``checker.scenes.scene_model``
instead of Booleans: each slot's anchor and each piece's displacement is an Int variable, a base
pixel is ``background + Σ If(leaf at (R, C), T - background, 0)`` over the leaves that can cover
it; well-posedness asks ``cooccur`` once per pair of classes (items occur recursively, also by
accident).

Numbers enter z3 only as exact numerator/denominator pairs (``z3.Q``) and are read back with
``as_fraction()``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterable

import numpy as np
import z3

from cnnproof.constructions.scenes import Placement, _separated, anchors_for, scene_from_json
from cnnproof.constructions.task import ClassSpec, Task
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
from cnnproof.verifier.deadline import DeadlineExceeded, alarm, check, solve
from cnnproof.verifier.outcome import Counterexample, Proved, Question, Refuted, Unknown, Verdict
from cnnproof.verifier.checker.scenes import cooccur, scene_model, scene_of_model
from cnnproof.verifier.recheck import confirm, witness_for, worst_other


def Q(v: Fraction | int) -> z3.ArithRef:
    v = Fraction(v)
    return z3.Q(v.numerator, v.denominator) if v.denominator != 1 else z3.RealVal(v.numerator)


# ---------------------------------------------------------------------------------------------
# Linear expressions with exact interval bounds
# ---------------------------------------------------------------------------------------------


@dataclass
class Atom:
    term: z3.ArithRef
    lo: Fraction
    hi: Fraction


class Lin:
    """const + Σ coeff * atom, with atoms keyed by z3 id."""

    __slots__ = ("const", "terms")

    def __init__(self, const: Fraction = Fraction(0), terms: dict | None = None):
        self.const = Fraction(const)
        self.terms: dict[int, tuple[Atom, Fraction]] = terms or {}

    @staticmethod
    def atom(a: Atom) -> "Lin":
        return Lin(Fraction(0), {a.term.get_id(): (a, Fraction(1))})

    def is_const(self) -> bool:
        return not self.terms

    def bounds(self) -> tuple[Fraction, Fraction]:
        lo = hi = self.const
        for a, c in self.terms.values():
            if c > 0:
                lo += c * a.lo
                hi += c * a.hi
            else:
                lo += c * a.hi
                hi += c * a.lo
        return lo, hi

    def to_z3(self) -> z3.ArithRef:
        parts = [Q(self.const)] if self.const != 0 or not self.terms else []
        for a, c in self.terms.values():
            parts.append(a.term if c == 1 else Q(c) * a.term)
        return parts[0] if len(parts) == 1 else z3.Sum(parts)


def lin_combo(items: Iterable[tuple[Fraction, Lin]], const: Fraction) -> Lin:
    out: dict[int, tuple[Atom, Fraction]] = {}
    total = Fraction(const)
    for w, e in items:
        if w == 0:
            continue
        total += w * e.const
        for k, (a, c) in e.terms.items():
            if k in out:
                nc = out[k][1] + w * c
                if nc == 0:
                    del out[k]
                else:
                    out[k] = (a, nc)
            else:
                out[k] = (a, w * c)
    return Lin(total, out)


class Encoder:
    """Builds the network's constraints into a z3 solver, folding what bounds decide."""

    def __init__(self, solver: z3.Solver):
        self.s = solver
        self.n = 0

    def fresh(self, lo: Fraction, hi: Fraction, prefix: str) -> Atom:
        self.n += 1
        v = z3.Real(f"{prefix}{self.n}")
        return Atom(v, lo, hi)

    def relu(self, e: Lin) -> Lin:
        lo, hi = e.bounds()
        if lo >= 0:
            return e
        if hi <= 0:
            return Lin()
        a = self.fresh(Fraction(0), hi, "r")
        ez = e.to_z3()
        self.s.add(a.term == z3.If(ez > 0, ez, Q(0)))
        return Lin.atom(a)

    def max(self, es: list[Lin]) -> Lin:
        bs = [e.bounds() for e in es]
        best_lo = max(lo for lo, _ in bs)
        keep = [e for e, (lo, hi) in zip(es, bs) if hi >= best_lo]
        if len(keep) == 1:
            return keep[0]
        consts = [e for e in keep if e.is_const()]
        if consts and all(e.const >= max(e2.bounds()[1] for e2 in keep) for e in consts[:1]):
            return consts[0]
        hi = max(e.bounds()[1] for e in keep)
        a = self.fresh(best_lo, hi, "m")
        zs = [e.to_z3() for e in keep]
        for z in zs:
            self.s.add(a.term >= z)
        self.s.add(z3.Or([a.term == z for z in zs]))
        return Lin.atom(a)

    def run(self, layers, x: np.ndarray) -> np.ndarray:
        for layer in layers:
            x = self.layer(layer, x)
        return x

    def layer(self, layer, x: np.ndarray) -> np.ndarray:
        if isinstance(layer, Conv2d):
            O, I, kh, kw = layer.weight.shape
            _, H, W = x.shape
            out = np.empty((O, H - kh + 1, W - kw + 1), dtype=object)
            nz = [
                [(c, a, b, layer.weight[o, c, a, b]) for c in range(I) for a in range(kh) for b in range(kw)
                 if layer.weight[o, c, a, b] != 0]
                for o in range(O)
            ]
            for o in range(O):
                for i in range(H - kh + 1):
                    for j in range(W - kw + 1):
                        out[o, i, j] = lin_combo(((w, x[c, i + a, j + b]) for c, a, b, w in nz[o]), layer.bias[o])
            return out
        if isinstance(layer, GeneralConv2d):
            O, I, kh, kw = layer.weight.shape
            C, H, W = x.shape
            t, l, _, _ = layer.pads
            (sh, sw), (dh, dw) = layer.stride, layer.dilation
            _, Ho, Wo = layer.out_shape(x.shape)
            out = np.empty((O, Ho, Wo), dtype=object)
            for o in range(O):
                taps = [(c, a, b, layer.weight[o, c, a, b]) for c in range(I) for a in range(kh) for b in range(kw)
                        if layer.weight[o, c, a, b] != 0]
                for i in range(Ho):
                    for j in range(Wo):
                        items = []
                        for c, a, b, w in taps:
                            r, q = i * sh - t + a * dh, j * sw - l + b * dw
                            if 0 <= r < H and 0 <= q < W:  # outside: zero padding
                                items.append((w, x[c, r, q]))
                        out[o, i, j] = lin_combo(items, layer.bias[o])
            return out
        if isinstance(layer, MaxPool):
            C, H, W = x.shape
            _, Ho, Wo = layer.out_shape(x.shape)
            out = np.empty((C, Ho, Wo), dtype=object)
            for i, j, cells in layer.windows(H, W):
                for c in range(C):
                    out[c, i, j] = self.max([x[c, r, q] for r, q in cells])
            return out
        if isinstance(layer, Affine):
            scale = np.broadcast_to(layer.scale, x.shape)
            shift = np.broadcast_to(layer.shift, x.shape)
            out = np.empty(x.shape, dtype=object)
            for idx in np.ndindex(x.shape):
                out[idx] = lin_combo([(scale[idx], x[idx])] if scale[idx] != 0 else [], shift[idx])
            return out
        if isinstance(layer, ReLU):
            out = np.empty(x.shape, dtype=object)
            for idx in np.ndindex(x.shape):
                out[idx] = self.relu(x[idx])
            return out
        if isinstance(layer, GlobalMaxPool):
            C = x.shape[0]
            out = np.empty((C, 1, 1), dtype=object)
            for c in range(C):
                out[c, 0, 0] = self.max(list(x[c].ravel()))
            return out
        if isinstance(layer, Flatten):
            return x.reshape(-1)
        if isinstance(layer, Dense):
            O, I = layer.weight.shape
            out = np.empty((O,), dtype=object)
            for o in range(O):
                out[o] = lin_combo(((layer.weight[o, k], x[k]) for k in range(I) if layer.weight[o, k] != 0), layer.bias[o])
            return out
        if isinstance(layer, Parallel):
            return np.concatenate([self.run(b, x) for b in layer.branches], axis=0)
        raise TypeError(f"no SMT encoding for layer {layer!r}")


SMT_LAYERS = (Conv2d, ReLU, GlobalMaxPool, Flatten, Dense, Parallel, GeneralConv2d, MaxPool, Affine)


# ---------------------------------------------------------------------------------------------
# Scenes as constraints
# ---------------------------------------------------------------------------------------------


@dataclass
class Cand:
    slot: int
    feature: str
    row: int
    col: int
    var: z3.BoolRef
    ind: Atom  # If(var, 1, 0) as a bounded atom


def _scene_constraints(task: Task, cls: ClassSpec, s: z3.Solver, tag: str) -> list[Cand]:
    slots: list[tuple[str, tuple[str, ...]]] = []  # (kind, features)
    for name in cls.required:
        for _ in range(cls.copies):
            slots.append(("req", (name,)))
    for _ in range(cls.max_distractors if cls.distractors else 0):
        slots.append(("dis", tuple(cls.distractors)))
    cands: list[Cand] = []
    by_slot: list[list[Cand]] = []
    for k, (kind, names) in enumerate(slots):
        mine = []
        for name in names:
            f = task.feature(name)
            for (i, j) in anchors_for(task, cls, f):
                v = z3.Bool(f"{tag}_s{k}_{name}_{i}_{j}")
                c = Cand(k, name, i, j, v, Atom(z3.If(v, z3.RealVal(1), z3.RealVal(0)), Fraction(0), Fraction(1)))
                mine.append(c)
        by_slot.append(mine)
        cands.extend(mine)
        vs = [c.var for c in mine]
        if kind == "req":
            s.add(z3.PbEq([(v, 1) for v in vs], 1))
        else:
            s.add(z3.PbLe([(v, 1) for v in vs], 1))
    # a scene is a set: order identical required slots by anchor index; order distractor slots
    # by (used first, then feature/anchor index) so that each multiset appears once
    for k in range(1, len(slots)):
        if slots[k] != slots[k - 1]:
            continue
        prev, cur = by_slot[k - 1], by_slot[k]
        for ia, ca in enumerate(cur):
            # cur picks index ia -> prev picks an index < ia
            s.add(z3.Implies(ca.var, z3.Or([cb.var for cb in prev[:ia]]) if ia else z3.BoolVal(False)))
    # separation
    sizes = {n: task.feature(n).size for n in {c.feature for c in cands}}
    for k1 in range(len(slots)):
        for k2 in range(k1 + 1, len(slots)):
            for a in by_slot[k1]:
                ha, wa = sizes[a.feature]
                bad = [
                    b.var for b in by_slot[k2]
                    if not _separated((a.row, a.col, ha, wa), (b.row, b.col, *sizes[b.feature]), cls.gap)
                ]
                if bad:
                    s.add(z3.Implies(a.var, z3.Not(z3.Or(bad))))
    return cands


def _base_pixels(task: Task, cands: list[Cand]) -> np.ndarray:
    bg = task.background
    cover: dict[tuple[int, int, int], list[tuple[Fraction, Lin]]] = {}
    for c in cands:
        f = task.feature(c.feature)
        for ch, a, b, v in f.support():
            if v != bg:
                cover.setdefault((ch, c.row + a, c.col + b), []).append((v - bg, Lin.atom(c.ind)))
    img = np.empty((task.channels, task.height, task.width), dtype=object)
    for idx in np.ndindex(img.shape):
        img[idx] = lin_combo(cover.get(idx, []), bg)
    return img


def _decode(task: Task, model: z3.ModelRef, cands: list[Cand]) -> tuple[Placement, ...]:
    return tuple(sorted(Placement(c.feature, c.row, c.col) for c in cands if z3.is_true(model.eval(c.var, model_completion=True))))


def _value(model: z3.ModelRef, term: z3.ArithRef) -> Fraction:
    v = model.eval(term, model_completion=True)
    if not z3.is_rational_value(v):
        raise ValueError(f"z3 returned a non-rational value {v}")
    return Fraction(v.as_fraction())


# ---------------------------------------------------------------------------------------------
# The prover
# ---------------------------------------------------------------------------------------------


def prove(task: Task, net: Network | None, q: Question, deadline: float | None = None,
          progress: Callable[[str], None] | None = None) -> Verdict:
    """One z3 query per class. With a ``deadline`` the encoding is interrupted when it passes
    and each query runs in a child process killed at the deadline (``deadline.solve``): UNKNOWN
    (timeout), never a hang."""
    details: dict = {"solver": f"z3 {z3.get_version_string()}", "classes": {}}
    try:
        with alarm(deadline):
            return _prove(task, net, q, deadline, details, progress)
    except DeadlineExceeded:
        return Unknown("smt", "timeout", details)


def _prove(task: Task, net: Network | None, q: Question, deadline: float | None, details: dict,
           progress: Callable[[str], None] | None) -> Verdict:
    t0 = time.perf_counter()
    for c, cls in enumerate(task.classes):
        check(deadline)
        if progress:
            progress(f"smt: class {cls.name} ({c + 1}/{len(task.classes)}): encoding")
        s = z3.Solver()
        tc = time.perf_counter()
        enc = Encoder(s)
        if task.parts:  # placement trees (section 8): anchors and displacements are Int variables
            if q.theorem == "wellposed":
                v = _items_wellposed(task, q, c, details, tc)
                if v is not None:
                    return v
                continue
            slots, base = _item_base_pixels(task, cls, s, enc)
            decode = lambda m, slots=slots: scene_from_json(scene_of_model(m, slots))  # noqa: E731
        else:
            cands = _scene_constraints(task, cls, s, f"c{c}")
            base = _base_pixels(task, cands)
            decode = lambda m, cands=cands: _decode(task, m, cands)  # noqa: E731
        if q.theorem == "wellposed":
            _wellposed_goal(task, c, base, s)
            noise_atoms = None
        else:
            noise_atoms = np.empty(base.shape, dtype=object)
            x = np.empty(base.shape, dtype=object)
            for idx in np.ndindex(base.shape):
                if not base[idx].is_const():
                    # a pixel variable keeps the network's terms small
                    lo, hi = base[idx].bounds()
                    pv = enc.fresh(lo, hi, "px")
                    s.add(pv.term == base[idx].to_z3())
                    s.add(z3.Or([pv.term == Q(l) for l in task.levels if lo <= l <= hi]))
                    base[idx] = Lin.atom(pv)
                if task.noise:
                    a = enc.fresh(-task.noise, task.noise, "eta")
                    s.add(a.term >= Q(-task.noise), a.term <= Q(task.noise))
                    noise_atoms[idx] = a
                    x[idx] = lin_combo([(Fraction(1), base[idx]), (Fraction(1), Lin.atom(a))], 0)
                else:
                    x[idx] = base[idx]
            logits = enc.run(net.layers, x)
            viol = []
            for o in range(len(task.classes)):
                if o == c:
                    continue
                d = lin_combo([(Fraction(1), logits[c]), (Fraction(-1), logits[o])], 0)
                lo, hi = d.bounds()
                if q.holds_for(lo):
                    continue  # bounds alone prove this pair
                dz = d.to_z3()
                viol.append(dz <= 0 if q.margin is None else dz < Q(q.margin))
            if not viol:
                details["classes"][cls.name] = {"result": "unsat (by bounds)", "seconds": time.perf_counter() - tc}
                continue
            s.add(z3.Or(viol))
        if progress:
            progress(f"smt: class {cls.name} ({c + 1}/{len(task.classes)}): solving")

        def extract(m, decode=decode, noise_atoms=noise_atoms):  # runs where z3 ran (maybe a child)
            noise = None
            if noise_atoms is not None and task.noise:
                noise = {idx: _value(m, noise_atoms[idx].term) for idx in np.ndindex(noise_atoms.shape)}
            return decode(m), noise

        r, payload, why = solve(s, deadline, extract)
        details["classes"][cls.name] = {"result": r, "seconds": time.perf_counter() - tc}
        if r == "unsat":
            continue
        if r == "unknown":
            return Unknown("smt", f"z3 answered unknown for class {cls.name}: {why}", details)
        scene, noise = payload
        from cnnproof.constructions.scenes import base_image, occurrences

        img = base_image(task, scene)
        if q.theorem == "wellposed":
            present = {f.name for f in task.features if occurrences(task, img, f)}
            w = witness_for(task, c, scene, img, present)
            if w is None:
                from cnnproof.verifier.errors import SoundnessError

                raise SoundnessError(f"smt: the model's scene {scene} of class {cls.name} completes no other class")
            return Refuted("smt", confirm(task, None, q, w), details)
        if noise:
            for idx in np.ndindex(img.shape):
                img[idx] = img[idx] + noise[idx]
        logits_exact = net.evaluate(img)
        o = worst_other(task, q, c, logits_exact)
        if o is None:
            from cnnproof.verifier.errors import SoundnessError

            raise SoundnessError(f"smt: the model's image of class {cls.name} does not violate the claim under exact evaluation")
        cex = Counterexample(cls.name, scene, img, task.classes[o].name, tuple(logits_exact))
        return Refuted("smt", confirm(task, net, q, cex), details)
    details["seconds"] = time.perf_counter() - t0
    return Proved("smt", None, details)


def _item_base_pixels(task: Task, cls: ClassSpec, s: z3.Solver, enc: Encoder):
    """The base image of a scene of ``cls`` with parts: the slots of ``scene_model`` and one
    pixel atom per cell a leaf can cover, ``background + Σ If(leaf at (R, C), T - background, 0)``
    (leaves never overlap, so at most one term is non-zero)."""
    slots, placed = scene_model(task, cls, s)
    bg, H, W = task.background, task.height, task.width
    terms: dict[tuple[int, int, int], list] = {}
    for on, (fname, R, C, h, w), _ in placed:
        for ch, a, b, v in task.feature(fname).support():
            if v == bg:
                continue
            for i in range(a, H - h + 1 + a):
                for j in range(b, W - w + 1 + b):
                    terms.setdefault((ch, i, j), []).append((v, z3.And(on, R == i - a, C == j - b)))
    base = np.empty((task.channels, H, W), dtype=object)
    for idx in np.ndindex(base.shape):
        ts = terms.get(idx)
        if not ts:
            base[idx] = Lin(bg)
            continue
        values = sorted({bg} | {v for v, _ in ts})
        pv = enc.fresh(values[0], values[-1], "px")
        s.add(pv.term == Q(bg) + z3.Sum([z3.If(at, Q(v - bg), Q(0)) for v, at in ts]))
        s.add(z3.Or([pv.term == Q(v) for v in values]))
        base[idx] = Lin.atom(pv)
    return slots, base


def _items_wellposed(task: Task, q: Question, c: int, details: dict, t0: float) -> Verdict | None:
    """Well-posedness for class c of a task with parts: one exact query per other class, "a scene
    of c whose base image contains every item of c'" (``cooccur``); a Refuted verdict or None."""
    from cnnproof.verifier.levels import _present

    cls = task.classes[c]
    for o, other in enumerate(task.classes):
        if o == c:
            continue
        found = cooccur(task, cls, list(other.required))
        if found is not None:
            scene = scene_from_json(found)
            from cnnproof.constructions.scenes import base_image

            w = witness_for(task, c, scene, base_image(task, scene), _present(task, scene))
            if w is None:
                from cnnproof.verifier.errors import SoundnessError

                raise SoundnessError(f"smt: the scene {scene} of class {cls.name} completes no other class")
            return Refuted("smt", confirm(task, None, q, w), details)
    details["classes"][cls.name] = {"result": "unsat", "seconds": time.perf_counter() - t0}
    return None


def _wellposed_goal(task: Task, c: int, base: np.ndarray, s: z3.Solver) -> None:
    """Assert: some other class has all its required features present in the base image."""
    present: dict[str, z3.BoolRef] = {}

    def presence(name: str) -> z3.BoolRef:
        if name in present:
            return present[name]
        f = task.feature(name)
        h, w = f.size
        ors = []
        for i in range(task.height - h + 1):
            for j in range(task.width - w + 1):
                conj = []
                ok = True
                for ch, a, b, v in f.support():
                    e = base[ch, i + a, j + b]
                    if e.is_const():
                        if e.const != v:
                            ok = False
                            break
                        continue
                    lo, hi = e.bounds()
                    if v < lo or v > hi:
                        ok = False
                        break
                    conj.append(e.to_z3() == Q(v))
                if ok:
                    ors.append(z3.And(conj) if conj else z3.BoolVal(True))
        present[name] = z3.Or(ors) if ors else z3.BoolVal(False)
        return present[name]

    goals = []
    for o, other in enumerate(task.classes):
        if o == c:
            continue
        goals.append(z3.And([presence(n) for n in other.required]))
    s.add(z3.Or(goals))
