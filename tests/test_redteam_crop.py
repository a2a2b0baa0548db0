"""Red-team of commit 17081ae (sparse convolutions, separable max pooling, pointwise layers once
per distinct pixel, the local crop of the worst-case witness).

Each fast path is compared with a reference written here from the definitions, per output, in
Fractions: a convolution is sum_{i,a,b} w[o,i,a,b] * xpad[i, y*s + a*d, x*s + b*d] + bias[o]; a
max pool is the max over the window's cells inside the map (windows()' own geometry is not
used: the cells are recomputed); a network is the composition of the references. The crop is
compared with the full canvas on random Local networks (zero-padded, dilated, asymmetric
convolutions and max pools, branches of different reaches) on non-square canvases with random
content in the top-left corner, weights that make background and padding fire, mutants of the
deep catalogue networks and their ONNX round trips."""

from __future__ import annotations

import random
import re
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cnnproof.verifier import compositional
from cnnproof.verifier.exact import fraction_array, to_scaled_ints
from cnnproof.verifier.network import (Affine, Conv2d, Dense, Flatten, GeneralConv2d, GlobalMaxPool, MaxPool,
                                       Network, Parallel, ReLU, _run, with_parameter)

TASKS = Path(__file__).resolve().parent.parent / "proofs" / "tasks"
HUGE = 2**70


# ------------------------------------------------------------------------------ references


def _ref_conv(layer, x):
    """x: (C, H, W) object array of Fractions -> (O, Ho, Wo)."""
    if isinstance(layer, GeneralConv2d):
        st, pads, dil = layer.stride, layer.pads, layer.dilation
    else:
        st, pads, dil = (1, 1), (0, 0, 0, 0), (1, 1)
    C, H, W = x.shape
    t, l, b, r = pads
    xp = np.empty((C, H + t + b, W + l + r), dtype=object)
    xp[...] = Fraction(0)
    xp[:, t:t + H, l:l + W] = x
    O, I, kh, kw = layer.weight.shape
    Ho = (H + t + b - (kh - 1) * dil[0] - 1) // st[0] + 1
    Wo = (W + l + r - (kw - 1) * dil[1] - 1) // st[1] + 1
    out = np.empty((O, Ho, Wo), dtype=object)
    for o in range(O):
        for y in range(Ho):
            for z in range(Wo):
                s = Fraction(layer.bias[o])
                for i in range(I):
                    for a in range(kh):
                        for c in range(kw):
                            s += layer.weight[o, i, a, c] * xp[i, y * st[0] + a * dil[0], z * st[1] + c * dil[1]]
                out[o, y, z] = s
    return out


def _ref_pool(layer, x):
    C, H, W = x.shape
    t, l, b, r = layer.pads
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel, layer.stride, layer.dilation
    Ho = (H + t + b - (kh - 1) * dh - 1) // sh + 1
    Wo = (W + l + r - (kw - 1) * dw - 1) // sw + 1
    out = np.empty((C, Ho, Wo), dtype=object)
    for ch in range(C):
        for y in range(Ho):
            for z in range(Wo):
                vals = [x[ch, y * sh - t + a * dh, z * sw - l + c * dw] for a in range(kh) for c in range(kw)
                        if 0 <= y * sh - t + a * dh < H and 0 <= z * sw - l + c * dw < W]
                assert vals, "an empty window"
                out[ch, y, z] = max(vals)
    return out


def _ref_layers(layers, x):
    for l in layers:
        if isinstance(l, (Conv2d, GeneralConv2d)):
            x = _ref_conv(l, x)
        elif isinstance(l, MaxPool):
            x = _ref_pool(l, x)
        elif isinstance(l, ReLU):
            x = np.vectorize(lambda v: v if v > 0 else Fraction(0), otypes=[object])(x)
        elif isinstance(l, GlobalMaxPool):
            x = np.array([[[max(x[c].ravel())]] for c in range(x.shape[0])], dtype=object)
        elif isinstance(l, Flatten):
            x = x.reshape(-1)
        elif isinstance(l, Dense):
            x = np.array([sum((l.weight[o, i] * x[i] for i in range(len(x))), Fraction(l.bias[o]))
                          for o in range(l.weight.shape[0])], dtype=object)
        elif isinstance(l, Affine):
            x = x * l.scale + l.shift
        elif isinstance(l, Parallel):
            x = np.concatenate([_ref_layers(br, x) for br in l.branches], axis=0)
        else:
            raise TypeError(l.kind)
    return x


