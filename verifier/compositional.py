"""The compositional prover: the paper's argument as small obligations (MODEL.md section 6).

Stage: network -> obligations -> verdict. Trusted: the lemmas' combination is; every lemma is
recorded as an obligation that the certificate checker re-derives and re-decides with separate
code, and every counterexample is re-checked by exact evaluation.

It applies to networks of the form Head ∘ GlobalMax ∘ Local, where Local is, per branch, a
stack of pointwise (1x1) convolutions and ReLUs, one h x w convolution, and ReLUs; the pointwise
stack must be *separable* (each of its channels depends on one input channel). Then each pooled
channel's pre-activation on a window is a sum of per-cell functions of one pixel, each an exact
piecewise-linear function, so:

1. **window lemmas** (one per channel): exact bounds of the channel over every window whose cells
   are within δ of a level, split by whether the window contains the channel's feature;
2. **scene lemmas** (per class and feature): which features can never occur in an image of the
   class (a canvas-independent *uncoverable cell*, or the exact scene search), and, on demand,
   whether a set of features can occur together (``constructions/scene_search.py``);
3. **head lemmas** (per class): for every presence vector the scene lemmas allow and every pooled
   value the window lemmas allow, the head's margin holds: exact interval arithmetic, else one
   z3 query refined by joint scene searches (a loop that adds "these cannot occur together").

A lemma that fails is not a refutation: REFUTED needs a concrete scene whose image exact
evaluation misclassifies. Otherwise the prover falls back to ``smt`` (or answers UNKNOWN).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import z3

from cnnproof.constructions.scene_search import appear_together, forced_conflict, local_configuration, uncoverable_cell
from cnnproof.constructions.scenes import SearchBudgetExceeded, base_image, find_scene, placement_json
from cnnproof.constructions.task import Task
from cnnproof.verifier.checker.normal_form import normal_form
from cnnproof.verifier.deadline import DeadlineExceeded, alarm, check, z3_timeout_ms
from cnnproof.verifier.errors import NotApplicable
from cnnproof.verifier.exact import format_rational
from cnnproof.verifier.network import Conv2d, Dense, Flatten, GlobalMaxPool, Network, Parallel, ReLU
from cnnproof.verifier.outcome import Counterexample, Proved, Question, Refuted, Unknown, Verdict
from cnnproof.verifier.pwl import PWL, combine
from cnnproof.verifier.recheck import confirm, witness_for, worst_other

MAX_REFINEMENTS = 200


# ---------------------------------------------------------------------------------------------
# 1. The network's shape
# ---------------------------------------------------------------------------------------------


@dataclass
class Branch:
    pointwise: list  # 1x1 Conv2d and ReLU layers applied to the input
    conv: Conv2d  # the h x w convolution
    post_relu: bool  # a ReLU (or several) after it


@dataclass
class Shape:
    branches: list[Branch]
    head: list  # Dense / ReLU layers after the pooled vector
    channels: list[tuple[int, int]]  # pooled index -> (branch, output channel)


def decompose(net: Network) -> Shape | str:
    """The Head ∘ GlobalMax ∘ Local structure of ``net``, or the reason it has none."""
    layers = list(net.layers)
    pooled_at = None
    for k, layer in enumerate(layers):
        if isinstance(layer, (GlobalMaxPool, Parallel)):
            pooled_at = k
            break
    if pooled_at is None:
        return "no global max pooling"
    trunk = layers[:pooled_at]
    if isinstance(layers[pooled_at], Parallel):
        raw_branches = [list(b) for b in layers[pooled_at].branches]
        rest = layers[pooled_at + 1 :]
    else:
        if pooled_at + 1 >= len(layers) or not isinstance(layers[pooled_at + 1], Flatten):
            return "global max pooling is not followed by flatten"
        raw_branches = [trunk + [layers[pooled_at], layers[pooled_at + 1]]]
        trunk = []
        rest = layers[pooled_at + 2 :]
    branches = []
    for rb in raw_branches:
        body = trunk + rb
        if len(body) < 3 or not isinstance(body[-2], GlobalMaxPool) or not isinstance(body[-1], Flatten):
            return "a branch does not end with global max pooling and flatten"
        body = body[:-2]
        convs = [k for k, l in enumerate(body) if isinstance(l, Conv2d)]
        if not convs:
            return "a branch has no convolution"
        last = convs[-1]
        pre, conv, post = body[:last], body[last], body[last + 1 :]
        for l in pre:
            if isinstance(l, Conv2d) and l.weight.shape[2:] != (1, 1):
                return "two convolutions wider than 1x1 in one branch"
            if not isinstance(l, (Conv2d, ReLU)):
                return f"a {l.kind} layer before the detector convolution"
        if not all(isinstance(l, ReLU) for l in post):
            return "layers other than ReLU between the detector convolution and the pooling"
        branches.append(Branch(pre, conv, bool(post)))
    if not rest or not all(isinstance(l, (Dense, ReLU)) for l in rest):
        return "the head is not dense and ReLU layers"
    channels = [(b, o) for b, br in enumerate(branches) for o in range(br.conv.weight.shape[0])]
    return Shape(branches, rest, channels)


def applies(net: Network) -> bool:
    """The network has a form the compositional method decides (after the exact rewrites of
    ``checker/normal_form.py``): the paper's (window lemmas) or a general valid local stack
    (configuration lemmas)."""
    from cnnproof.verifier.configurations import local_decompose

    net, _ = normal_form(net)
    return not isinstance(decompose(net), str) or not isinstance(local_decompose(net), str)


def _dependencies(layers: list, n_in: int) -> list[set[int]]:
    deps = [{c} for c in range(n_in)]
    for l in layers:
        if isinstance(l, Conv2d):
            O = l.weight.shape[0]
            deps = [set().union(*(deps[t] for t in range(l.weight.shape[1]) if l.weight[o, t, 0, 0] != 0)) for o in range(O)]
    return deps


def _sparse_rows(layers: list) -> list:
    """Per layer of a pointwise stack: for a 1x1 convolution, each output's nonzero (input,
    weight) pairs and its bias; None for a ReLU."""
    rows = []
    for l in layers:
        if isinstance(l, Conv2d):
            O, I = l.weight.shape[:2]
            W = l.weight[:, :, 0, 0]
            rows.append([([(t, W[o, t]) for t in np.flatnonzero(W[o] != 0)], l.bias[o]) for o in range(O)])
        else:
            rows.append(None)
    return rows


def _pointwise_pwl(layers: list, n_in: int, ch: int, lo: Fraction, hi: Fraction, rows=None) -> list[PWL]:
    """Every channel of the pointwise stack as a function of input channel ``ch`` on [lo, hi]
    (other input channels held at 0: only channels that depend on ``ch`` alone are used)."""
    rows = _sparse_rows(layers) if rows is None else rows
    vals = [PWL.identity(lo, hi) if c == ch else PWL.const(lo, hi, Fraction(0)) for c in range(n_in)]
    for r in rows:
        if r is not None:
            vals = [combine([(wt, vals[t]) for t, wt in terms], bias, lo, hi) for terms, bias in r]
        else:
            vals = [v.relu() for v in vals]
    return vals


# ---------------------------------------------------------------------------------------------
# 2. Window lemmas
# ---------------------------------------------------------------------------------------------


@dataclass
class Window:
    channel: int
    feature: str | None  # the feature the channel detects, or None (untied)
    absent: tuple[Fraction, Fraction]  # bounds over windows not containing the feature
    present: tuple[Fraction, Fraction] | None  # bounds over windows containing it
    seconds: float = 0.0

    def pooled(self, is_present: bool | None) -> tuple[Fraction, Fraction]:
        """Bounds of the pooled value: present, absent, or unknown (None)."""
        if self.present is None:
            return self.absent
        a0, b0 = self.absent
        a1, b1 = self.present
        if is_present is None:
            return (min(a0, a1), max(b0, b1))
        return (a1, max(b0, b1)) if is_present else (a0, b0)


def cell_ranges(task: Task, shape: Shape) -> list[np.ndarray] | str:
    """Per branch: an object array [out, C, h, w, level] of (min, max) of the channel's
    per-cell term on [l - δ, l + δ]. Or the reason the stack is not separable."""
    out = []
    C = task.channels
    d = task.noise
    memo: dict = {}  # branches share the trunk's pointwise layers: compute each stack once
    for br in shape.branches:
        n_in = C
        deps = _dependencies(br.pointwise, n_in)
        W = br.conv.weight
        O, T, h, w = W.shape
        for t in range(T):
            if len(deps[t]) > 1 and np.any(W[:, t] != 0):
                return "a pointwise channel mixes input channels (the window is not separable)"
        # constants (channels depending on no input) are folded into the bias
        key = tuple(id(l) for l in br.pointwise)
        if key not in memo:
            rows = _sparse_rows(br.pointwise)
            pw = {(ch, l): _pointwise_pwl(br.pointwise, n_in, ch, l - d, l + d, rows) for ch in range(C) for l in task.levels}
            # the ranges of the stack's channels, once per input channel and level
            memo[key] = pw, {(ch, l, t): f.range() for (ch, l), fs in pw.items() for t, f in enumerate(fs)}
        pw, single = memo[key]
        arr = np.empty((O, C, h, w, len(task.levels)), dtype=object)
        const = np.empty((O,), dtype=object)
        ref = pw[(0, task.levels[0])]
        for o in range(O):
            const[o] = br.conv.bias[o] + sum(
                (W[o, t, a, b] * ref[t].ys[0] for t in range(T) if not deps[t] for a in range(h) for b in range(w)),
                Fraction(0),
            )
        several: dict = {}  # cells with the same weighted terms share their ranges
        nz = W != 0
        for ch in range(C):
            ts = np.array([t for t in range(T) if deps[t] == {ch}], dtype=int)
            for o in range(O):
                for a in range(h):
                    for b in range(w):
                        sel = ts[nz[o, ts, a, b]] if len(ts) else ts
                        terms_w = tuple((W[o, t, a, b], int(t)) for t in sel)
                        if terms_w not in several:
                            rs = np.empty(len(task.levels), dtype=object)
                            for li, l in enumerate(task.levels):
                                rs[li] = _term_range(terms_w, ch, l, d, pw, single)
                            several[terms_w] = rs
                        arr[o, ch, a, b, :] = several[terms_w]
            several.clear()
        out.append((arr, const))
    return out


def _term_range(terms_w, ch, l, d, pw, single) -> tuple[Fraction, Fraction]:
    """The exact range of Σ w * f_t(x) over x in [l - δ, l + δ] (f_t: the stack's channels)."""
    if not terms_w:
        return (Fraction(0), Fraction(0))
    if len(terms_w) == 1:  # the range of w * f is w times the range of f (the ends swap when w < 0)
        wt, t = terms_w[0]
        r0, r1 = single[(ch, l, t)]
        return (wt * r0, wt * r1) if wt > 0 else (wt * r1, wt * r0)
    return combine([(wt, pw[(ch, l)][t]) for wt, t in terms_w], Fraction(0), l - d, l + d).range()


def window_bounds(task: Task, arr: np.ndarray, const: Fraction, o: int, feature, post_relu: bool):
    """(absent, present) bounds of channel ``o`` for ``feature`` (None: over all windows)."""
    _, C, h, w, nl = arr.shape
    relu = (lambda v: max(v, Fraction(0))) if post_relu else (lambda v: v)
    lo_all = hi_all = const
    best_lo, best_hi = {}, {}
    for ch in range(C):
        for a in range(h):
            for b in range(w):
                rs = arr[o, ch, a, b]
                best_lo[(ch, a, b)] = min(r[0] for r in rs)
                best_hi[(ch, a, b)] = max(r[1] for r in rs)
                lo_all += best_lo[(ch, a, b)]
                hi_all += best_hi[(ch, a, b)]
    if feature is None:
        return (relu(lo_all), relu(hi_all)), None
    li = {l: k for k, l in enumerate(task.levels)}
    sup = {(ch, a, b): v for ch, a, b, v in feature.support()}
    # present: support cells at their level, others free
    plo, phi = const, const
    for cell in best_lo:
        if cell in sup:
            r = arr[o][cell][li[sup[cell]]]
            plo += r[0]
            phi += r[1]
        else:
            plo += best_lo[cell]
            phi += best_hi[cell]
    # absent: at least one support cell at another level
    cost_hi, cost_lo = [], []
    for cell, v in sup.items():
        rs = arr[o][cell]
        others = [rs[k] for k in range(nl) if k != li[v]]
        cost_hi.append(best_hi[cell] - max(r[1] for r in others))
        cost_lo.append(min(r[0] for r in others) - best_lo[cell])
    alo = lo_all + min(cost_lo)
    ahi = hi_all - min(cost_hi)
    return (relu(alo), relu(ahi)), (relu(plo), relu(phi))


def window_lemmas(task: Task, net: Network, shape: Shape) -> list[Window] | str:
    ranges = cell_ranges(task, shape)
    if isinstance(ranges, str):
        return ranges
    out = []
    names = list(net.channel_names)
    for k, (b, o) in enumerate(shape.channels):
        t0 = time.perf_counter()
        arr, const = ranges[b]
        h, w = arr.shape[2:4]
        br = shape.branches[b]
        hint = names[k] if k < len(names) else None
        cands = [f for f in task.features if f.size == (h, w)]
        cands.sort(key=lambda f: f.name != hint)  # the network's own name for the channel first
        best = None
        for f in cands:
            absent, present = window_bounds(task, arr, const[o], o, f, br.post_relu)
            sep = present[0] - absent[1]
            if f.name == hint and sep > 0:
                best = (sep, f, absent, present)
                break
            if sep > 0 and (best is None or sep > best[0]):
                best = (sep, f, absent, present)
        if best is None:
            absent, _ = window_bounds(task, arr, const[o], o, None, br.post_relu)
            out.append(Window(k, None, absent, None, time.perf_counter() - t0))
        else:
            _, f, absent, present = best
            out.append(Window(k, f.name, absent, present, time.perf_counter() - t0))
    return out


# ---------------------------------------------------------------------------------------------
# 3. Scene lemmas
# ---------------------------------------------------------------------------------------------


@dataclass
class SceneFacts:
    never: dict[str, dict] = field(default_factory=dict)  # feature -> how it was decided
    maybe: dict[str, object] = field(default_factory=dict)  # feature -> a scene where it occurs, or None


def scene_lemmas(task: Task, c: int, features: set[str]) -> SceneFacts:
    cls = task.classes[c]
    facts = SceneFacts()
    for g in sorted(features):
        if g in cls.required:
            continue
        t0 = time.perf_counter()
        cell = uncoverable_cell(task, cls, g)
        if cell is not None:
            facts.never[g] = {"procedure": "uncoverable-cell", "cell": list(cell), "seconds": time.perf_counter() - t0}
            continue
        try:
            if not local_configuration(task, cls, g):
                facts.never[g] = {"procedure": "local-configuration", "seconds": time.perf_counter() - t0}
                continue
            s = appear_together(task, cls, [g])
        except SearchBudgetExceeded:
            facts.maybe[g] = None
            continue
        if s is None:
            facts.never[g] = {"procedure": "scene-search", "seconds": time.perf_counter() - t0}
        else:
            facts.maybe[g] = s
    return facts


# ---------------------------------------------------------------------------------------------
# 4. Head lemmas
# ---------------------------------------------------------------------------------------------


def _interval_head(head: list, box: list[tuple[Fraction, Fraction]]) -> list[tuple[Fraction, Fraction]]:
    """Interval arithmetic through the head (Dense and ReLU layers) on the box of pooled
    values. Each Dense row is visited by its nonzero weights only (the paper's head has three
    per class: the work per class is O(classes), not O(classes x features))."""
    x = list(box)
    zero = Fraction(0)
    for l, rows in zip(head, _head_rows(head)):
        if rows is None:
            x = [(max(a, zero), max(b, zero)) for a, b in x]
            continue
        nx = []
        for pos, neg, bias in rows:
            lo = hi = bias
            for k, wk in pos:
                lo += wk * x[k][0]
                hi += wk * x[k][1]
            for k, wk in neg:
                lo += wk * x[k][1]
                hi += wk * x[k][0]
            nx.append((lo, hi))
        x = nx
    return x


_HEAD_ROWS: dict[int, tuple[list, list]] = {}


def _head_rows(head: list) -> list:
    """Per layer: for a Dense, each output's (positive (k, w), negative (k, w), bias); None for
    a ReLU. Cached by the identity of the head's layers."""
    key = id(head[0]) if head else 0
    hit = _HEAD_ROWS.get(key)
    if hit is not None and len(hit[0]) == len(head) and all(a is b for a, b in zip(hit[0], head)):
        return hit[1]
    rows = []
    for l in head:
        if isinstance(l, Dense):
            W = l.weight
            rows.append([([(int(k), W[o, k]) for k in np.flatnonzero(W[o] > 0)],
                          [(int(k), W[o, k]) for k in np.flatnonzero(W[o] < 0)], l.bias[o])
                         for o in range(W.shape[0])])
        else:
            rows.append(None)
    if len(_HEAD_ROWS) > 16:
        _HEAD_ROWS.clear()
    _HEAD_ROWS[key] = (list(head), rows)
    return rows


def _q(v: Fraction):
    return z3.Q(v.numerator, v.denominator)


def _head_smt(head, windows: list[Window], status: dict[int, bool | None], c: int, q: Question):
    """A solver asserting: presence booleans (fixed or free), pooled values in their window
    bounds, and the head's margin for class c broken. Returns (solver, presence vars)."""
    from cnnproof.verifier.smt import Encoder, Lin, lin_combo

    s = z3.Solver()
    enc = Encoder(s)
    pres: dict[str, z3.BoolRef] = {}
    xs = []
    for w in windows:
        st = status.get(w.channel)
        lo, hi = w.pooled(st)
        a = enc.fresh(lo, hi, "p")
        if st is None and w.present is not None:
            b = pres.setdefault(w.feature, z3.Bool(f"present_{w.feature}"))
            (a0, b0), (a1, b1) = w.pooled(False), w.pooled(True)
            s.add(z3.If(b, z3.And(a.term >= _q(a1), a.term <= _q(b1)), z3.And(a.term >= _q(a0), a.term <= _q(b0))))
        else:
            s.add(a.term >= _q(lo), a.term <= _q(hi))
        xs.append(Lin.atom(a))
    x = np.empty(len(xs), dtype=object)
    x[:] = xs
    logits = enc.run(head, x)
    diffs = []
    for o in range(len(logits)):
        if o == c:
            continue
        d = lin_combo([(Fraction(1), logits[c]), (Fraction(-1), logits[o])], 0)
        diffs.append(d.to_z3())
    return s, pres, diffs


def _violation(diffs, q: Question, below: Fraction | None = None):
    """Some N_c - N_c' breaks the claim (or, with ``below``, is below that value)."""
    if below is not None:
        return z3.Or([d < _q(below) for d in diffs]) if diffs else z3.BoolVal(False)
    return z3.Or([d <= 0 if q.margin is None else d < _q(q.margin) for d in diffs]) if diffs else z3.BoolVal(False)


# ---------------------------------------------------------------------------------------------
# The prover
# ---------------------------------------------------------------------------------------------


@dataclass
class Fallback(Exception):
    reason: str


def _scene_unit(args) -> list[SceneFacts]:
    """One self-contained unit of work (picklable): the scene lemmas of some classes (one
    unpickled task per unit, so its precomputed tables are shared by the unit's classes)."""
    task, classes, features = args
    return [scene_lemmas(task, c, features) for c in classes]


def prove(task: Task, net: Network | None, q: Question, deadline: float | None = None,
          fallback: bool = True, record: list | None = None, jobs: int | None = None,
          progress=None) -> Verdict:
    """Decide ``q`` compositionally; fall back to ``smt`` where the lemmas cannot decide.

    ``jobs`` > 1 solves the per-class scene lemmas in a process pool; ``progress(done, total)``
    is called as classes are finished."""
    t0 = time.perf_counter()
    obligations: list[dict] = [] if record is None else record
    try:
        with alarm(deadline):
            if q.theorem == "wellposed":
                v = _wellposed(task, q, obligations)
            else:
                if net is None:
                    raise NotApplicable("zero error needs a network")
                v = _zero_error(task, net, q, obligations, jobs=jobs, progress=progress, deadline=deadline)
    except DeadlineExceeded:
        return Unknown("compositional", "timeout", {"obligations": len(obligations)})
    except Fallback as fb:
        if not fallback:
            return Unknown("compositional", f"lemmas undecided: {fb.reason}", {"obligations": len(obligations)})
        from cnnproof.verifier import smt

        v = smt.prove(task, net, q, deadline=deadline)
        import dataclasses

        details = dict(v.details)
        details["fallback_reason"] = fb.reason
        return dataclasses.replace(v, method="compositional->smt", details=details)
    details = dict(v.details)
    details["seconds"] = time.perf_counter() - t0
    details["obligations"] = len(obligations)
    import dataclasses

    return dataclasses.replace(v, details=details)


def _wellposed(task: Task, q: Question, obligations: list[dict]) -> Verdict:
    if task.parts:  # items made of pieces: the level-by-level scene lemmas (verifier/levels.py)
        from cnnproof.verifier import levels

        return levels.wellposed(task, q, obligations)
    for c, cls in enumerate(task.classes):
        facts = None
        for o, other in enumerate(task.classes):
            if o == c:
                continue
            missing = [g for g in other.required if g not in cls.required]
            if not missing:
                scene = find_scene(task, cls)
                img = base_image(task, scene)
                w = witness_for(task, c, scene, img, {f.name for f in task.features if g_present(task, img, f)})
                return Refuted("compositional", confirm(task, None, q, w))
            if facts is None:
                facts = scene_lemmas(task, c, {g for oc in task.classes for g in oc.required})
            never = [g for g in missing if g in facts.never]
            if never:
                g = never[0]
                _never(obligations, cls.name, g, facts.never[g])
                obligations.append({"kind": "not-complete", "class": cls.name, "other": other.name, "because": {"never": g}})
                continue
            t1 = time.perf_counter()
            try:
                s = appear_together(task, cls, missing)
            except SearchBudgetExceeded as e:
                return Unknown("compositional", f"scene search budget exceeded: {e}")
            if s is not None:
                img = base_image(task, s)
                w = witness_for(task, c, s, img, {f.name for f in task.features if g_present(task, img, f)})
                return Refuted("compositional", confirm(task, None, q, w))
            _joint(obligations, task, cls, missing, time.perf_counter() - t1)
            obligations.append({"kind": "not-complete", "class": cls.name, "other": other.name, "because": {"joint": sorted(missing)}})
    return Proved("compositional", None, {})


def g_present(task: Task, img, f) -> bool:
    from cnnproof.constructions.scenes import occurrences

    return bool(occurrences(task, img, f))


def _zero_error(task: Task, net: Network, q: Question, obligations: list[dict], jobs=None, progress=None,
                deadline=None) -> Verdict:
    """Zero error of ``net``, decided on its normal form (``checker/normal_form.py``: exact rewrites
    such as dropping an identity layer or a max pool whose windows cover the map before the global
    max); a counterexample is re-checked on ``net`` itself."""
    if task.parts:  # a deep network for parts: the level lemmas (verifier/levels.py)
        from cnnproof.verifier import levels

        return levels.zero_error(task, net, q, obligations, deadline)
    original = net
    net, rewrites = normal_form(net)
    if rewrites:
        obligations.append({"kind": "normal-form", "rewrites": rewrites,
                            "discharged_by": {"procedure": "exact-rewrites"}})
    v = _zero_error_normal(task, net, q, obligations, jobs, progress, deadline)
    if isinstance(v, Refuted) and rewrites:
        confirm(task, original, q, v.counterexample)
    return v


def _zero_error_normal(task: Task, net: Network, q: Question, obligations: list[dict], jobs, progress,
                       deadline) -> Verdict:
    from cnnproof.verifier.configurations import local_decompose

    shape = decompose(net)
    if isinstance(shape, str):  # not the paper's form: the general engine (configuration lemmas)
        general = local_decompose(net)
        if isinstance(general, str):
            raise Fallback(f"network not of the form Head ∘ GlobalMax ∘ Local: {general}")
        return _zero_error_general(task, net, q, obligations, general, progress, deadline)
    n0 = len(obligations)
    try:
        return _zero_error_paper(task, net, q, obligations, shape, jobs, progress, deadline)
    except Fallback as fb:  # e.g. a trained detector bank: its channels tie to no feature
        general = local_decompose(net)
        if isinstance(general, str):
            raise
        del obligations[n0:]  # the certificate holds one method's obligations
        try:
            return _zero_error_general(task, net, q, obligations, general, progress, deadline)
        except Fallback as fb2:
            raise Fallback(f"{fb.reason}; configuration lemmas: {fb2.reason}") from None


def _zero_error_paper(task, net, q, obligations, shape, jobs, progress, deadline) -> Verdict:
    windows = window_lemmas(task, net, shape)
    if isinstance(windows, str):
        raise Fallback(windows)
    for w in windows:
        obligations.append({
            "kind": "window", "channel": w.channel, "feature": w.feature,
            "absent": [format_rational(v) for v in w.absent],
            "present": None if w.present is None else [format_rational(v) for v in w.present],
            "discharged_by": {"procedure": "separable-window-range"}, "seconds": round(w.seconds, 6),
        })
    tied = {w.feature for w in windows if w.feature is not None}
    bounds: list[Fraction | None] = []  # per class: a proven lower bound on min_c' N_c - N_c'
    from cnnproof.verifier.executor import make_executor

    K = len(task.classes)
    n_units = max(1, min(jobs or 1, K))
    chunks = [list(range(k, K, n_units)) for k in range(n_units)]
    results = make_executor(jobs).map(_scene_unit, [(task, ch, tied) for ch in chunks], deadline=deadline)
    all_facts: list = [None] * K
    for ch, res in zip(chunks, results):
        for c, f in zip(ch, res):
            all_facts[c] = f
    for c, cls in enumerate(task.classes):
        if progress:
            progress(c, len(task.classes))
        facts = all_facts[c]
        for g, how in sorted(facts.never.items()):
            _never(obligations, cls.name, g, how)
        status: dict[int, bool | None] = {}
        for w in windows:
            if w.feature is None:
                status[w.channel] = None
            elif w.feature in cls.required:
                status[w.channel] = True
            elif w.feature in facts.never:
                status[w.channel] = False
            else:
                status[w.channel] = None
        t1 = time.perf_counter()
        box = [w.pooled(status[w.channel]) for w in windows]
        logits = _interval_head(shape.head, box)
        lows = [logits[c][0] - logits[o][1] for o in range(len(logits)) if o != c]
        highs = [logits[c][1] - logits[o][0] for o in range(len(logits)) if o != c]
        if all(q.holds_for(lo) for lo in lows):
            m = min(lows)
            bounds.append(m)
            obligations.append({"kind": "head", "class": cls.name, "statuses": _statuses(windows, status),
                                "learned": [],
                                "discharged_by": {"procedure": "interval-head", "margin_lower_bound": format_rational(m)},
                                "seconds": round(time.perf_counter() - t1, 6)})
            continue
        check(deadline)
        verdict = _head_cegar(task, net, q, c, shape, windows, status, facts, obligations, deadline)
        if isinstance(verdict, (Refuted, Unknown)):
            return verdict
        bounds.append(verdict)
    return _proved(task, net, bounds)


def _proved(task, net, bounds: list) -> Proved:
    """PROVED with a proven lower bound on every N_c - N_c' (what the float32 claim needs) when
    every class has one, and the exact worst case when one concrete image attains it (the
    certificate's witness)."""
    low = min(bounds) if bounds and all(b is not None for b in bounds) else None
    witness = None if low is None else _worst_witness(task, net, bounds, low)
    details: dict = {} if low is None else {"margin_lower_bound": low}
    if witness is not None:
        details["worst_case_witness"] = witness
    return Proved("compositional", low if witness is not None else None, details)


def _worst_witness(task, net, bounds, low) -> dict | None:
    """A base image of a class whose exact logits attain the proven lower bound ``low``
    (then ``low`` is the exact worst case), as the certificate records it; or None."""
    for c, b in enumerate(bounds):
        if b != low:
            continue
        try:
            scene = find_scene(task, task.classes[c])
        except SearchBudgetExceeded:
            continue
        if scene is None:
            continue
        logits = _logits_cropped(task, net, scene)
        gaps = [(logits[c] - logits[o], o) for o in range(len(logits)) if o != c]
        if gaps and min(gaps)[0] == low:
            return {"class": task.classes[c].name, "scene": [placement_json(p) for p in scene],
                    "other_class": task.classes[min(gaps)[1]].name, "logits": [format_rational(v) for v in logits]}
    return None


def _z3_check(s, deadline, *assumptions):
    """``s.check`` with z3's timeout set from the time left; unknown past the deadline is a timeout."""
    ms = z3_timeout_ms(deadline)
    if ms is not None:
        s.set("timeout", ms)
    r = s.check(*assumptions)
    if r == z3.unknown and deadline is not None and time.perf_counter() >= deadline:
        raise DeadlineExceeded()
    return r


def _head_cegar(task, net, q, c, shape, windows, status, facts, obligations, deadline=None, together=None):
    """The head lemma by z3, refined by joint scene searches (``together(cls, items)``: a
    scene of cls containing all the items, or None; by default the flat scene search).

    Returns a Refuted verdict, or (proved for class c) its exact worst margin or None."""
    cls = task.classes[c]
    t1 = time.perf_counter()
    s, pres, diffs = _head_smt(shape.head, windows, status, c, q)
    s.push()
    s.add(_violation(diffs, q))
    learned: list[list[str]] = []
    for _ in range(MAX_REFINEMENTS):
        r = _z3_check(s, deadline)
        if r == z3.unsat:
            how = {"smt": _head_text(net, windows, status, learned, c, q, deadline)}
            s.pop()
            m = _exact_class_margin(task, net, c, s, diffs, deadline)
            if m is not None:  # the bound as the checker re-decides it: the head query with margin m
                try:
                    _head_text(net, windows, status, learned, c, Question("zero_error", m), deadline)
                    how["margin_lower_bound"] = format_rational(m)
                except (Fallback, ValueError):
                    m = None
            obligations.append({"kind": "head", "class": cls.name, "statuses": _statuses(windows, status),
                                "learned": learned, "discharged_by": how,
                                "seconds": round(time.perf_counter() - t1, 6)})
            return m
        if r == z3.unknown:
            raise Fallback(f"z3 unknown on the head lemma of class {cls.name}")
        m = s.model()
        on = [g for g, b in pres.items() if z3.is_true(m.eval(b, model_completion=True))]
        # shrink: drop features while the violation survives without them
        off = [g for g in pres if g not in on]
        for g in list(on):
            trial = [pres[h] for h in on if h != g] + [z3.Not(pres[h]) for h in off + [g]]
            if _z3_check(s, deadline, *trial) == z3.sat:
                on.remove(g)
                off.append(g)
        if not on:
            scene = find_scene(task, cls)
        else:
            try:
                scene = appear_together(task, cls, on) if together is None else together(cls, on)
            except SearchBudgetExceeded:
                raise Fallback(f"scene search budget exceeded for class {cls.name}, features {on}") from None
        if scene is None:
            learned.append(sorted(on))
            if together is None:
                _joint(obligations, task, cls, on, None)
            else:
                obligations.append({"kind": "scene-joint-never", "class": cls.name, "features": sorted(on),
                                    "discharged_by": {"procedure": "scene-search"}, "seconds": 0.0})
            s.pop()
            s.add(z3.Not(z3.And([pres[g] for g in on])))
            s.push()
            s.add(_violation(diffs, q))
            continue
        cex = _concrete(task, net, q, c, scene)
        if cex is not None:
            return Refuted("compositional", cex)
        raise Fallback(f"the head lemma of class {cls.name} fails for features {on} but the scene found is classified correctly")
    raise Fallback(f"more than {MAX_REFINEMENTS} refinements for class {cls.name}")


def _exact_class_margin(task, net, c, s, diffs, deadline=None) -> Fraction | None:
    """The exact worst margin of class c when one concrete image attains the proven bound:
    evaluate one scene exactly, then ask whether any allowed pooled vector does worse."""
    scene = find_scene(task, task.classes[c])
    logits = _logits_cropped(task, net, scene)
    m = min(logits[c] - logits[o] for o in range(len(logits)) if o != c)
    s.push()
    s.add(_violation(diffs, None, below=m))
    r = _z3_check(s, deadline)
    s.pop()
    return m if r == z3.unsat else None


def _logits_cropped(task, net, scene) -> list[Fraction]:
    """Exact logits of the scene's base image, computed on a crop of the canvas.

    For Head ∘ GlobalMax ∘ Local every pooled channel is a max over windows of a function of the
    window's content. Keep the rows and columns up to the last placed cell plus a band of
    background as wide as the largest kernel: every window of the full canvas then has the
    same content as some window of the crop (all-background windows included), so the maxima,
    and the logits, are the same. (Falls back to the full canvas when the crop is not smaller.)"""
    from cnnproof.verifier.exact import to_scaled_ints
    from cnnproof.verifier.network import _run

    if task.parts:  # a deep network: the crop of :func:`local_reach`
        return _logits_local_crop(task, net, base_image(task, scene))
    k = max(max(f.height, f.width) for f in task.features)
    shape = decompose(net)
    if not isinstance(shape, str):
        k = max([k] + [max(b.conv.weight.shape[2:]) for b in shape.branches])
    R = max((p.row + task.feature(p.feature).height for p in scene), default=0) + k
    Cc = max((p.col + task.feature(p.feature).width for p in scene), default=0) + k
    img = base_image(task, scene)
    if R < task.height and Cc < task.width and not isinstance(shape, str):
        img = img[:, :R, :Cc]
    else:
        return net.evaluate(img)
    ints, den = to_scaled_ints(img)
    out, d = _run(net.layers, ints.reshape((1,) + ints.shape), den)
    return [Fraction(int(v), d) for v in out[0]]


def local_reach(net: Network) -> int | None:
    """r such that each value of the last map before global max pooling depends only on the
    input within r rows and columns of it, and on which canvas borders lie within that reach;
    None unless the network is Local (stride-1 convolutions, max pooling, ReLU, branches),
    then GlobalMaxPool, then any head.

    r sums each layer's extent ((k - 1) * dilation) and its padding, so it also covers every
    intermediate map's border, which padding shifts."""
    from cnnproof.verifier.network import GeneralConv2d, MaxPool

    def reach(layers) -> int | None:
        r = 0
        for l in layers:
            if isinstance(l, ReLU):
                continue
            if type(l) is Conv2d:
                r += max(l.weight.shape[2:]) - 1
            elif isinstance(l, (GeneralConv2d, MaxPool)):
                if tuple(l.stride) != (1, 1):
                    return None
                k = l.weight.shape[2:] if isinstance(l, GeneralConv2d) else l.kernel
                r += max((k[0] - 1) * l.dilation[0], (k[1] - 1) * l.dilation[1]) + max(l.pads)
            elif isinstance(l, Parallel):
                rs = [reach(b) for b in l.branches]
                if any(x is None for x in rs):
                    return None
                r += max(rs)
            else:
                return None
        return r

    layers = list(net.layers)
    k = next((i for i, l in enumerate(layers) if isinstance(l, GlobalMaxPool)), None)
    if k is None:
        return None
    return reach(layers[:k])


def _logits_local_crop(task, net, img) -> list[Fraction]:
    """Exact logits of ``img`` computed on its top-left crop: the rows and columns up to the
    last cell that differs from the background, plus a band of 2r + 2 background rows and
    columns (r = :func:`local_reach`).

    Why the maxima agree (per axis; content lies only at rows <= R0 and columns <= C0): a
    position whose reach ends before the crop's last row sees the same cells and borders in
    both images; any other position sees only background rows (its reach starts past R0), as
    does a position of the other image with the same border, if any, in its reach (shift it by
    H - R; or put it at R0 + r + 1, which sees no border). So both images have the same set of
    views, hence the same pooled maxima and logits. Otherwise the full canvas."""
    r = local_reach(net)
    if r is None:
        return net.evaluate(img)
    content = np.argwhere(np.any(img != task.background, axis=0))
    R0, C0 = (content.max(axis=0) if len(content) else (0, 0))
    R, C = int(R0) + 2 * r + 3, int(C0) + 2 * r + 3
    if R >= task.height and C >= task.width:
        return net.evaluate(img)
    R, C = min(R, task.height), min(C, task.width)
    crop = img[:, :R, :C]
    from cnnproof.verifier.exact import to_scaled_ints
    from cnnproof.verifier.network import _run

    ints, den = to_scaled_ints(crop)
    out, d = _run(net.layers, ints.reshape((1,) + ints.shape), den)
    return [Fraction(int(v), d) for v in out[0]]


def _concrete(task, net, q, c, scene) -> Counterexample | None:
    """The scene's base image or a noise corner, if the network misclassifies it (exactly).

    The candidates are evaluated as one batch of integer images over a common denominator (no
    Fraction per pixel; a 256x256 canvas costs milliseconds); the one misclassified is then
    written as Fractions and re-checked by ``confirm`` on its own."""
    import math
    import random

    from cnnproof.constructions.scenes import base_image_int

    sc, d = task.scale, Fraction(task.noise)
    D = math.lcm(sc, d.denominator)
    base = base_image_int(task, scene) * (D // sc)
    cands = [base]
    if d:
        rng = random.Random(0)
        dn = int(d * D)
        cands += [base + dn, base - dn]
        for _ in range(8):
            signs = np.array([rng.choice((-1, 1)) for _ in range(base.size)], dtype=np.int64).reshape(base.shape)
            cands.append(base + signs * dn)
    out, den = net.evaluate_batch_int(np.stack(cands), D)
    for k, row in enumerate(out):
        logits = [Fraction(int(v), den) for v in row]
        o = worst_other(task, q, c, logits)
        if o is not None:
            flat = [Fraction(int(v), D) for v in cands[k].ravel()]
            img = np.empty(len(flat), dtype=object)
            img[:] = flat
            cex = Counterexample(task.classes[c].name, scene, img.reshape(base.shape), task.classes[o].name, tuple(logits))
            return confirm(task, net, q, cex)
    return None


# ---------------------------------------------------------------------------------------------
# Obligation records (the certificate's content; docs/certificates.md)
# ---------------------------------------------------------------------------------------------


def _never(obligations: list[dict], cls: str, g: str, how: dict) -> None:
    d = {k: v for k, v in how.items() if k != "seconds"}
    obligations.append({"kind": "scene-never", "class": cls, "feature": g, "discharged_by": d,
                        "seconds": round(how.get("seconds", 0.0), 6)})


def _joint(obligations: list[dict], task: Task, cls, features, seconds) -> None:
    why = forced_conflict(task, cls, sorted(features))
    proc = {"procedure": "forced-shared-placement"} if why else {"procedure": "scene-search"}
    obligations.append({"kind": "scene-joint-never", "class": cls.name, "features": sorted(features),
                        "discharged_by": proc, "seconds": round(seconds or 0.0, 6)})


def _statuses(windows: list[Window], status: dict[int, bool | None]) -> dict[str, str]:
    out = {}
    for w in windows:
        if w.feature is not None:
            st = status[w.channel]
            out[w.feature] = "free" if st is None else ("present" if st else "absent")
    return dict(sorted(out.items()))


def _head_text(net, windows, status, learned, c, q, deadline=None) -> dict:
    """The head lemma as SMT-LIB2 text from the checker's own generator, re-solved here."""
    try:
        from cnnproof.verifier.checker.head_query import head_smtlib
    except ImportError:  # the checker is not installed: keep z3's own text
        return {"solver": f"z3 {z3.get_version_string()}", "result": "unsat", "smtlib": None}
    text = head_smtlib(net, [_window_json(w) for w in windows], _statuses(windows, status), learned, c, q.margin)
    s = z3.Solver()
    s.from_string(text)
    r = _z3_check(s, deadline)
    if r != z3.unsat:
        raise Fallback(f"the checker's head query for class {c} is {r}, not unsat")
    return {"solver": f"z3 {z3.get_version_string()}", "result": "unsat", "smtlib": text}


def _window_json(w: Window) -> dict:
    return {"channel": w.channel, "feature": w.feature,
            "absent": [format_rational(v) for v in w.absent],
            "present": None if w.present is None else [format_rational(v) for v in w.present]}


# ---------------------------------------------------------------------------------------------
# The general engine: configuration lemmas in place of window lemmas (verifier/configurations.py)
# ---------------------------------------------------------------------------------------------


def _box_windows(ranges) -> list[dict]:
    """Configuration ranges in the head query's window form (untied channels, one box)."""
    return [{"channel": r.channel, "feature": None, "absent": [format_rational(r.lo), format_rational(r.hi)],
             "present": None} for r in ranges]


def _box_query(net, ranges, c, margin, deadline):
    from cnnproof.verifier.checker.head_query import head_smtlib

    text = head_smtlib(net, _box_windows(ranges), {}, [], c, margin)
    s = z3.Solver()
    s.from_string(text)
    return _z3_check(s, deadline), s, text


def _zero_error_general(task, net, q, obligations, shape, progress, deadline) -> Verdict:
    from cnnproof.verifier.configurations import ConfigurationBudgetExceeded, class_lemmas

    bounds = []
    for c, cls in enumerate(task.classes):
        if progress:
            progress(c, len(task.classes))
        t0 = time.perf_counter()
        try:
            lem = class_lemmas(task, shape, c, deadline=deadline)
        except ConfigurationBudgetExceeded as e:
            raise Fallback(f"configuration lemma: {e}") from None
        obligations.append({
            "kind": "configuration", "class": cls.name,
            "ranges": [[format_rational(r.lo), format_rational(r.hi)] for r in lem.ranges],
            "discharged_by": {"procedure": "local-configurations", "configurations": lem.configurations},
            "seconds": round(time.perf_counter() - t0, 6),
        })
        t1 = time.perf_counter()
        box = [(r.lo, r.hi) for r in lem.ranges]
        logits = _interval_head(shape.head, box)
        lows = [logits[c][0] - logits[o][1] for o in range(len(logits)) if o != c]
        if all(q.holds_for(lo) for lo in lows):
            m = min(lows)
            bounds.append(m)
            obligations.append({"kind": "head", "class": cls.name, "statuses": {}, "learned": [],
                                "discharged_by": {"procedure": "interval-head", "margin_lower_bound": format_rational(m)},
                                "seconds": round(time.perf_counter() - t1, 6)})
            continue
        r, s, text = _box_query(net, lem.ranges, c, q.margin, deadline)
        if r == z3.unknown:
            raise Fallback(f"z3 unknown on the head lemma of class {cls.name}")
        if r == z3.sat:
            cex = _general_counterexample(task, net, q, c, shape, lem, deadline)
            if cex is not None:
                return Refuted("compositional", cex)
            raise Fallback(f"the head lemma of class {cls.name} fails on its configuration ranges, and no scene "
                           f"built from the configurations that attain them is misclassified")
        how = {"smt": {"solver": f"z3 {z3.get_version_string()}", "result": "unsat", "smtlib": text}}
        m = _general_exact_margin(task, net, c, lem, deadline)
        if m is not None:
            how["margin_lower_bound"] = format_rational(m)
        bounds.append(m)
        obligations.append({"kind": "head", "class": cls.name, "statuses": {}, "learned": [], "discharged_by": how,
                            "seconds": round(time.perf_counter() - t1, 6)})
    return _proved(task, net, bounds)


def _general_exact_margin(task, net, c, lem, deadline) -> Fraction | None:
    """A scene's exact margin m when the box query with margin m is unsat (then m is the exact
    worst case of class c), else None."""
    scene = find_scene(task, task.classes[c])
    if scene is None:
        return None
    logits = net.evaluate(base_image(task, scene))
    m = min(logits[c] - logits[o] for o in range(len(logits)) if o != c)
    if m <= 0:
        return None
    r, _, _ = _box_query(net, lem.ranges, c, m, deadline)
    return m if r == z3.unsat else None


def _general_counterexample(task, net, q, c, shape, lem, deadline):
    """A misclassified scene of class c built from the configurations that attain the channels'
    maxima (each alone, then together), completed greedily; else sampled scenes."""
    from cnnproof.verifier import falsify

    cls = task.classes[c]
    tries: list[list] = []
    for k in sorted(lem.argmax):
        tries.append([k])
    tries.append(sorted(lem.argmax))
    seen = set()
    for group in tries:
        check(deadline)
        scene = _assemble(task, cls, shape, [lem.argmax[k] for k in group])
        if scene is None or scene in seen:
            continue
        seen.add(scene)
        cex = _concrete(task, net, q, c, scene)
        if cex is not None:
            return cex
    cex = falsify.falsify(task, net, Question(q.theorem, q.margin), seed=c, deadline=deadline)
    return cex


def _assemble(task, cls, shape, configs):
    """A scene of ``cls`` holding each configuration (window, placements at offsets) at some
    window corner, the rest of its required features placed greedily; or None."""
    from cnnproof.constructions.scenes import Placement, anchors_for, scene_problem, _separated

    placed: list = []
    feats = {f.name: f for f in task.features}
    counts: dict[str, int] = {}

    def fits(p) -> bool:
        f = feats[p.feature]
        if not (0 <= p.row <= task.height - f.height and 0 <= p.col <= task.width - f.width):
            return False
        if not cls.anchors.allows(p.row, p.col):
            return False
        lim = cls.copies if p.feature in cls.required else cls.max_distractors
        if counts.get(p.feature, 0) >= lim:
            return False
        box = (p.row, p.col, f.height, f.width)
        return all(_separated(box, (q.row, q.col, feats[q.feature].height, feats[q.feature].width), cls.gap)
                   for q in placed)

    for window, items in configs:
        b = next(i for i, br in enumerate(shape.branches) if br.window == window)
        (Fh, Fw), (Sh, Sw) = window, shape.branches[b].stride
        done = False
        for tr in range(0, max(task.height - Fh, 0) + 1, Sh):  # (corner 0 also when the window is
            for tc in range(0, max(task.width - Fw, 0) + 1, Sw):  # larger than a padded canvas)
                ps = [Placement(n, tr + r, tc + q) for n, r, q in items]
                saved, added = dict(counts), 0
                for p in ps:
                    if not fits(p):
                        break
                    placed.append(p)
                    counts[p.feature] = counts.get(p.feature, 0) + 1
                    added += 1
                if added == len(ps):
                    done = True
                    break
                del placed[len(placed) - added:]
                counts.clear()
                counts.update(saved)
            if done:
                break
    for n in cls.required:
        for _ in range(cls.copies - counts.get(n, 0)):
            for a in anchors_for(task, cls, feats[n]):
                p = Placement(n, *a)
                if fits(p):
                    placed.append(p)
                    counts[n] = counts.get(n, 0) + 1
                    break
            else:
                return None
    scene = tuple(sorted(placed))
    return scene if scene_problem(task, cls, scene) is None else None
