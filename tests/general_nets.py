"""Networks of the general compositional form (Head ∘ GlobalMax ∘ L, L any valid local stack), for
the agreement test of the general engine (tests/test_general_engine.py; issue 9 item 3).

Stage: none (test support). Trusted: no; it only builds inputs, and :func:`scene_violation` is a
plain per-scene z3 check written apart from verifier/smt.py (like tests/plain_smt.py, with the
layer kinds of the general form too: strided/dilated/padded convolution, local (padded) max
pooling, per-channel affine).

Builders (each takes hypothesis ``data`` where it draws):

* :func:`random_local`: random small rational weights, conv k×k ×F -> ReLU -> [affine] ->
  [max pool 2×2, stride 1 or 2] -> [conv 1×1 or 2×2 -> ReLU] -> global max -> flatten -> dense;
  ``strided=True`` makes the first convolution a stride-2 ``GeneralConv2d``; ``padded=True``
  makes it a padded ``GeneralConv2d`` (k 2 or 3, SAME or one-sided pads), the max pool
  (3×3 SAME or 2×2 one-sided, stride 1 or 2) padded when drawn, and the second convolution a
  padded 2×2 or 3×3 one when drawn (so padding meets windows at every depth);
* :func:`deepen`: the paper's network made deeper without changing its function (a 2×2 stride-1
  max pool where the detector map is at least 2×2, else a 1×1 one, then an identity 1×1
  convolution + ReLU,
  between each detector's ReLU and its global max pooling);
* :func:`perturb`: :func:`deepen` of the paper's network with one parameter changed by ±1 or 0;
* :func:`pad_paper`: the paper's network with each spatial detector a padded ``GeneralConv2d``
  (size-preserving pads, SAME or one-sided: the border windows see partial features);
* :func:`padded`: :func:`random_local` with ``padded=True`` or :func:`pad_paper`, drawn;
  :func:`padded_seeded` the same from a seed (no hypothesis draws).
"""

from __future__ import annotations

import random
from fractions import Fraction
from functools import lru_cache

import numpy as np
import z3
from hypothesis import strategies as st

from cnnproof.verifier.compositional import decompose
from cnnproof.verifier.exact import fraction_array
from cnnproof.verifier.network import (Affine, Conv2d, Dense, Flatten, GeneralConv2d, GlobalMaxPool, MaxPool,
                                       Network, Parallel, ReLU, with_parameter)

WEIGHTS = [Fraction(v) for v in ("-2", "-1", "-1/2", "0", "0", "1/2", "1", "1", "2", "3/2")]


def _arr(draw, shape, pool=WEIGHTS) -> np.ndarray:
    n = int(np.prod(shape))
    vals = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    return fraction_array(vals, shape)


def _identity_conv(F: int) -> Conv2d:
    return Conv2d.from_lists([[[[1 if o == i else 0]] for i in range(F)] for o in range(F)], [0] * F)


PADS = {1: [(0, 0, 0, 0)], 2: [(0, 0, 1, 1), (1, 1, 0, 0), (1, 0, 0, 1)], 3: [(1, 1, 1, 1), (2, 2, 0, 0), (0, 1, 2, 1)]}


def _padded_conv(choose, F, C, k, label) -> tuple[GeneralConv2d, str]:
    pads = choose(PADS[k], label)
    w = fraction_array([choose(WEIGHTS, "w") for _ in range(F * C * k * k)], (F, C, k, k))
    b = fraction_array([choose(WEIGHTS, "b") for _ in range(F)], (F,))
    return GeneralConv2d(w, b, pads=pads), f"conv{k}x{k}x{F}/p{''.join(map(str, pads))}"