def _fast(layers, x):
    """x: (N, C, H, W) object array of Fractions -> list of (C', H', W') Fraction arrays."""
    ints, den = to_scaled_ints(x)
    out, d = _run(layers, ints, den)
    return [np.vectorize(lambda v: Fraction(int(v), d), otypes=[object])(o) for o in out]


# ------------------------------------------------------------------------------ random layers


def _weights(rng, shape, density, huge=False):
    pool = [Fraction(v) for v in ("-2", "-1", "-1/2", "1/3", "1", "2", "5/4")]
    if huge:
        pool += [Fraction(HUGE + 3), Fraction(-HUGE, 7)]
    vals = [rng.choice(pool) if rng.random() < density else Fraction(0) for _ in range(int(np.prod(shape)))]
    return fraction_array(vals, shape)


def _conv(rng, I, O, general, density, huge=False):
    kh, kw = rng.randint(1, 3), rng.randint(1, 3)
    w = _weights(rng, (O, I, kh, kw), density, huge)
    bias = _weights(rng, (O,), 0.7, huge)
    if not general:
        return Conv2d(w, bias)
    return GeneralConv2d(w, bias, (rng.randint(1, 3), rng.randint(1, 3)),
                         tuple(rng.randint(0, 2) for _ in range(4)), (rng.randint(1, 3), rng.randint(1, 3)))


def _image(rng, shape, huge=False):
    pool = [Fraction(v) for v in ("0", "1", "-1", "1/2", "3", "-7/3")]
    if huge:
        pool += [Fraction(HUGE), Fraction(-3 * HUGE, 5), Fraction(2**62 + 1)]
    return fraction_array([rng.choice(pool) for _ in range(int(np.prod(shape)))], shape)


def _check_conv_case(rng, huge):
    I, O = rng.randint(1, 3), rng.randint(1, 4)
    density = rng.choice((0.05, 0.1, 0.3, 1.0))
    layer = _conv(rng, I, O, rng.random() < 0.7, density, huge and rng.random() < 0.5)
    N, H, W = rng.randint(1, 3), rng.randint(3, 8), rng.randint(3, 8)
    try:
        layer.out_shape((I, H, W))
    except ValueError:
        return 0
    x = _image(rng, (N, I, H, W), huge)
    got = _fast((layer,), x)
    for n in range(N):
        assert np.array_equal(got[n], _ref_conv(layer, x[n])), (layer, x[n])
    return 1


def test_conv_sparse_and_dense_equal_reference():
    rng = random.Random(1)
    done = sum(_check_conv_case(rng, huge=k % 3 == 0) for k in range(200))
    assert done > 100


def test_conv_sparse_path_is_taken_and_exact_with_huge_ints():
    # 1 nonzero of 18 weights: 8 * 1 <= 18, the sparse path; object arrays (> 2^62)
    w = np.full((2, 1, 3, 3), Fraction(0), dtype=object)
    w[1, 0, 2, 1] = Fraction(HUGE + 1, 3)
    layer = GeneralConv2d(w, fraction_array([Fraction(1), Fraction(-HUGE)], (2,)), (1, 2), (1, 0, 2, 1), (2, 1))
    x = _image(random.Random(5), (2, 1, 6, 7), huge=True)
    got = _fast((layer,), x)
    for n in range(2):
        assert np.array_equal(got[n], _ref_conv(layer, x[n]))


def test_nonzero_cache_not_stale_after_with_parameter():
    # 1 then 2 nonzero weights of 25: the sparse path throughout
    w = np.full((1, 1, 5, 5), Fraction(0), dtype=object)
    w[0, 0, 0, 0] = Fraction(1)
    conv = Conv2d(w, fraction_array([Fraction(0)], (1,)))
    net = Network((1, 7, 7), (conv, GlobalMaxPool(), Flatten()), ("a",))
    img = _image(random.Random(2), (1, 7, 7))
    before = net.evaluate(img)  # caches the nonzero taps of conv
    m = with_parameter(net, "layers[0].weight", 24, Fraction(-5))
    m2 = with_parameter(m, "layers[0].weight", 0, Fraction(0))
    for k in (net, m, m2):
        assert k.evaluate(img) == list(_ref_layers(k.layers, img))
    assert net.evaluate(img) == before


