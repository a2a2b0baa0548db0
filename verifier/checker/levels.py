"""Deep networks for hierarchical tasks (MODEL.md section 8), re-derived by the checker's own code.

``levels(task, net)`` splits the network into its level-1 detector bank (returned as a network of
the paper's form, whose window obligations the checker decides as usual) and the later levels,
and derives every AND unit's part exactly: each channel holds P_item[t + phi] on the grid; a unit
ReLU(Σ w x + b) over max pools of kernel 2j+1 is an AND of its inputs iff every w > 0,
Σw + b = 1 and Σw - min w + b <= 0; its pieces (item, offset) must be a part's pieces (as a
set, up to a translation, which gives its phi), and every anchor where the part can occur, and
every pool centre its unit reads there, must lie in the grid. ValueError says why not.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from cnnproof.constructions.task import Task
from cnnproof.verifier.network import (Conv2d, Dense, Flatten, GeneralConv2d, GlobalMaxPool, MaxPool, Network,
                                       Parallel, ReLU)


def _identity(l, C: int) -> bool:
    return (isinstance(l, (Conv2d, GeneralConv2d)) and l.weight.shape == (C, C, 1, 1)
            and getattr(l, "stride", (1, 1)) == (1, 1) and getattr(l, "dilation", (1, 1)) == (1, 1)
            and all(l.weight[o, i, 0, 0] == (o == i) for o in range(C) for i in range(C)) and not any(l.bias))


def ranges(task: Task) -> dict:
    """Per item (r0, c0, r1, c1): outside these anchors it never occurs."""
    out = {f.name: (0, 0, task.height - f.height, task.width - f.width) for f in task.features}
    for g in sorted(task.parts, key=lambda g: task.level(g.name)):
        j, P = g.jitter, [(out[n], r, c) for n, r, c in g.pieces]
        out[g.name] = (max(x[0] - r - j for x, r, c in P), max(x[1] - c - j for x, r, c in P),
                       min(x[2] - r + j for x, r, c in P), min(x[3] - c + j for x, r, c in P))
    return out


def levels(task: Task, net: Network):
    """(the level-1 network, its channels' paddings (top, left), the units as
    [level, branch, unit, part, jitter, [phi_r, phi_c], reads], grid shape)."""
    L = list(net.layers)
    gi = next((k for k, l in enumerate(L) if isinstance(l, GlobalMaxPool)), None)
    if gi is None or gi + 1 >= len(L) or not isinstance(L[gi + 1], Flatten):
        raise ValueError("no top-level global max pooling and flatten")
    body = L[:gi]
    k = next((i for i, l in enumerate(body) if not isinstance(l, (Conv2d, ReLU))), len(body))
    if k >= len(body) or not isinstance(body[k], Parallel):
        raise ValueError("no parallel level-1 bank after the 1x1 trunk")
    subs, pads = [], []
    for br in body[k].branches:
        C = br[-1].weight.shape[0] if isinstance(br[-1], (Conv2d, GeneralConv2d)) else -1
        if len(br) < 2 or not _identity(br[-1], C):
            raise ValueError("a level-1 branch does not end with a 1x1 identity (zero padding)")
        subs.append(tuple(br[:-1]) + (GlobalMaxPool(), Flatten()))
        pads += [tuple(getattr(br[-1], "pads", (0, 0, 0, 0)))[:2]] * C
    x = tuple(net.input_shape)
    for l in body[:k]:
        x = l.out_shape(x)
    n1 = Parallel(tuple(subs)).out_shape(x)[0]
    zero = np.empty((1, n1), dtype=object)
    zero[...] = Fraction(0)
    sub = Network(net.input_shape, tuple(body[:k]) + (Parallel(tuple(subs)), Dense(zero, zero[0, :1].copy())),
                  ("probe",), tuple(net.channel_names[:n1]))
    GH, GW = body[k].out_shape(x)[1:]
    return sub, pads, body[k + 1:], (GH, GW)


def units(task: Task, later: list, chans: list, grid) -> list:
    """``chans``: per level-1 channel (item, phi). Returns the units' derivations, extending
    ``chans`` with every later channel (item, phi); ValueError when a unit is not a part's."""
    GH, GW = grid
    R = ranges(task)
    parts = {}
    for g in task.parts:
        parts.setdefault((g.jitter, tuple(sorted(set(g.pieces)))), g.name)

    def inside(item, phi, extra=((0, 0),)):
        r0, c0, r1, c1 = R[item]
        return r1 < r0 or c1 < c0 or all(0 <= r0 - phi[0] + a and r1 - phi[0] + a < GH and 0 <= c0 - phi[1] + b
                                         and c1 - phi[1] + b < GW for a, b in extra)

    for item, phi in chans:
        if not inside(item, phi):
            raise ValueError(f"the grid does not hold every anchor of {item}")
    out = []
    for li, layer in enumerate(later, start=2):
        if not isinstance(layer, Parallel) or layer.out_shape((len(chans), GH, GW))[1:] != (GH, GW):
            raise ValueError(f"level {li} is not a parallel layer on the grid")
        new = []
        for bi, br in enumerate(layer.branches):
            if _identity(br[0], len(chans)) and tuple(getattr(br[0], "pads", (0,) * 4)) == (0,) * 4 \
                    and all(isinstance(l, ReLU) for l in br[1:]):
                new += chans
                continue
            if len(br) != 3 or not isinstance(br[0], MaxPool) or not isinstance(br[1], (Conv2d, GeneralConv2d)) \
                    or not isinstance(br[2], ReLU):
                raise ValueError(f"level {li}, branch {bi} is neither an identity nor max pool, convolution, ReLU")
            mp, cv = br[0], br[1]
            j = mp.kernel[0] // 2
            if (tuple(mp.kernel) != (2 * j + 1,) * 2 or tuple(mp.stride) != (1, 1) or tuple(mp.dilation) != (1, 1)
                    or tuple(mp.pads) != (j,) * 4 or getattr(cv, "stride", (1, 1)) != (1, 1)
                    or getattr(cv, "dilation", (1, 1)) != (1, 1)):
                raise ValueError(f"level {li}, branch {bi}: pool or convolution geometry is not the construction's")
            pt, pl = tuple(getattr(cv, "pads", (0, 0, 0, 0)))[:2]
            for o in range(cv.weight.shape[0]):
                nz = [(i, a, b, cv.weight[o, i, a, b]) for i, a, b in zip(*np.nonzero(cv.weight[o] != 0))]
                ws = [w for *_, w in nz]
                if not ws or min(ws) <= 0 or sum(ws) + cv.bias[o] != 1 or sum(ws) - min(ws) + cv.bias[o] > 0:
                    raise ValueError(f"level {li}, branch {bi}, unit {o} is not an AND of its inputs")
                offs = {(chans[i][0], int(a) - pt + chans[i][1][0], int(b) - pl + chans[i][1][1]) for i, a, b, _ in nz}
                m = (min(r for _, r, _ in offs), min(c for _, _, c in offs))
                hit = None
                for (jj, pcs), name in parts.items():
                    n = (min(r for _, r, _ in pcs), min(c for _, _, c in pcs))
                    if jj == j and sorted((x, r - m[0] + n[0], c - m[1] + n[1]) for x, r, c in offs) == list(pcs):
                        hit = (name, (m[0] - n[0], m[1] - n[1]))
                if hit is None or not inside(*hit, extra=[(int(a) - pt, int(b) - pl) for _, a, b, _ in nz] + [(0, 0)]):
                    raise ValueError(f"level {li}, branch {bi}, unit {o}: no part of the task, or not all its anchors in the grid")
                out.append([li, bi, o, hit[0], j, list(hit[1])])
                new.append(hit)
        chans[:] = new
    return out