def padded_local(choose, task) -> tuple[Network, str]:
    """:func:`random_local` with padding, every choice made by ``choose(options, label)``: a padded
    first convolution (k 2 or 3), [a padded max pool], [a padded second convolution + ReLU]."""
    C, H, W = task.channels, task.height, task.width
    F = choose(range(2, 5), "filters")
    conv, d = _padded_conv(choose, F, C, choose([2, 3], "k"), "pads")
    layers: list = [conv, ReLU()]
    desc = [d]
    if choose([False, True], "maxpool"):
        s = choose([1, 2], "pool stride")
        kp, pads = choose([(3, (1, 1, 1, 1)), (2, (0, 0, 1, 1)), (2, (1, 1, 0, 0)), (3, (2, 0, 0, 2))], "pool pads")
        layers.append(MaxPool(kernel=(kp, kp), stride=(s, s), pads=pads))
        desc.append(f"maxpool{kp}/s{s}/p{''.join(map(str, pads))}")
    if choose([False, True], "second conv"):
        F2 = choose([2, 3], "filters2")
        conv, d = _padded_conv(choose, F2, F, choose([2, 3], "k2"), "pads2")
        layers += [conv, ReLU()]
        desc.append(d)
        F = F2
    K = len(task.classes)
    head = [GlobalMaxPool(), Flatten(), Dense(fraction_array([choose(WEIGHTS, "h") for _ in range(K * F)], (K, F)),
                                              fraction_array([choose(WEIGHTS, "h") for _ in range(K)], (K,)))]
    net = Network((C, H, W), tuple(layers + head), task.class_names)
    net.output_shape()
    return net, " ".join(desc)


def random_local(data, task, strided: bool = False, affine: bool = False, padded: bool = False) -> tuple[Network, str]:
    """A random network of the general form for ``task``; the optional layers are drawn only
    where they fit the map (so every draw gives a network whose ``output_shape`` is defined),
    and a 1×1 max pool (the identity) is appended when the stack would otherwise be of the
    paper's form (which the special case decides, not the general engine)."""
    draw = data.draw
    if padded:
        return padded_local(lambda options, label: draw(st.sampled_from(list(options)), label=label), task)
    C, H, W = task.channels, task.height, task.width
    k = draw(st.integers(1, min(3, H, W)), label="k")
    F = draw(st.integers(2, 4), label="filters")
    w, b = _arr(draw, (F, C, k, k)), _arr(draw, (F,))
    layers: list = [GeneralConv2d(w, b, stride=(2, 2)) if strided else Conv2d(w, b)]
    desc = [f"conv{k}x{k}x{F}" + ("/s2" if strided else "")]
    if affine:
        scale = fraction_array([draw(st.sampled_from([Fraction(2), Fraction(1, 2), Fraction(-1), Fraction(1)]))
                                for _ in range(F)], (F, 1, 1))
        shift = fraction_array([draw(st.sampled_from([Fraction(-1), Fraction(0), Fraction(1, 2)]))
                                for _ in range(F)], (F, 1, 1))
        layers.append(Affine(scale, shift))
        desc.append("affine")
    layers.append(ReLU())
    shape = _map_shape(layers, (C, H, W))
    if min(shape[1:]) >= 2 and draw(st.booleans(), label="maxpool"):
        s = draw(st.integers(1, 2), label="pool stride")
        layers.append(MaxPool(kernel=(2, 2), stride=(s, s)))
        desc.append(f"maxpool2/s{s}")
        shape = _map_shape(layers[-1:], shape)
    if draw(st.booleans(), label="second conv"):
        k2 = draw(st.integers(1, min(2, *shape[1:])), label="k2")
        F2 = draw(st.integers(2, 3), label="filters2")
        layers += [Conv2d(_arr(draw, (F2, F, k2, k2)), _arr(draw, (F2,))), ReLU()]
        desc.append(f"conv{k2}x{k2}x{F2}")
        F = F2
    K = len(task.classes)
    head = [GlobalMaxPool(), Flatten(), Dense(_arr(draw, (K, F)), _arr(draw, (K,)))]
    net = Network((C, H, W), tuple(layers + head), task.class_names)
    if not isinstance(decompose(net), str):  # the paper's form: a 1x1 max pool (the identity) leaves it
        net = Network((C, H, W), tuple(layers + [MaxPool(kernel=(1, 1))] + head), task.class_names)
        desc.append("maxpool1")
    net.output_shape()
    return net, " ".join(desc)


def _map_shape(layers, shape):
    for l in layers:
        shape = l.out_shape(shape)
    return shape


def _deeper(prefix: list, F: int, shape) -> list:
    """Between ``prefix`` (ending with the detector's ReLU) and the pooling: max pool + identity."""
    _, h, w = _map_shape(prefix, shape)
    pool = MaxPool(kernel=(2, 2), stride=(1, 1)) if h >= 2 and w >= 2 else MaxPool(kernel=(1, 1))
    return [pool, _identity_conv(F), ReLU()]