def test_maxpool_equals_reference_and_empty_windows():
    rng = random.Random(3)
    checked = refused = 0
    for k in range(300):
        kh, kw = rng.randint(1, 4), rng.randint(1, 4)
        pads = (rng.randint(0, kh - 1), rng.randint(0, kw - 1), rng.randint(0, kh - 1), rng.randint(0, kw - 1))
        pool = MaxPool((kh, kw), (rng.randint(1, 3), rng.randint(1, 3)), pads, (rng.randint(1, 3), rng.randint(1, 3)))
        C, H, W = rng.randint(1, 2), rng.randint(1, 7), rng.randint(1, 7)
        # brute force: some window has no cell inside the map, or no window at all
        Ho = (H + pads[0] + pads[2] - (kh - 1) * pool.dilation[0] - 1) // pool.stride[0] + 1
        Wo = (W + pads[1] + pads[3] - (kw - 1) * pool.dilation[1] - 1) // pool.stride[1] + 1
        bad = Ho < 1 or Wo < 1 or any(not cells for _, _, cells in pool.windows(H, W))
        try:
            pool.out_shape((C, H, W))
        except ValueError:
            assert bad, pool
            refused += 1
            continue
        assert not bad, pool
        x = _image(rng, (2, C, H, W), huge=k % 4 == 0)
        got = _fast((pool,), x)
        for n in range(2):
            assert np.array_equal(got[n], _ref_pool(pool, x[n])), pool
        checked += 1
    assert checked > 100 and refused > 10


def test_pointwise_once_per_pixel_equals_plain_run():
    rng = random.Random(4)
    for k in range(40):
        C = rng.randint(1, 3)
        layers, c = [], C
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.4:
                layers.append(ReLU())
            else:
                o = rng.randint(1, 4)
                layers.append(Conv2d(_weights(rng, (o, c, 1, 1), 0.6, huge=k % 5 == 0),
                                     _weights(rng, (o,), 0.6, huge=k % 7 == 0)))
                c = o
        layers += [_conv(rng, c, 2, True, 0.4), ReLU(), GlobalMaxPool(), Flatten(),
                   Dense(_weights(rng, (2, 2), 1.0), _weights(rng, (2,), 1.0))]
        H, W = rng.randint(3, 9), rng.randint(3, 9)
        try:
            net = Network((C, H, W), tuple(layers), ("a", "b"))
        except ValueError:
            continue
        # few distinct pixels (the once-per-pixel path), a batch of several images
        pal = [_image(rng, (C,)) for _ in range(3)]
        imgs = np.empty((3, C, H, W), dtype=object)
        for n in range(3):
            for y in range(H):
                for z in range(W):
                    imgs[n, :, y, z] = pal[rng.randrange(3)]
        ints, den = to_scaled_ints(imgs)
        a, da = net.evaluate_batch_int(ints, den)
        b, db = _run(net.layers, ints, den)
        assert [[Fraction(int(v), da) for v in row] for row in a] == [[Fraction(int(v), db) for v in row] for row in b]
        for n in range(3):
            assert net.evaluate(imgs[n]) == list(_ref_layers(net.layers, imgs[n]))


# ------------------------------------------------------------------------------ the crop


def _local_layer(rng, c, firing):
    """A random stride-1 local layer on c channels: (layer, out channels)."""
    kind = rng.random()
    dens = 1.0 if firing else 0.5
    if kind < 0.3:
        o = rng.randint(1, 3)
        return _conv(rng, c, o, False, dens), o
    if kind < 0.6:
        o = rng.randint(1, 3)
        kh, kw = rng.randint(1, 3), rng.randint(1, 3)
        return GeneralConv2d(_weights(rng, (o, c, kh, kw), dens), _weights(rng, (o,), 1.0), (1, 1),
                             tuple(rng.randint(0, 3) for _ in range(4)), (rng.randint(1, 3), rng.randint(1, 3))), o
    if kind < 0.75:
        kh, kw = rng.randint(1, 3), rng.randint(1, 3)
        return MaxPool((kh, kw), (1, 1), (rng.randint(0, kh - 1), rng.randint(0, kw - 1), rng.randint(0, kh - 1),
                                          rng.randint(0, kw - 1)), (rng.randint(1, 2), rng.randint(1, 2))), c
    if kind < 0.85:
        return ReLU(), c
    # branches: a padded conv on one side, a plain 1x1 or another shape-matching branch on the other
    o1, o2 = rng.randint(1, 2), rng.randint(1, 2)
    kh, kw = rng.randint(1, 3), rng.randint(1, 3)
    t, l = rng.randint(0, kh - 1), rng.randint(0, kw - 1)
    b1 = (GeneralConv2d(_weights(rng, (o1, c, kh, kw), dens), _weights(rng, (o1,), 1.0), (1, 1),
                        (t, l, kh - 1 - t, kw - 1 - l), (1, 1)), ReLU())
    b2 = (Conv2d(_weights(rng, (o2, c, 1, 1), dens), _weights(rng, (o2,), 1.0)),)
    if rng.random() < 0.5:
        b2 = b2 + (MaxPool((3, 3), (1, 1), (2, 0, 0, 2), (1, 1)),)
    elif rng.random() < 0.5:  # a long dilated branch beside a short one (branch reaches differ)
        d = rng.randint(2, 3)
        b2 = b2 + (GeneralConv2d(_weights(rng, (o2, o2, 3, 3), dens), _weights(rng, (o2,), 1.0), (1, 1),
                                 (d, d, d, d), (d, d)),)
    return Parallel((b1, b2)), o1 + o2


