"""Hierarchical tasks, level by level (MODEL.md section 8, "How the proof scales").

Stage: task -> scene facts -> verdict (a special case inside the compositional method).
Trusted: no: every "never" fact it records is re-decided by the fenced checker
(``checker/scenes.cooccur``, one exact z3 query on integer anchors and displacements), and every
witness it finds is a concrete scene re-checked by exact evaluation.

Scene lemmas for items (features and parts): an item not placed by class c occurs in an image of
c only if every feature of its tree can be written there; the cheap test is the flat
"uncoverable cell" argument on the class's leaf features (a feature of the item that no leaf
feature of the class can write compatibly: the item never occurs). Otherwise one z3 query
decides exactly whether some scene of c contains the item (or, for the joint lemma, a set of
items), with a scene when it does.
"""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np

from cnnproof.constructions.scene_search import uncoverable_cell
from cnnproof.constructions.scenes import Placement, Scene, base_image
from cnnproof.constructions.task import ClassSpec, Task
from cnnproof.verifier.checker.scenes import cooccur
from cnnproof.verifier.deadline import check
from cnnproof.verifier.outcome import Proved, Question, Refuted, Verdict
from cnnproof.verifier.recheck import confirm, witness_for


def leaf_features(task: Task, name: str) -> set[str]:
    if not task.is_part(name):
        return {name}
    return set().union(*(leaf_features(task, n) for n, _, _ in task.part(name).pieces))


def _flat_view(task: Task, cls: ClassSpec) -> tuple[Task, ClassSpec]:
    """The class with its items replaced by their leaf features (a relaxation: every image of
    ``cls`` is written by these features, so a cell none of them can write stays unwritten)."""
    import dataclasses

    req = sorted(set().union(*(leaf_features(task, n) for n in cls.required)))
    dis = sorted(set().union(set(), *(leaf_features(task, n) for n in cls.distractors)) - set(req))
    view = ClassSpec(cls.name, tuple(req), tuple(dis), max_distractors=cls.max_distractors if dis else 0)
    return dataclasses.replace(task, parts=(), classes=(view,)), view


def scene_of(nested) -> Scene:
    """A scene from ``checker.scenes.cooccur``'s nested [item, row, col, [pieces]] lists."""
    from cnnproof.constructions.scenes import scene_from_json

    return scene_from_json(nested)


class ItemFacts:
    """Per class: items proved never to occur (with how), and items that occur (with a scene)."""

    def __init__(self):
        self.never: dict[str, dict] = {}
        self.occurs: dict[str, Scene] = {}


def item_facts(task: Task, c: int, items, deadline=None) -> ItemFacts:
    cls = task.classes[c]
    view, vcls = _flat_view(task, cls)
    facts = ItemFacts()
    placed = set()  # the pieces of c's required parts, recursively: placed in every scene of c
    todo = [n for n in cls.required if task.is_part(n)]
    while todo:
        for n, _, _ in task.part(todo.pop()).pieces:
            placed.add(n)
            if task.is_part(n):
                todo.append(n)
    for g in sorted(items):
        if g in cls.required or g in placed:  # present in every image of c: no query to ask
            continue
        check(deadline)
        t0 = time.perf_counter()
        if any(uncoverable_cell(view, vcls, f) is not None for f in sorted(leaf_features(task, g))):
            facts.never[g] = {"procedure": "scene-search", "relaxation": "uncoverable-leaf",
                              "seconds": time.perf_counter() - t0}
            continue
        found = cooccur(task, cls, [g])
        if found is None:
            facts.never[g] = {"procedure": "scene-search", "seconds": time.perf_counter() - t0}
        else:
            facts.occurs[g] = scene_of(found)
    return facts


def _present(task: Task, scene: Scene) -> set[str]:
    import numpy as np

    from cnnproof.constructions.scenes import base_image_int, presence_int

    pres = presence_int(task, base_image_int(task, scene)[None])[0]
    return {n for n, p in zip(task.items, np.asarray(pres)) if p}