def deepen(net: Network) -> Network:
    """The paper's network ``net`` with a 2×2 stride-1 max pool (where it fits, else 1×1) and an identity
    1×1 convolution + ReLU between each detector's ReLU and its global max pooling."""
    layers = list(net.layers)
    at = next(k for k, l in enumerate(layers) if isinstance(l, (GlobalMaxPool, Parallel)))
    shape = tuple(net.input_shape)
    if isinstance(layers[at], GlobalMaxPool):
        F = layers[at - 2].weight.shape[0]
        extra = _deeper(layers[:at], F, shape)
        new = layers[:at] + extra + layers[at:]
    else:
        trunk = layers[:at]
        branches = []
        for br in layers[at].branches:
            br = list(br)
            g = next(k for k, l in enumerate(br) if isinstance(l, GlobalMaxPool))
            F = br[g - 2].weight.shape[0]
            branches.append(tuple(br[:g] + _deeper(trunk + br[:g], F, shape) + br[g:]))
        new = trunk + [Parallel(tuple(branches))] + layers[at + 1:]
    return Network(net.input_shape, tuple(new), net.class_names, net.channel_names)


def pad_paper(data, paper: Network) -> tuple[Network, str]:
    """:func:`pad_paper_with` on hypothesis draws."""
    return pad_paper_with(lambda options, label: data.draw(st.sampled_from(list(options)), label=label), paper)