def _random_local_net(rng, C, H, W, firing):
    for _ in range(50):
        layers, c = [], C
        for _ in range(rng.randint(1, 5)):
            l, c = _local_layer(rng, c, firing)
            layers.append(l)
        layers += [GlobalMaxPool(), Flatten(), Dense(_weights(rng, (3, c), 1.0), _weights(rng, (3,), 1.0))]
        try:
            net = Network((C, H, W), tuple(layers), ("a", "b", "c"))
        except ValueError:
            continue
        if compositional.local_reach(net) is not None:
            return net
    raise AssertionError("no network drawn")


def _corner_image(rng, C, H, W, bg, levels, rows, cols):
    img = np.full((C, H, W), bg, dtype=object)
    for _ in range(rng.randint(0, rows * cols)):
        img[rng.randrange(C), rng.randrange(rows), rng.randrange(cols)] = rng.choice(levels)
    return img


def _crop_case(rng, big=False):
    C = rng.randint(1, 2)
    H, W = rng.randint(12, 40 if big else 26), rng.randint(12, 40 if big else 26)
    bg = rng.choice([Fraction(0), Fraction(1), Fraction(-1, 2), Fraction(3)])
    levels = [bg, Fraction(0), Fraction(1), Fraction(2), Fraction(-1)]
    net = _random_local_net(rng, C, H, W, firing=rng.random() < 0.5)
    r = compositional.local_reach(net)
    task = SimpleNamespace(background=bg, height=H, width=W)
    rows, cols = rng.randint(1, max(1, H // 3)), rng.randint(1, max(1, W // 3))
    strip = rng.random()
    if strip < 0.15:  # content across the whole width (only the rows are cropped)
        cols = W
    elif strip < 0.3:  # down the whole height (only the columns)
        rows = H
    img = _corner_image(rng, C, H, W, bg, levels, rows, cols)
    cropped = (int(np.argwhere(np.any(img != bg, axis=0)).max(axis=0, initial=0)[0]) + 2 * r + 3 < H
               or int(np.argwhere(np.any(img != bg, axis=0)).max(axis=0, initial=0)[1]) + 2 * r + 3 < W)
    full = net.evaluate(img)
    got = compositional._logits_local_crop(task, net, img)
    assert got == full, (net.layers, r)
    # the band 2r + 2 has a margin: a band of r + 1 already gives the full canvas's logits (a
    # reach that undercounts an extent fails here, where the code's own band would hide it)
    assert _tight_crop(net, img, bg, r + 1) == full, (net.layers, r)
    return cropped


def _tight_crop(net, img, bg, band):
    content = np.argwhere(np.any(img != bg, axis=0))
    R0, C0 = content.max(axis=0) if len(content) else (0, 0)
    crop = img[:, : int(R0) + band + 1, : int(C0) + band + 1]
    return list(_fast(net.layers, crop.reshape((1,) + crop.shape))[0])


def test_crop_equals_full_canvas_random_local_networks():
    rng = random.Random(6)
    cropped = sum(_crop_case(rng) for _ in range(80))
    assert cropped > 30


@pytest.mark.slow
def test_crop_equals_full_canvas_random_local_networks_many():
    rng = random.Random(7)
    cropped = sum(_crop_case(rng, big=True) for _ in range(600))
    assert cropped > 300


def test_crop_net_evaluate_equals_reference():
    # the full canvas itself (what the crop is compared with) against the plain reference
    rng = random.Random(8)
    for _ in range(4):
        net = _random_local_net(rng, 1, 9, 11, firing=True)
        img = _corner_image(rng, 1, 9, 11, Fraction(1), [Fraction(0), Fraction(2)], 4, 4)
        assert net.evaluate(img) == list(_ref_layers(net.layers, img))


def _enlarged(name, h, w):
    from cnnproof.constructions.task import task_from_toml

    text = (TASKS / f"{name}.toml").read_text()
    text = re.sub(r"height = \d+", f"height = {h}", text, count=1)
    text = re.sub(r"width = \d+", f"width = {w}", text, count=1)
    return task_from_toml(text, f"{name}.toml")


def _deep_cases(name, h, w, n_mut, n_img, onnx_trip, seed):
    from cnnproof.constructions.task_to_network import build_network

    rng = random.Random(seed)
    task = _enlarged(name, h, w)
    net = build_network(task)
    nets = [net]
    if onnx_trip:
        import onnx  # noqa: F401
        import tempfile

        from cnnproof.verifier.onnx_export import network_to_onnx
        from cnnproof.verifier.onnx_import import load_onnx

        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "n.onnx"
            p.write_bytes(network_to_onnx(net).SerializeToString())
            nets.append(load_onnx(p, list(net.class_names), check_metadata=False).net)
    params = list(net.parameters())
    for _ in range(n_mut):
        m = net
        for _ in range(8):
            path, arr = rng.choice(params)
            m = with_parameter(m, path, rng.randrange(arr.size), Fraction(rng.randint(-4, 4), rng.choice((1, 3))))
        nets.append(m)
    r = compositional.local_reach(net)
    n = 0
    for m in nets:
        for _ in range(n_img):
            k = rng.randint(1, 10)
            img = _corner_image(rng, task.channels, task.height, task.width, task.background, list(task.levels), k, k)
            assert compositional._logits_local_crop(task, m, img) == m.evaluate(img), (name, r)
            n += 1
    return n, r


def test_crop_deep_network_non_square_mutants():
    n, r = _deep_cases("h_updown", 30, 55, 3, 3, onnx_trip=False, seed=1)
    assert r is not None and n == 12


@pytest.mark.slow
@pytest.mark.parametrize("name", ["h_updown", "h_nested", "h_faces", "h_noise", "h_jitter_clash", "h_piece_accident"])
def test_crop_deep_networks_onnx_and_mutants(name):
    n, r = _deep_cases(name, 61, 44, 6, 4, onnx_trip=True, seed=name)
    assert n > 0


def _tap_detector(kh, kw, dil, pads, o_extra=0):
    """A detector whose best window has the content pixel at its top-left tap (weight 2) and
    background at its bottom-right tap (weight 1): the crop must keep the whole extent below
    and right of the content to see it."""
    w = np.full((1, 1, kh, kw), Fraction(0), dtype=object)
    w[0, 0, 0, 0], w[0, 0, kh - 1, kw - 1] = Fraction(2), Fraction(1)
    return GeneralConv2d(w, fraction_array([Fraction(0)], (1,)), (1, 1), pads, dil)


@pytest.mark.parametrize("kh,kw,dil,where", [(3, 3, (2, 3), "top"), (2, 3, (4, 1), "top"), (3, 2, (1, 3), "branch"),
                                             (3, 3, (3, 3), "pool")])
def test_crop_keeps_a_dilated_extent(kh, kw, dil, where):
    H, W = 40, 37
    det = _tap_detector(kh, kw, dil, (0, 0, 0, 0))
    if where == "top":
        local = (det,)
    elif where == "branch":  # beside a short branch: the reach is the longer one's
        one = Conv2d(fraction_array([Fraction(0)], (1, 1, 1, 1)), fraction_array([Fraction(0)], (1,)))
        e0, e1 = (kh - 1) * dil[0], (kw - 1) * dil[1]
        local = (Parallel(((one, MaxPool((1, 1))), (GeneralConv2d(det.weight, det.bias, (1, 1), (0, 0, e0, e1), dil),))),)
    else:  # a dilated pool carries the pixel down and right before a 1x1 read-out
        local = (MaxPool((kh, kw), (1, 1), (0, 0, 0, 0), dil),
                 Conv2d(fraction_array([Fraction(1)], (1, 1, 1, 1)), fraction_array([Fraction(0)], (1,))))
    c = 2 if where == "branch" else 1
    layers = local + (GlobalMaxPool(), Flatten(), Dense(fraction_array([Fraction(1), Fraction(-1)] * c, (2, c)),
                                                         fraction_array([Fraction(0), Fraction(0)], (2,))))
    net = Network((1, H, W), layers, ("a", "b"))
    r = compositional.local_reach(net)
    e = max((kh - 1) * dil[0], (kw - 1) * dil[1])
    assert r is not None and r >= e
    bg = Fraction(1)
    task = SimpleNamespace(background=bg, height=H, width=W)
    img = np.full((1, H, W), bg, dtype=object)
    img[0, 5, 4] = Fraction(3)
    full = net.evaluate(img)
    assert compositional._logits_local_crop(task, net, img) == full == list(_ref_layers(net.layers, img))
    assert _tight_crop(net, img, bg, r + 1) == full
    if where != "pool":  # the test has teeth: a band short of the extent loses the best window
        assert _tight_crop(net, img, bg, e - 1) != full


# ------------------------------------------------------------------------------ cell ranges


def _old_cell_ranges(task, shape):
    """cell_ranges as it was before 17081ae (dense pointwise stack, one combine per cell)."""
    from cnnproof.verifier.compositional import _dependencies
    from cnnproof.verifier.pwl import PWL, combine

    def stack(layers, n_in, ch, lo, hi):
        vals = [PWL.identity(lo, hi) if c == ch else PWL.const(lo, hi, Fraction(0)) for c in range(n_in)]
        for l in layers:
            if isinstance(l, Conv2d):
                O, I = l.weight.shape[:2]
                vals = [combine([(l.weight[o, t, 0, 0], vals[t]) for t in range(I)], l.bias[o], lo, hi) for o in range(O)]
            else:
                vals = [v.relu() for v in vals]
        return vals

    out, C, d = [], task.channels, task.noise
    for br in shape.branches:
        deps = _dependencies(br.pointwise, C)
        W = br.conv.weight
        O, T, h, w = W.shape
        if any(len(deps[t]) > 1 and np.any(W[:, t] != 0) for t in range(T)):
            return "mixes"
        pw = {(ch, l): stack(br.pointwise, C, ch, l - d, l + d) for ch in range(C) for l in task.levels}
        arr = np.empty((O, C, h, w, len(task.levels)), dtype=object)
        ref = pw[(0, task.levels[0])]
        const = [br.conv.bias[o] + sum((W[o, t, a, b] * ref[t].ys[0] for t in range(T) if not deps[t]
                                        for a in range(h) for b in range(w)), Fraction(0)) for o in range(O)]
        for o in range(O):
            for ch in range(C):
                ts = [t for t in range(T) if deps[t] == {ch}]
                for a in range(h):
                    for b in range(w):
                        terms = [(W[o, t, a, b], t) for t in ts if W[o, t, a, b] != 0]
                        for li, l in enumerate(task.levels):
                            arr[o, ch, a, b, li] = (combine([(wt, pw[(ch, l)][t]) for wt, t in terms], Fraction(0),
                                                            l - d, l + d).range() if terms else (Fraction(0), Fraction(0)))
        out.append((arr, const))
    return out


def _cell_cases(names, n_mut, seed):
    from cnnproof.constructions.task import task_from_toml
    from cnnproof.constructions.task_to_network import build_network

    rng = random.Random(seed)
    n = 0
    for name in names:
        task = task_from_toml((TASKS / f"{name}.toml").read_text(), f"{name}.toml")
        net = build_network(task)
        params = list(net.parameters())
        nets = [net]
        for _ in range(n_mut):
            m = net
            for _ in range(3):
                path, arr = rng.choice(params)
                m = with_parameter(m, path, rng.randrange(arr.size), Fraction(rng.randint(-3, 3), rng.choice((1, 2))))
            nets.append(m)
        for m in nets:
            shape = compositional.decompose(m)
            if isinstance(shape, str):
                continue
            a, b = compositional.cell_ranges(task, shape), _old_cell_ranges(task, shape)
            if isinstance(a, str) or isinstance(b, str):
                assert isinstance(a, str) and isinstance(b, str), name
                continue
            for (x, cx), (y, cy) in zip(a, b):
                assert list(np.ravel(cx)) == list(cy) and x.shape == y.shape and list(x.ravel()) == list(y.ravel()), name
            n += 1
    return n


def test_cell_ranges_equal_the_dense_ones():
    assert _cell_cases(["levels_noise", "channels", "ink", "touching"], 3, 1) >= 12


@pytest.mark.slow
def test_cell_ranges_equal_the_dense_ones_catalogue():
    names = sorted(p.stem for p in TASKS.glob("*.toml") if not p.stem.startswith("h_"))
    assert _cell_cases(names, 8, 2) > 50