def wellposed(task: Task, q: Question, obligations: list[dict], deadline=None) -> Verdict:
    """Well-posedness of a hierarchical task: per pair of classes (c, c'), S_c' minus S_c is
    never complete in an image of c (some item never occurs, or they never occur together)."""
    from cnnproof.constructions.scenes import find_scene

    for c, cls in enumerate(task.classes):
        facts = None
        for o, other in enumerate(task.classes):
            if o == c:
                continue
            missing = sorted(set(other.required) - set(cls.required))
            if not missing:
                scene = find_scene(task, cls)
                return Refuted("compositional", confirm(task, None, q, witness_for(
                    task, c, scene, base_image(task, scene), _present(task, scene))))
            if facts is None:
                facts = item_facts(task, c, {g for oc in task.classes for g in oc.required}, deadline)
            never = [g for g in missing if g in facts.never]
            if never:
                g = never[0]
                how = facts.never[g]
                obligations.append({"kind": "scene-never", "class": cls.name, "feature": g,
                                    "discharged_by": {k: v for k, v in how.items() if k != "seconds"},
                                    "seconds": round(how["seconds"], 6)})
                obligations.append({"kind": "not-complete", "class": cls.name, "other": other.name,
                                    "because": {"never": g}})
                continue
            check(deadline)
            t1 = time.perf_counter()
            found = cooccur(task, cls, missing)
            if found is not None:
                scene = scene_of(found)
                return Refuted("compositional", confirm(task, None, q, witness_for(
                    task, c, scene, base_image(task, scene), _present(task, scene))))
            obligations.append({"kind": "scene-joint-never", "class": cls.name, "features": missing,
                                "discharged_by": {"procedure": "scene-search"},
                                "seconds": round(time.perf_counter() - t1, 6)})
            obligations.append({"kind": "not-complete", "class": cls.name, "other": other.name,
                                "because": {"joint": missing}})
    return Proved("compositional", None, {})


# ---------------------------------------------------------------------------------------------
# Zero error of a deep (hierarchical) network: level lemmas
# ---------------------------------------------------------------------------------------------


class Channel:
    """A channel of a presence tensor: it holds P_item[t + phi] at grid index t (rows, cols), and
    every anchor where the item can occur maps into the grid."""

    __slots__ = ("item", "phi")

    def __init__(self, item: str, phi: tuple[int, int]):
        self.item, self.phi = item, phi

    def __repr__(self) -> str:
        return f"{self.item}{self.phi}"


def anchor_ranges(task: Task) -> dict[str, tuple[int, int, int, int]]:
    """Per item the anchors (r0, c0, r1, c1), inclusive, outside which it never occurs: a
    feature's window lies inside the canvas; a part's by interval arithmetic over its pieces
    (as ``parts.part_map``); r1 < r0 when it can occur nowhere."""
    out = {f.name: (0, 0, task.height - f.height, task.width - f.width) for f in task.features}
    for g in sorted(task.parts, key=lambda g: task.level(g.name)):
        j = g.jitter
        rs = [out[n] for n, _, _ in g.pieces]
        out[g.name] = (max(r[0] - dr - j for r, (_, dr, _) in zip(rs, g.pieces)),
                       max(r[1] - dc - j for r, (_, _, dc) in zip(rs, g.pieces)),
                       min(r[2] - dr + j for r, (_, dr, _) in zip(rs, g.pieces)),
                       min(r[3] - dc + j for r, (_, _, dc) in zip(rs, g.pieces)))
    return out


def _identity_1x1(layer, C: int) -> bool:
    from cnnproof.verifier.network import Conv2d, GeneralConv2d

    if not isinstance(layer, (Conv2d, GeneralConv2d)) or layer.weight.shape != (C, C, 1, 1):
        return False
    if isinstance(layer, GeneralConv2d) and (layer.stride != (1, 1) or layer.dilation != (1, 1)):
        return False
    return all(layer.weight[o, i, 0, 0] == (1 if o == i else 0) for o in range(C) for i in range(C)) \
        and all(b == 0 for b in layer.bias)


def _pads(layer) -> tuple[int, int, int, int]:
    return tuple(getattr(layer, "pads", (0, 0, 0, 0)))