def pad_paper_with(choose, paper: Network) -> tuple[Network, str]:
    """The paper's network with every spatial convolution (kernel > 1) a ``GeneralConv2d`` with
    drawn size-preserving pads (per axis ``before`` in {(k-1)//2, 0, k-1}, ``after = k-1-before``)."""
    desc = []

    def pad(layer):
        if not isinstance(layer, Conv2d) or layer.weight.shape[2:] == (1, 1):
            return layer
        kh, kw = layer.weight.shape[2:]
        t = choose(sorted({(kh - 1) // 2, 0, kh - 1}), "pad top")
        l = choose(sorted({(kw - 1) // 2, 0, kw - 1}), "pad left")
        desc.append(f"{kh}x{kw}/p{t}{l}{kh - 1 - t}{kw - 1 - l}")
        return GeneralConv2d(layer.weight, layer.bias, pads=(t, l, kh - 1 - t, kw - 1 - l))

    layers = [Parallel(tuple(tuple(pad(x) for x in b) for b in l.branches)) if isinstance(l, Parallel) else pad(l)
              for l in paper.layers]
    net = Network(paper.input_shape, tuple(layers), paper.class_names, paper.channel_names)
    if not isinstance(decompose(net), str):  # no spatial detector to pad: a 1x1 max pool leaves the paper's form
        net = deepen(net)
        desc.append("deepened")
    net.output_shape()
    return net, "padded paper's network " + " ".join(desc)


def padded(data, task, paper: Network) -> tuple[Network, str]:
    """A padded network: :func:`padded_local` or :func:`pad_paper`, on hypothesis draws."""
    return padded_with(lambda options, label: data.draw(st.sampled_from(list(options)), label=label), task, paper)


def padded_seeded(seed: int, task, paper: Network) -> tuple[Network, str]:
    """:func:`padded` with every choice from ``random.Random(seed)`` (draws nothing from hypothesis:
    a test that adds it keeps the other draws, and so its examples, as they were)."""
    rng = random.Random(seed)
    return padded_with(lambda options, label: rng.choice(list(options)), task, paper)


def padded_with(choose, task, paper: Network) -> tuple[Network, str]:
    if choose([False, True], "padded paper"):
        return pad_paper_with(choose, paper)
    return padded_local(choose, task)


def mutate(net: Network, path: str, k: int, change: str) -> Network:
    """``net`` with entry ``k`` of parameter ``path`` changed by +1 or -1, or set to 0."""
    old = dict(net.parameters())[path].ravel()[k]
    new = old + 1 if change == "+1" else old - 1 if change == "-1" else Fraction(0)
    return with_parameter(net, path, k, new)


def all_mutations(net: Network) -> list[tuple[str, int, str]]:
    """Every single-parameter mutation (path, flat index, change) of ``net``."""
    return [(path, k, ch) for path, arr in net.parameters() for k in range(arr.size) for ch in ("+1", "-1", "0")]


def perturb(data, paper: Network) -> tuple[Network, tuple]:
    """:func:`deepen` of the paper's network with one parameter (trunk, detector or head; not an
    inserted identity) changed by ±1 or set to 0."""
    params = list(paper.parameters())
    path, arr = params[data.draw(st.integers(0, len(params) - 1), label="param")]
    k = data.draw(st.integers(0, arr.size - 1), label="index")
    change = data.draw(st.sampled_from(["+1", "-1", "0"]), label="change")
    return deepen(mutate(paper, path, k, change)), (path, k, change)


# ---------------------------------------------------------------------------------------------
# A plain per-scene z3 check for the general layer kinds
# ---------------------------------------------------------------------------------------------


def _zmax(vals):
    m = vals[0]
    for v in vals[1:]:
        m = z3.If(v > m, v, m)
    return m


@lru_cache(maxsize=None)
def _q(v: Fraction) -> z3.ArithRef:
    v = Fraction(v)
    return z3.Q(v.numerator, v.denominator)


def _zpad(x, pads, fill):
    """A (C, H, W) tensor of z3 terms padded by (top, left, bottom, right) with ``fill``."""
    t, l, b, r = pads
    C, H, W = x.shape
    out = np.empty((C, H + t + b, W + l + r), dtype=object)
    out[...] = fill
    out[:, t:t + H, l:l + W] = x
    return out


def _conv(layer, x, stride, dilation):
    O, I, kh, kw = layer.weight.shape
    (sh, sw), (dh, dw) = stride, dilation
    _, H, W = x.shape
    Ho, Wo = (H - (kh - 1) * dh - 1) // sh + 1, (W - (kw - 1) * dw - 1) // sw + 1
    out = np.empty((O, Ho, Wo), dtype=object)
    taps = [[(c, a, b, _q(layer.weight[o, c, a, b])) for c in range(I) for a in range(kh) for b in range(kw)
             if layer.weight[o, c, a, b] != 0] for o in range(O)]
    for o in range(O):
        for i in range(Ho):
            for j in range(Wo):
                terms = [w * x[c, i * sh + a * dh, j * sw + b * dw] for c, a, b, w in taps[o]]
                out[o, i, j] = z3.Sum(terms + [_q(layer.bias[o])]) if terms else _q(layer.bias[o])
    return out


def _apply(layers, x):
    """The layers on a tensor of z3 terms (C, H, W) or a vector, literally."""
    for layer in layers:
        kind = layer.kind
        if kind in ("conv2d", "conv2d_general"):
            if kind == "conv2d_general" and any(layer.pads):
                x = _zpad(x, layer.pads, _q(Fraction(0)))
            g = ((1, 1), (1, 1)) if kind == "conv2d" else (layer.stride, layer.dilation)
            x = _conv(layer, x, *g)
        elif kind == "max_pool":
            (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
            x = _zpad(x, layer.pads, None)  # padding cells take no part in the max
            C, H, W = x.shape
            Ho, Wo = (H - (kh - 1) * dh - 1) // sh + 1, (W - (kw - 1) * dw - 1) // sw + 1
            out = np.empty((C, Ho, Wo), dtype=object)
            for c in range(C):
                for i in range(Ho):
                    for j in range(Wo):
                        cells = [x[c, i * sh + a * dh, j * sw + b * dw] for a in range(kh) for b in range(kw)]
                        out[c, i, j] = _zmax([v for v in cells if v is not None])
            x = out
        elif kind == "affine":
            scale = np.broadcast_to(layer.scale, x.shape)
            shift = np.broadcast_to(layer.shift, x.shape)
            out = np.empty(x.shape, dtype=object)
            for idx in np.ndindex(x.shape):
                out[idx] = _q(scale[idx]) * x[idx] + _q(shift[idx])
            x = out
        elif kind == "relu":
            out = np.empty(x.shape, dtype=object)
            for idx in np.ndindex(x.shape):
                out[idx] = z3.If(x[idx] > 0, x[idx], _q(Fraction(0)))
            x = out
        elif kind == "global_max_pool":
            out = np.empty((x.shape[0], 1, 1), dtype=object)
            for c in range(x.shape[0]):
                out[c, 0, 0] = _zmax(list(x[c].ravel()))
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
    """None when no noise in [-δ, δ] breaks the claim for this scene; else the noisy image found.
    Raises RuntimeError on z3 unknown."""
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
