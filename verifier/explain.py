"""Where a counterexample's evidence comes from: for networks of the form Head ∘ GlobalMax ∘
Local, the window at which each pooled channel attains its maximum, ranked by how much that
channel pushes the wrong logit above the right one. Stage: report. Trusted: no (pictures only).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from cnnproof.verifier.network import Dense, Network, ReLU, _run
from cnnproof.verifier.exact import to_scaled_ints


@dataclass(frozen=True)
class PeakWindow:
    label: str  # the pooled channel's name (feature) or "channel k"
    row: int
    col: int
    height: int
    width: int
    value: Fraction  # the pooled (maximal) activation
    push: Fraction  # (W[c'] - W[c]) * value in the first head layer: > 0 favours the wrong class


def peak_windows(net: Network, image: np.ndarray, c: int, other: int, top: int = 3) -> list[PeakWindow]:
    """Up to ``top`` windows whose pooled channels push N_c' above N_c the most (push > 0);
    empty when the network is not of the compositional form or its head is not dense first."""
    from cnnproof.verifier.compositional import decompose, normal_form

    net, _ = normal_form(net)  # the same function; a deeper form of the paper's is explained as the paper's
    shape = decompose(net)
    if isinstance(shape, str) or not shape.head or not isinstance(shape.head[0], Dense):
        return []
    W = shape.head[0].weight
    ints, den = to_scaled_ints(np.asarray(image, dtype=object))
    x = ints.reshape((1,) + ints.shape)
    found: list[PeakWindow] = []
    k = 0
    for br in shape.branches:
        layers = list(br.pointwise) + [br.conv] + ([ReLU()] if br.post_relu else [])
        maps, d = _run(layers, x, den)
        kh, kw = br.conv.weight.shape[2:]
        for o in range(maps.shape[1]):
            m = maps[0, o]
            flat = int(np.argmax(m.astype(object) if m.dtype == object else m))
            i, j = divmod(flat, m.shape[1])
            value = Fraction(int(m[i, j]), d)
            push = (W[other, k] - W[c, k]) * value
            label = net.channel_names[k] if k < len(net.channel_names) else f"channel {k}"
            if push > 0:
                found.append(PeakWindow(label, i, j, kh, kw, value, push))
            k += 1
    found.sort(key=lambda p: -p.push)
    return found[:top]