def and_unit(weights, bias) -> bool:
    """Does ReLU(Σ w_i x_i + b) equal AND(x) on every x in {0,1}^m (value 1 or 0)? Exactly
    when every w_i > 0, Σw + b = 1 and Σw - min w + b <= 0 (every x with a zero scores at most
    the all-ones sum minus the smallest weight)."""
    if not weights or any(w <= 0 for w in weights):
        return False
    total = sum(weights)
    return total + bias == 1 and total - min(weights) + bias <= 0


def presence_form(task: Task, net):
    """The level structure of a deep network (docs/deep-construction.md): (level-1 windows and
    their sub-network, the units of each later level, the pooled channels' items, the head
    layers); or the reason the network is not of that form. Every check is exact; what the
    window lemmas must still establish is returned with the sub-network."""
    from cnnproof.verifier.network import Conv2d, Dense, Flatten, GeneralConv2d, GlobalMaxPool, MaxPool, Parallel, ReLU

    layers = list(net.layers)
    gi = next((k for k, l in enumerate(layers) if isinstance(l, GlobalMaxPool)), None)
    if gi is None or gi + 1 >= len(layers) or not isinstance(layers[gi + 1], Flatten):
        return "no global max pooling followed by flatten at the top level"
    head = layers[gi + 2:]
    if not head or not all(isinstance(l, (Dense, ReLU)) for l in head):
        return "the head is not dense and ReLU layers"
    body = layers[:gi]
    k = next((i for i, l in enumerate(body) if isinstance(l, Parallel) or not isinstance(l, (Conv2d, ReLU))), len(body))
    trunk = body[:k]
    if any(isinstance(l, Conv2d) and l.weight.shape[2:] != (1, 1) for l in trunk):
        return "a convolution wider than 1x1 before the detector bank"
    if k >= len(body) or not isinstance(body[k], Parallel):
        return "no parallel detector bank"
    # level 1: branches (detector ..., ReLU, zero-padding identity)
    sub_branches, pads = [], []
    for br in body[k].branches:
        br = list(br)
        if len(br) < 2:
            return "a level-1 branch is too short"
        pad = br[-1]
        C = pad.weight.shape[0] if isinstance(pad, (Conv2d, GeneralConv2d)) else -1
        if not _identity_1x1(pad, C):
            return "a level-1 branch does not end with a 1x1 identity convolution (the zero padding)"
        sub_branches.append(tuple(br[:-1]) + (GlobalMaxPool(), Flatten()))
        pads.append(_pads(pad))
    levels = []
    for layer in body[k + 1:]:
        if not isinstance(layer, Parallel):
            return f"a {layer.kind} layer between levels"
        levels.append(layer)
    return trunk, sub_branches, pads, levels, head


