"""The normal form of a network under exact rewrites that the global max pooling allows.

Stage: network -> equal network (shared: the prover rewrites with this module before it picks a
lemma method, and the checker applies it again to the network a certificate is bound to).
Trusted: yes; every rewrite is an identity of functions, listed in ``docs/configurations.md``:

1. an identity layer is dropped: a 1x1 convolution (stride 1, no padding) whose weight is the
   identity matrix and whose bias is 0; a per-channel affine map with scale 1 and shift 0; a
   1x1 max pool with stride 1 and no padding;
2. a ReLU right after a ReLU is dropped (ReLU is idempotent);
3. a max pool in the tail of a branch (only per-channel nondecreasing layers, ReLU or an affine
   map with scale >= 0, between it and the global max pooling) whose windows together cover
   every cell of its input map is dropped: a nondecreasing per-channel map g commutes with max,
   so GlobalMax ∘ g ∘ MaxPool = g' ∘ GlobalMax ∘ MaxPool, and the maximum over windows that
   cover the map is the maximum over the map.

Rules are applied until none applies; the tail rule takes the last max pool first, so every
test is made on the map that pool really reads. The result computes the same function as the
input on every image (``tests/test_normal_form.py`` checks that by exact evaluation).
"""

from __future__ import annotations

from fractions import Fraction

from cnnproof.verifier.network import (Affine, Conv2d, GeneralConv2d, GlobalMaxPool, MaxPool, Network, Parallel,
                                       ReLU)


def _is_identity(layer) -> bool:
    if isinstance(layer, (Conv2d, GeneralConv2d)):
        O, I, kh, kw = layer.weight.shape
        if (kh, kw) != (1, 1) or O != I or any(layer.bias):
            return False
        if isinstance(layer, GeneralConv2d) and (layer.stride != (1, 1) or any(layer.pads)):
            return False
        return all(layer.weight[o, i, 0, 0] == (1 if o == i else 0) for o in range(O) for i in range(I))
    if isinstance(layer, Affine):
        return all(v == 1 for v in layer.scale.flat) and not any(layer.shift.flat)
    if isinstance(layer, MaxPool):
        return layer.kernel == (1, 1) and layer.stride == (1, 1) and not any(layer.pads)
    return False


def _monotone(layer) -> bool:
    """A per-channel nondecreasing pointwise layer (commutes with any max over positions)."""
    if isinstance(layer, ReLU):
        return True
    return (isinstance(layer, Affine) and layer.scale.ndim == 3 and layer.scale.shape[1:] == (1, 1)
            and layer.shift.shape[1:] == (1, 1) and all(Fraction(v) >= 0 for v in layer.scale.flat))


def _covers(pool: MaxPool, shape) -> bool:
    _, H, W = shape
    seen = set()
    for _, _, cells in pool.windows(H, W):
        seen.update(cells)
    return len(seen) == H * W


def _shapes(layers, shape) -> list:
    """The input shape of each layer (and the last output's)."""
    out = [tuple(shape)]
    for l in layers:
        out.append(l.out_shape(out[-1]))
    return out


def _simplify(trunk: list, body: list, shape, where: str, rules: list[str]) -> list:
    """Rewrite ``body`` (the layers of one branch between ``trunk`` and its global max pooling)."""
    body = list(body)
    changed = True
    while changed:
        changed = False
        for k, l in enumerate(body):
            if _is_identity(l):
                rules.append(f"{where}: dropped the identity {l.kind} at position {k}")
                del body[k]
                changed = True
                break
            if isinstance(l, ReLU) and k > 0 and isinstance(body[k - 1], ReLU):
                rules.append(f"{where}: merged the ReLU at position {k} into the one before it")
                del body[k]
                changed = True
                break
        if changed:
            continue
        shapes = _shapes(trunk + body, shape)[len(trunk):]
        for k in range(len(body) - 1, -1, -1):
            l = body[k]
            if isinstance(l, MaxPool):
                if _covers(l, shapes[k]):
                    rules.append(f"{where}: dropped the max pool {l.kernel[0]}x{l.kernel[1]} at position {k} (its "
                                 "windows cover its map and only nondecreasing per-channel layers follow it)")
                    del body[k]
                    changed = True
                break  # an earlier pool is tested after this one is gone
            if not _monotone(l):
                break
    return body


def normal_form(net: Network) -> tuple[Network, list[str]]:
    """``net`` rewritten by the rules above, and the rewrites made (empty: ``net`` itself)."""
    layers = list(net.layers)
    at = next((k for k, l in enumerate(layers) if isinstance(l, (GlobalMaxPool, Parallel))), None)
    if at is None:
        return net, []
    rules: list[str] = []
    if isinstance(layers[at], Parallel):
        trunk = layers[:at]
        branches = []
        for b, br in enumerate(layers[at].branches):
            br = list(br)
            j = next((k for k, l in enumerate(br) if isinstance(l, GlobalMaxPool)), None)
            if j is None:
                branches.append(tuple(br))
                continue
            branches.append(tuple(_simplify(trunk, br[:j], net.input_shape, f"branch {b}", rules) + br[j:]))
        new = trunk + [Parallel(tuple(branches))] + layers[at + 1:]
    else:
        new = _simplify([], layers[:at], net.input_shape, "local stack", rules) + layers[at:]
    if not rules:
        return net, []
    return Network(net.input_shape, tuple(new), net.class_names, net.channel_names), rules