def level_lemmas(task: Task, net, obligations: list[dict]):
    """Prove that the pooled vector of ``net`` is exactly the presence vector of its channels'
    items on every image of the task (noise included): returns (items per pooled channel, head
    layers), or the reason it cannot."""
    from fractions import Fraction

    from cnnproof.verifier import compositional as comp
    from cnnproof.verifier.exact import format_rational
    from cnnproof.verifier.network import Conv2d, Dense, GeneralConv2d, MaxPool, Network, Parallel, ReLU

    form = presence_form(task, net)
    if isinstance(form, str):
        return form
    trunk, sub_branches, pads, levels, head = form
    # the level-1 sub-network in the paper's form, and its window lemmas
    body = trunk + ([Parallel(tuple(sub_branches))] if len(sub_branches) > 1 else list(sub_branches[0]))
    x_shape = tuple(net.input_shape)
    for l in trunk:
        x_shape = l.out_shape(x_shape)
    try:
        n1 = Parallel(tuple(sub_branches)).out_shape(x_shape)[0]
    except ValueError as e:
        return f"the level-1 bank is not a valid network: {e}"
    probe_head = Dense(np.zeros((1, n1), dtype=object) + Fraction(0), np.zeros(1, dtype=object) + Fraction(0))
    try:
        sub = Network(net.input_shape, tuple(body) + (probe_head,), ("probe",), tuple(net.channel_names[:n1]))
    except (ValueError, TypeError) as e:
        return f"the level-1 bank is not a valid network: {e}"
    shape = comp.decompose(sub)
    if isinstance(shape, str):
        return f"level 1: {shape}"
    windows = comp.window_lemmas(task, sub, shape)
    if isinstance(windows, str):
        return f"level 1: {windows}"
    chans: list[Channel] = []
    offset = 0
    for b, (br, pd) in enumerate(zip(sub_branches, pads)):
        O = next(l for l in reversed(br) if isinstance(l, (Conv2d, GeneralConv2d))).weight.shape[0]
        for o in range(O):
            w = windows[offset + o]
            if w.feature is None or w.absent != (0, 0) or w.present != (1, 1):
                return (f"level 1: channel {offset + o} is not an exact presence detector "
                        f"(absent {w.absent}, present {w.present})")
            chans.append(Channel(w.feature, (-pd[0], -pd[1])))
            obligations.append({"kind": "window", "channel": offset + o, "feature": w.feature,
                                "absent": [format_rational(v) for v in w.absent],
                                "present": [format_rational(v) for v in w.present],
                                "discharged_by": {"procedure": "separable-window-range"},
                                "seconds": round(w.seconds, 6)})
        offset += O
    # the grid: the level-1 tensor's spatial shape
    shape1 = net.layers[len(trunk)].out_shape(x_shape)
    GH, GW = shape1[1:]
    ranges = anchor_ranges(task)

    def covered(ch: Channel) -> bool:
        r0, c0, r1, c1 = ranges[ch.item]
        return r1 < r0 or c1 < c0 or (0 <= r0 - ch.phi[0] and r1 - ch.phi[0] < GH
                                      and 0 <= c0 - ch.phi[1] and c1 - ch.phi[1] < GW)

    for ch in chans:
        if not covered(ch):
            return f"level 1: the grid does not hold every anchor of {ch.item}"
    parts_by = {}
    for g in task.parts:
        parts_by.setdefault((g.jitter, tuple(sorted(g.pieces))), []).append(g.name)
    for li, layer in enumerate(levels, start=2):
        if layer.out_shape((len(chans), GH, GW))[1:] != (GH, GW):
            return f"level {li} changes the grid of presence maps"
        new: list[Channel] = []
        for bi, br in enumerate(layer.branches):
            br = list(br)
            C = len(chans)
            if _identity_1x1(br[0], C) and all(isinstance(l, ReLU) for l in br[1:]) and _pads(br[0]) == (0, 0, 0, 0):
                new.extend(chans)
                continue
            if not (len(br) == 3 and isinstance(br[0], MaxPool) and isinstance(br[1], (Conv2d, GeneralConv2d))
                    and isinstance(br[2], ReLU)):
                return f"level {li}, branch {bi}: not (identity) nor (max pool, AND convolution, ReLU)"
            mp, conv = br[0], br[1]
            kh, kw = mp.kernel
            if (mp.stride != (1, 1) or mp.dilation != (1, 1) or kh != kw or kh % 2 == 0
                    or tuple(mp.pads) != (kh // 2,) * 4):
                return f"level {li}, branch {bi}: the max pool is not a (2j+1)-window, stride 1, padded by j"
            j = kh // 2
            if isinstance(conv, GeneralConv2d) and (conv.stride != (1, 1) or conv.dilation != (1, 1)):
                return f"level {li}, branch {bi}: the AND convolution is strided or dilated"
            pt, pl, _, _ = _pads(conv)
            O, I, KH, KW = conv.weight.shape
            for o in range(O):
                nz = [(i, a, b, conv.weight[o, i, a, b]) for i in range(I) for a in range(KH) for b in range(KW)
                      if conv.weight[o, i, a, b] != 0]
                if not and_unit([w for *_, w in nz], conv.bias[o]):
                    return f"level {li}, branch {bi}, unit {o}: not an AND of its inputs"
                # piece k read at input index t - pad + (a, b) holds P_item[t - pad + (a, b) + phi]
                offs = [(chans[i].item, a - pt + chans[i].phi[0], b - pl + chans[i].phi[1]) for i, a, b, _ in nz]
                m0, m1 = min(r for _, r, _ in offs), min(c for _, _, c in offs)
                match = None
                for (jj, pieces), names in parts_by.items():
                    if jj != j:
                        continue
                    n0, n1_ = min(r for _, r, _ in pieces), min(c for _, _, c in pieces)
                    # pieces as a set: a piece listed twice at one offset is one condition (and one
                    # input of weight 2)
                    if sorted({(n, r - m0 + n0, c - m1 + n1_) for n, r, c in offs}) == sorted(set(pieces)):
                        match = (names[0], (m0 - n0, m1 - n1_))
                        break
                if match is None:
                    return f"level {li}, branch {bi}, unit {o}: its pieces {sorted(offs)} with jitter {j} are no part of the task"
                ch = Channel(*match)
                r0, c0, r1, c1 = ranges[ch.item]
                ok = covered(ch) and (r1 < r0 or all(
                    0 <= r0 - ch.phi[0] - pt + a and r1 - ch.phi[0] - pt + a < GH
                    and 0 <= c0 - ch.phi[1] - pl + b and c1 - ch.phi[1] - pl + b < GW for _, a, b, _ in nz))
                if not ok:
                    return f"level {li}: the grid does not hold every anchor of {ch.item} and its pieces' reads"
                obligations.append({"kind": "part-unit", "level": li, "branch": bi, "unit": o, "part": ch.item,
                                    "jitter": j, "offset": list(ch.phi),
                                    "discharged_by": {"procedure": "exact-and-unit"}})
                new.append(ch)
        chans = new
    return [ch.item for ch in chans], head


def zero_error(task: Task, net, q: Question, obligations: list[dict], deadline=None) -> Verdict:
    """Zero error of a deep network for a hierarchical task: the level lemmas make its pooled
    vector the exact presence vector of its channels' items; the item scene lemmas give, per
    class, which items are present (required), absent (never) or free; the head lemma (interval
    arithmetic, else z3 refined by joint scene queries) does the rest, as for the paper's form."""
    from cnnproof.verifier import compositional as comp

    got = level_lemmas(task, net, obligations)
    if isinstance(got, str):
        raise comp.Fallback(got)
    items, head = got
    windows = [comp.Window(k, it, (Fraction(0), Fraction(0)), (Fraction(1), Fraction(1))) for k, it in enumerate(items)]
    shape = comp.Shape([], head, [])
    bounds = []
    for c, cls in enumerate(task.classes):
        facts = item_facts(task, c, set(items), deadline)
        for g, how in sorted(facts.never.items()):
            obligations.append({"kind": "scene-never", "class": cls.name, "feature": g,
                                "discharged_by": {k: v for k, v in how.items() if k != "seconds"},
                                "seconds": round(how["seconds"], 6)})
        status = {w.channel: (True if w.feature in cls.required else False if w.feature in facts.never else None)
                  for w in windows}
        t1 = time.perf_counter()
        box = [w.pooled(status[w.channel]) for w in windows]
        logits = comp._interval_head(head, box)
        lows = [logits[c][0] - logits[o][1] for o in range(len(logits)) if o != c]
        if all(q.holds_for(lo) for lo in lows):
            m = min(lows)
            bounds.append(m)
            obligations.append({"kind": "head", "class": cls.name, "statuses": comp._statuses(windows, status),
                                "learned": [], "discharged_by": {"procedure": "interval-head",
                                                                 "margin_lower_bound": comp.format_rational(m)},
                                "seconds": round(time.perf_counter() - t1, 6)})
            continue
        check(deadline)
        v = comp._head_cegar(task, net, q, c, shape, windows, status, facts, obligations, deadline,
                             together=lambda cl, on: (lambda f: None if f is None else scene_of(f))(cooccur(task, cl, list(on))))
        if isinstance(v, (Refuted,)) or not isinstance(v, (Fraction, type(None))):
            return v
        bounds.append(v)
    return comp._proved(task, net, bounds)
